"""The sandbox against hostile and runaway submissions, with real processes (no mocks).

Every hostile run asserts its status, a generous time bound (against hangs, not for speed), that
no process of the run survives and no temporary directory is left, and that the next honest
submission in the same sandbox still scores 1.0.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from grpo_env.sandbox import (
    FunctionTest,
    IsolationRefused,
    Limits,
    Sandbox,
    detect,
    isolation_report,
    judge_function,
    judge_program,
)
from grpo_env.sandbox.supervisor import filesystem_view, under_tmp
from grpo_env.types import Status

FULL = detect().full
needs_ns = pytest.mark.skipif(not FULL, reason="this machine grants no user+pid+net+mount namespaces")
MODES = [pytest.param("namespaces", marks=needs_ns), "subreaper"]
LIMITS = Limits(wall=2.0, cpu=2.0, memory_mb=512, file_mb=4, max_output=64 << 10)

HONEST = "def add(a, b):\n    return a + b\n"
HONEST_TESTS = [FunctionTest([1, 2], 3), FunctionTest([-1, 1], 0), FunctionTest([10, 5], 15)]


@pytest.fixture(params=MODES)
def box(request):
    sb = Sandbox(LIMITS, isolation=request.param, allow_unisolated=True)
    yield sb
    base = sb._base
    sb.close()
    assert base is None or not os.path.exists(base), "sandbox directory left behind after close()"


def _procs():
    """(pid, uid, cmdline, pgid) of every process on the machine."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = Path(f"/proc/{name}/status").read_text()
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        try:
            pgid = os.getpgid(int(name))
        except OSError:
            continue
        out.append((int(name), uid, cmd, pgid))
    return out


def _idle_groups(zygote: int) -> set[int]:
    """Process groups of the idle trees: each is led by a direct child of the template process
    (a finished run's top process is reaped before the run returns, so its group has no leader)."""
    try:
        return {int(p) for p in Path(f"/proc/{zygote}/task/{zygote}/children").read_text().split()}
    except OSError:
        return set()


def assert_clean(sb: Sandbox, marker: str = "") -> None:
    """No process of a run survives (only the template process and the pre-forked trees waiting
    for the next runs exist), and no run directory is left."""
    deadline = time.monotonic() + 3  # the kernel may take a moment to tear down a namespace
    while True:
        zygote = sb._proc.pid if sb._proc else -1
        idle = _idle_groups(zygote)
        left = [p for p in _procs() if p[0] != zygote and p[3] not in idle
                and ((marker and marker in p[2]) or (sb._root and p[1] == sb._uid))]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"processes survived the run: {left}"
    if sb._base:
        assert os.listdir(os.path.join(sb._base, "work")) == [], "run directory left behind"


def assert_honest_next(sb: Sandbox) -> None:
    out = judge_function(HONEST, "add", HONEST_TESTS, sandbox=sb)
    assert out.status is Status.CORRECT and out.score == 1.0, out


def hostile(sb, code, tests=None, *, entry="f", status, bound=15.0, marker=""):
    start = time.monotonic()
    out = judge_function(code, entry, tests or [FunctionTest([], 1)], sandbox=sb)
    took = time.monotonic() - start
    assert out.status is status, out
    assert took < bound, f"took {took:.1f}s"
    assert_clean(sb, marker)
    assert_honest_next(sb)
    return out


# ---------------------------------------------------------------------------------------------
# the machine report and the refusal


def test_isolation_report_rows():
    rows = isolation_report()
    names = [r[0] for r in rows]
    for want in ("user namespace", "pid namespace (process-tree kill)", "network namespace (no network)",
                 "child subreaper (fallback tree sweep)", "resource limits", "sandbox mode"):
        assert want in names
    assert all(isinstance(g, bool) and isinstance(d, str) for _, g, d in rows)


def test_fallback_refused_without_opt_in(monkeypatch):
    monkeypatch.delenv("GRPO_ENV_ALLOW_UNISOLATED", raising=False)
    with pytest.raises(IsolationRefused, match="GRPO_ENV_ALLOW_UNISOLATED=1"):
        Sandbox(isolation="subreaper")


def test_honest_function_and_program(box):
    assert_honest_next(box)
    out = judge_program("import sys\nfor line in sys.stdin:\n    print(int(line) * 2)\n",
                        [("1\n2\n", "2\n4\n"), ("5\n", "10")], sandbox=box)
    assert out.status is Status.CORRECT and out.score == 1.0, out
    assert_clean(box)


def test_template_process_replaced_when_killed(box):
    assert_honest_next(box)
    os.kill(box._proc.pid, 9)
    box._proc.wait()
    assert_honest_next(box)  # a fresh template process, transparently


def test_partial_score_is_fraction_of_tests(box):
    out = judge_function("def add(a, b):\n    return 3\n", "add", HONEST_TESTS, sandbox=box)
    assert out.status is Status.PARTIAL and out.score == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------------------------
# verdicts the code cannot forge


def test_early_exit_zero_at_import(box):
    hostile(box, "import sys\nsys.exit(0)\ndef f():\n    return 1\n", status=Status.RUNTIME_ERROR)


def test_os_exit_zero_before_reporting(box):
    out = hostile(box, "import os\ndef f():\n    os._exit(0)\n", status=Status.RUNTIME_ERROR)
    assert out.score == 0.0 and "exited before reporting" in out.details["detail"]


def test_always_equal_objects_fail(box):
    code = ("class Eq:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
            "class I(int):\n    def __eq__(self, other):\n        return True\n"
            "def f(k):\n    return Eq() if k == 0 else I(5)\n")
    out = hostile(box, code, [FunctionTest([0], 1), FunctionTest([1], 7)], status=Status.RUNTIME_ERROR)
    assert out.score == 0.0
    assert "not plain data" in " ".join(out.details["failures"])


def test_forged_records_and_printed_verdicts_are_ignored(box):
    code = ("import json, os, sys\n"
            "def f():\n"
            "    for i in range(3):\n"
            "        os.write(3, (json.dumps({'k': 'guess', 'i': i, 'v': 1}) + '\\n').encode())\n"
            "    print('ALL TESTS PASSED\\ncorrect 1.0')\n"
            "    sys.stdout.flush()\n"
            "    os._exit(0)\n")
    out = hostile(box, code, [FunctionTest([], 1)], status=Status.RUNTIME_ERROR)
    assert out.score == 0.0 and out.details["ignored_records"] == 3


def test_stolen_secret_cannot_forge_a_pass(box):
    """Even code that finds the run's secret in its own memory cannot pass: the record holds only
    a value, the parent compares it with an expected value the child never saw, and a second
    record for the same test fails that test."""
    code = ("import gc, json, os\n"
            "def f(x):\n"
            "    rec = next(o for o in gc.get_objects() if type(o).__name__ == 'Records')\n"
            "    rec.write({'i': 1, 'v': 'forged'})\n"
            "    return 'guess'\n")
    out = hostile(box, code, [FunctionTest([0], "a"), FunctionTest([1], "b")], status=Status.INCORRECT)
    assert out.score == 0.0
    assert out.details["duplicate_records"] == [1]


def test_code_cannot_pass_itself_off_as_a_sandbox_failure(box):
    """An infrastructure ``error`` carries no training signal, so the code must not be able to
    produce one: not with the set-up failure exit code, not by interrupting pid 1, not with a
    record built to crash the parent's JSON decoder."""
    hostile(box, "import os\ndef f():\n    os._exit(94)\n", status=Status.RUNTIME_ERROR)
    code = ("import os, signal\n"
            "def f():\n"
            "    for _ in range(3):\n"
            "        try:\n"
            "            os.kill(1, signal.SIGINT)\n"
            "        except OSError:\n"
            "            pass\n"
            "    return 2\n")
    hostile(box, code, status=Status.INCORRECT)
    code = ("import gc\n"
            "def f():\n"
            "    rec = next(o for o in gc.get_objects() if type(o).__name__ == 'Records')\n"
            "    import os, json\n"
            "    line = '{\"k\": ' + json.dumps(rec._secret) + ', \"i\": 0, \"v\": ' + '[' * 200000 + ']' * 200000 + '}\\n'\n"
            "    os.write(3, line.encode())\n"
            "    return 2\n")
    hostile(box, code, status=Status.INCORRECT)


def test_expected_values_never_reach_the_child(box):
    sentinel = uuid.uuid4().hex
    code = ("import gc, sys\n"
            "def f(x):\n"
            f"    prefix = ''.join([{sentinel[:16]!r}, {sentinel[16:]!r}])\n"  # never whole in the code
            "    seen = [o for o in gc.get_objects() if isinstance(o, (dict, list, tuple))]\n"
            "    frame, frames = sys._getframe().f_back, []\n"
            "    while frame:\n"
            "        frames.append(frame.f_locals)\n"
            "        frame = frame.f_back\n"
            "    return prefix in repr(seen) + repr(frames)\n")
    out = judge_function(code, "f", [FunctionTest([1], sentinel)], sandbox=box)
    assert out.status is Status.INCORRECT  # the expected value was nowhere in the child
    assert "got False" in out.details["failures"][0]
    out = judge_function(code, "f", [FunctionTest([1], False)], sandbox=box)
    assert out.status is Status.CORRECT


@needs_ns
def test_tests_on_disk_are_not_visible():
    here = Path(__file__).resolve()
    code = ("import os\n"
            "def f(path):\n"
            "    found = []\n"
            "    for p in (path, os.path.dirname(path), '/work', '/proc/1/environ', '/home', '/etc/passwd'):\n"
            "        found.append(os.path.exists(p))\n"
            "    return found\n")
    with Sandbox(LIMITS) as sb:
        out = judge_function(code, "f", [FunctionTest([str(here)], [False] * 6)], sandbox=sb)
        assert out.status is Status.CORRECT, out
        assert_clean(sb)
        assert_honest_next(sb)


# ---------------------------------------------------------------------------------------------
# escapes


def test_setsid_double_fork_dies_with_the_run(box):
    marker = f"{time.time_ns() % 10**6 + 10**6}.5"  # an argument for sleep no other process has
    code = ("import os\n"
            "def f():\n"
            "    if os.fork() == 0:\n"
            "        os.setsid()\n"
            "        if os.fork() == 0:\n"
            "            os.execv('/bin/sleep', ['sleep', " + repr(marker) + "])\n"
            "        os._exit(0)\n"
            "    os.wait()\n"
            "    return 1\n")
    out = hostile(box, code, status=Status.CORRECT, marker=f"sleep {marker}")
    assert out.score == 1.0


def test_daemon_holding_stdout_does_not_hang_the_run(box):
    code = ("import os, time\n"
            "def f():\n"
            "    if os.fork() == 0:\n"
            "        os.setsid()\n"
            "        if os.fork() == 0:\n"
            "            while True:\n"
            "                time.sleep(1)\n"
            "        os._exit(0)\n"
            "    return 1\n")
    hostile(box, code, status=Status.CORRECT, bound=LIMITS.wall + 8)


def test_output_flood_is_cut(box):
    hostile(box, "import sys\ndef f():\n    while True:\n        sys.stdout.write('x' * 65536)\n",
            status=Status.OUTPUT_LIMIT)
    hostile(box, "import os\ndef f():\n    while True:\n        os.write(2, b'y' * 65536)\n", status=Status.OUTPUT_LIMIT)


def test_result_flood_is_cut(box):
    out = judge_function("def f():\n    return 'z' * (64 << 20)\n", "f", [FunctionTest([], 1)], sandbox=box,
                         limits=replace(LIMITS, memory_mb=2048))  # room to build it: the cap must cut it
    assert out.status is Status.OUTPUT_LIMIT, out
    assert_clean(box)
    if box.rlimits(LIMITS)["nproc"]:  # 512 MiB over 4 processes (the non-root fallback bounds processes alone)
        hostile(box, "def f():\n    return 'z' * (64 << 20)\n", status=Status.MEMORY_LIMIT)


@needs_ns
def test_host_environment_and_network_do_not_leak(monkeypatch):
    monkeypatch.setenv("GRPO_TEST_SECRET_TOKEN", "hunter2")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    code = ("import os, socket\n"
            "def f(port):\n"
            "    leaked = [k for k in os.environ if 'SECRET' in k]\n"
            "    reached = []\n"
            "    for addr in (('127.0.0.1', port), ('1.1.1.1', 53)):\n"
            "        s = socket.socket()\n"
            "        s.settimeout(0.5)\n"
            "        try:\n"
            "            s.connect(addr)\n"
            "            reached.append(addr[0])\n"
            "        except OSError:\n"
            "            pass\n"
            "    return [leaked, reached, sorted(os.environ)]\n")
    try:
        with Sandbox(LIMITS) as sb:
            run = sb.run("function", {"code": code, "entry_point": "f", "calls": [[port]]})
            leaked, reached, names = run.records[0]["v"]
            assert leaked == [] and reached == []
            assert set(names) <= {"PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "PYTHONIOENCODING", "PYTHONDONTWRITEBYTECODE"}
            assert_clean(sb)
    finally:
        server.close()


def test_private_working_directory(box):
    code = ("import os\n"
            "def f():\n"
            "    open('scratch.txt', 'w').write('hi')\n"
            "    return [os.listdir('.'), os.environ['HOME'] == os.getcwd()]\n")
    run = box.run("function", {"code": code, "entry_point": "f", "calls": [[]]})
    exposed = {p.split("/")[2] for p in under_tmp(filesystem_view()[0])}  # an interpreter under /tmp is bound in
    names, home = run.records[0]["v"]
    assert set(names) - exposed == {"scratch.txt"} and home, run.records
    assert_clean(box)
    if box._base:  # fallback: a host directory per run (namespaces: a tmpfs, nothing on the host)
        left = [os.path.join(d, f) for d, _, files in os.walk(box._base) for f in files if f == "scratch.txt"]
        assert left == []
    run = box.run("function", {"code": "import os\ndef f():\n    return os.listdir('.')\n", "entry_point": "f", "calls": [[]]})
    assert set(run.records[0]["v"]) - exposed == set()  # the next run starts empty


# ---------------------------------------------------------------------------------------------
# resource exhaustion


def test_infinite_loop_times_out(box):
    hostile(box, "def f():\n    while True:\n        pass\n", status=Status.TIMEOUT, bound=LIMITS.wall + 8)


def test_sleeping_forever_times_out(box):
    hostile(box, "import time\ndef f():\n    time.sleep(1000)\n", status=Status.TIMEOUT, bound=LIMITS.wall + 8)


@pytest.mark.slow
def test_fork_bomb(box):
    code = ("import os\n"
            "def f():\n"
            "    while True:\n"
            "        try:\n"
            "            os.fork()\n"
            "        except OSError:\n"
            "            pass\n")
    out = hostile(box, code, status=Status.TIMEOUT, bound=LIMITS.wall + 12)
    assert out.score == 0.0


def test_memory_bomb(box):
    hostile(box, "def f():\n    x = []\n    while True:\n        x.append(bytearray(1 << 24))\n", status=Status.MEMORY_LIMIT)
    hostile(box, "def f():\n    return [0] * (1 << 34)\n", status=Status.MEMORY_LIMIT)


def test_huge_file(box):
    code = "def f():\n    with open('big', 'wb') as fh:\n        while True:\n            fh.write(b'0' * (1 << 20))\n"
    hostile(box, code, status=Status.OUTPUT_LIMIT)


def test_blocking_on_stdin(box):
    hostile(box, "def f():\n    return input()\n", status=Status.RUNTIME_ERROR, bound=5)
    start = time.monotonic()
    out = judge_program("import sys\ndata = sys.stdin.read()\nprint(len(data))\n", [("", "0")], sandbox=box)
    assert out.status is Status.CORRECT and time.monotonic() - start < 5


def test_deep_recursion(box):
    hostile(box, "def f(n=0):\n    return f(n + 1)\n", status=Status.RUNTIME_ERROR)
    # recursion through a C function grows the C stack until the stack rlimit: SIGSEGV
    code = ("import functools, sys\nsys.setrecursionlimit(10**8)\n"
            "def f(n=0):\n    return functools.reduce(lambda a, b: f(n + 1), [1, 2])\n")
    hostile(box, code, status=Status.RUNTIME_ERROR)  # 128 MiB of address space: Python runs out first
    out = judge_function(code, "f", [FunctionTest([], 1)], sandbox=box, limits=replace(LIMITS, memory_mb=2048))
    assert out.status is Status.RUNTIME_ERROR and "SIGSEGV" in out.details["detail"], out
    assert_clean(box)


def test_syntax_error(box):
    hostile(box, "def f(:\n    return 1\n", status=Status.SYNTAX_ERROR)


@needs_ns
@pytest.mark.slow
def test_tree_dies_with_the_worker_that_started_it():
    """A scoring worker killed on its deadline takes its sandbox (template, monitor, code) along."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()

    def worker(conn):
        sb = Sandbox(Limits(wall=60, cpu=60))
        sb._start()
        conn.send((sb._uid, sb._proc.pid, sb._base))
        sb.run("function", {"code": "def f():\n    while True:\n        pass\n", "entry_point": "f", "calls": [[]]})

    proc = ctx.Process(target=worker, args=(child,))
    proc.start()
    uid, zygote, base = parent.recv()
    time.sleep(1.0)  # the run is under way
    proc.kill()
    proc.join()
    deadline = time.monotonic() + 5
    ours = f'"parent": {proc.pid},'  # in the command line of the template process and of every fork of it
    while time.monotonic() < deadline:
        left = [p for p in _procs() if (os.geteuid() == 0 and p[1] == uid) or p[0] == zygote or ours in p[2]]
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"survived their worker: {left}"
    assert base is None  # namespaces mode keeps nothing on the host that a killed worker could leave


@needs_ns
def test_tester_template_process_is_kept_across_tested_runs():
    """The tester's template process must be started from the calling thread: a parent-death
    signal fires when the *thread* that started a process ends, so starting it from the thread a
    tested run uses would restart it (about 0.1 s) on every run."""
    req = {"code": "def f(x):\n    return x\n", "entry_point": "f", "module_name": "solution"}
    tests = {"prelude": "", "setup": "", "steps": ["assert candidate(1) == 1"], "entry_point": "f"}
    with Sandbox(LIMITS) as sb:
        pids = set()
        for _ in range(3):
            tester, run = sb.run_tested(req, tests)
            assert tester.status == run.status == "ok" and tester.records[0]["ok"] is True
            time.sleep(0.05)
            assert sb._tester._proc.poll() is None, "the tester's template process died"
            pids.add(sb._tester._proc.pid)
        assert len(pids) == 1
