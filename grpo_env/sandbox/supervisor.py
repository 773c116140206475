"""The trusted side of the sandbox: start the template process, run one submission, judge the run
from the supervisor's own evidence (its clock, the wait status, its byte counters).

A :class:`Sandbox` owns one template process (see ``_zygote.py``) and runs one submission at a
time; use one per thread (:func:`default_sandbox` keeps one per thread). Every run gets fresh
pipes, a fresh private working directory (removed afterwards) and a per-run secret for its result
records; after the wall deadline or an output overflow the whole process tree is killed.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from grpo_env.sandbox.isolation import Isolation, detect

ZYGOTE = Path(__file__).with_name("_zygote.py")
EXIT_SYNTAX, EXIT_MEMORY, EXIT_MODULE, EXIT_NO_ENTRY, EXIT_SETUP = 90, 91, 92, 93, 94
# System paths visible inside the namespaces mode's filesystem view (besides /tmp, the run's
# directory, and the interpreter's own files): programs and shared libraries, no data.
# /usr/lib itself is not: programs bundle whole Python installations there (google-cloud-sdk does).
_MULTIARCH = f"/usr/lib/{sysconfig.get_config_var('MULTIARCH')}" if sysconfig.get_config_var("MULTIARCH") else ""
SYSTEM = ["/usr/bin", _MULTIARCH if os.path.isdir(_MULTIARCH) else "/usr/lib", "/usr/lib/locale", "/usr/lib64",
          "/usr/lib32", "/usr/share/zoneinfo", "/bin", "/lib", "/lib64", "/lib32", "/etc/alternatives",
          "/etc/ld.so.cache", "/etc/localtime", "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"]
BASELINE_PROCESSES = 4  # namespaces mode: the template process, the idle tree's two, the run's pid 1


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the submitted code): an infrastructure error."""


class IsolationRefused(SandboxError):
    """This machine lacks the isolation untrusted code needs, and the user did not opt out."""


@dataclass(frozen=True)
class Limits:
    """Per-run resource limits. ``wall`` is enforced by the supervisor's clock, the rest by rlimits."""

    wall: float = 4.0  # seconds, then the whole process tree is killed
    cpu: float = 4.0  # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 1024  # the run's memory: each of its processes gets memory_mb / processes (RLIMIT_AS)
    stack_mb: int = 64
    file_mb: int = 16  # largest file the code may write (RLIMIT_FSIZE)
    open_files: int = 64
    processes: int = 4  # processes the run may have at once, its first included (RLIMIT_NPROC)
    max_output: int = 1 << 20  # bytes of stdout, and of stderr, before the run is killed
    max_result: int = 8 << 20  # bytes of result records


@dataclass
class RunResult:
    """What the supervisor saw. ``status`` is one of ok, timeout, memory_limit, output_limit,
    runtime_error, syntax_error, error; ``records`` are the verified result records by test index."""

    status: str
    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    records: dict[int, dict] = field(default_factory=dict)
    duplicates: set[int] = field(default_factory=set)
    forged: int = 0  # record lines without this run's secret (ignored)
    not_applicable: str = ""  # a tester run: why its tests cannot run across processes
    started: bool = False  # the child finished its set-up and was about to run the code
    wall: float = 0.0
    cpu: float = 0.0
    mode: str = ""
    detail: str = ""


def _env_for(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "HOME": workdir, "TMPDIR": workdir, "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}


def _inside(path: str, trees: list[str]) -> bool:
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in trees)


def filesystem_view() -> tuple[list[str], list[str]]:
    """(exposed paths, masked directories) of the namespaces mode: the system's programs and
    libraries, and this interpreter's executable, standard library and shared library; every
    directory of installed packages inside them (site-packages, dist-packages: data sets ship in
    packages) is covered by an empty read-only tmpfs."""
    import glob
    import site

    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})  # not a venv's
    libdir, ldlib = sysconfig.get_config_var("LIBDIR") or "", sysconfig.get_config_var("LDLIBRARY") or ""
    own = {paths["stdlib"], paths["platstdlib"], os.path.realpath(sys.executable), os.path.realpath(sys._base_executable)}
    if libdir and ldlib and os.path.exists(os.path.join(libdir, ldlib)):
        own.add(os.path.realpath(os.path.join(libdir, ldlib)))
    expose = SYSTEM + sorted(p for p in own if not _inside(p, SYSTEM))
    candidates = set(site.getsitepackages()) | {site.getusersitepackages()} | set(sys.path)
    for pattern in ("/usr/lib/python3*/*-packages", "/usr/lib64/python3*/*-packages", "/usr/local/lib/python3*/*-packages",
                    "/usr/lib/python3/dist-packages", os.path.join(paths["stdlib"], "*-packages")):
        candidates.update(glob.glob(pattern))
    masks = sorted({os.path.realpath(p) for p in candidates if p.endswith(("site-packages", "dist-packages"))
                    and os.path.isdir(p)})
    return expose, [m for m in masks if _inside(m, expose)]


def under_tmp(paths: list[str]) -> list[str]:
    """Exposed paths each run's own /tmp would hide (an interpreter installed under /tmp)."""
    return [p for p in paths if p.startswith("/tmp/") and os.path.exists(p)]


class Sandbox:
    """Runs untrusted Python one submission at a time, each in a fresh isolated process tree.

    ``isolation``: ``"auto"`` (namespaces when the machine grants them, else refuse),
    ``"namespaces"``, or ``"subreaper"`` (the fallback; refused unless ``allow_unisolated``).
    ``seccomp``: install the system-call filter in every run (namespaces mode; see seccomp.py).
    """

    def __init__(self, limits: Limits | None = None, *, isolation: str = "auto", allow_unisolated: bool | None = None,
                 tmp_mb: int = 64, seccomp: bool = True):
        self.limits = limits or Limits()
        self.tmp_mb = tmp_mb  # namespaces mode: size of each run's private /tmp (its working directory)
        self.seccomp = seccomp
        self.features: dict[str, str] = {}  # what the template process reported it set up
        self._no_mount_setattr = False  # take the older kernels' remount path (tests)
        self._allow_unisolated = allow_unisolated
        self._tester: Sandbox | None = None  # runs data sets' test code beside a candidate (run_tested)
        found: Isolation = detect()
        if allow_unisolated is None:
            allow_unisolated = os.environ.get("GRPO_ENV_ALLOW_UNISOLATED", "") not in ("", "0")
        if isolation == "auto":
            isolation = "namespaces" if found.full else "subreaper"
        if isolation == "namespaces" and not found.full:
            raise IsolationRefused(f"namespaces isolation is not available here: {found.missing()}")
        if isolation == "subreaper" and not allow_unisolated:
            raise IsolationRefused(
                "refusing to run untrusted code: this machine grants no "
                f"{found.missing() or 'namespaces (subreaper mode requested)'} "
                "(see `grpo-env doctor`). To run it anyway with only a subreaper sweep and rlimits, "
                "set GRPO_ENV_ALLOW_UNISOLATED=1 or the task option allow_unisolated = true."
            )
        self.mode = isolation
        self._root = os.geteuid() == 0
        self._uid = 100000 + secrets.randbelow(60000) if self._root else os.geteuid()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._buf = b""
        self._fds: list[int] = []  # descriptors received from the template process, not yet used
        self._slot: tuple[int, socket.socket] | None = None  # the idle tree: (process group, link)
        self._base: str | None = None  # fallback mode only: holds the runs' host directories
        self._log = None  # the template process's stderr (an unlinked temporary file)
        self._runs = 0
        self.idle_group: int | None = None  # process group of the pre-forked tree awaiting the next run
        self._lock = threading.Lock()

    # -- template process ---------------------------------------------------------------------

    def _start(self) -> None:
        self._stop()
        ns = self.mode == "namespaces"
        if not ns:  # the fallback's run directories live on the host (namespaces: a tmpfs per run)
            self._base = tempfile.mkdtemp(prefix="grpo-sandbox-")
            os.chmod(self._base, 0o755)
            os.mkdir(os.path.join(self._base, "work"), 0o755)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        expose, masks = filesystem_view()
        cfg = {"sock": theirs.fileno(), "ns": ns, "parent": os.getpid(), "tmp_mb": self.tmp_mb,
               "map_by_parent": ns and self._root, "expose": expose, "masks": masks, "under_tmp": under_tmp(expose),
               "seccomp": self.seccomp, "no_mount_setattr": self._no_mount_setattr,
               "drop_uid": self._uid if (self._root and not ns) else None}
        self._log = tempfile.TemporaryFile()  # unlinked at once: its errors, and no file left behind
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-I", "-B", str(ZYGOTE), json.dumps(cfg)],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self._log, close_fds=True,
                # LD_BIND_NOW: resolve every symbol once here, not again (page by page) in each fork
                env={**_env_for("/tmp"), "LD_BIND_NOW": "1"},
            )
        finally:
            theirs.close()
        self._sock, self._buf = ours, b""
        deadline = time.monotonic() + 30
        while True:
            msg = self._recv_msg(deadline)
            if msg is None:
                raise SandboxError(f"the sandbox's template process did not start ({self._log_tail()}); "
                                   "`grpo-env doctor` shows what this machine grants")
            if "map" in msg:  # we are root: map its namespace's root to our unprivileged uid
                pid = msg["map"]
                with open(f"/proc/{pid}/uid_map", "w") as f:
                    f.write(f"0 {self._uid} 1")
                with open(f"/proc/{pid}/gid_map", "w") as f:
                    f.write(f"0 {self._uid} 1")
                self._sock.sendall(b"k")
            elif msg.get("ready"):
                self.features = dict(msg.get("features") or {})
                self._take_slot(msg)
                return

    def ensure_started(self) -> None:
        """Start the template process now, in this thread, unless it runs (its parent-death signal
        fires when the *thread* that started it ends, so a sandbox lives in a long-lived thread)."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()

    def _log_tail(self) -> str:
        """The end of what the template process wrote to its stderr (its reason for failing)."""
        try:
            self._log.seek(0)
            return self._log.read()[-2000:].decode(errors="replace").strip() or "(no log)"
        except (OSError, AttributeError, ValueError):
            return "(no log)"

    def _take_slot(self, msg: dict) -> None:
        """Keep the idle tree a message hands over: its process group and the link to its D."""
        if not self._fds:
            raise SandboxError("the template process handed over a tree without its link")
        self._slot = (msg["slot"], socket.socket(fileno=self._fds.pop(0)))
        self.idle_group = msg["slot"]

    def _stop(self) -> None:
        if self._slot is not None:
            self._slot[1].close()  # its D sees EOF and leaves
            self._slot = None
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.kill()
            except OSError:
                pass
            self._proc.wait()
            self._proc = None
        if self._base is not None:
            _rmtree(self._base)
            self._base = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        with self._lock:
            self._stop()
            if self._tester is not None:
                self._tester.close()
                self._tester = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv_chunk(self) -> bool:
        """Read what the template process sent (with any descriptors); False on EOF."""
        chunk, fds, _, _ = socket.recv_fds(self._sock, 65536, 4)
        self._fds += fds
        self._buf += chunk
        return bool(chunk)

    def _recv_msg(self, deadline: float) -> dict | None:
        """Next JSON line from the template process, or None on EOF / deadline."""
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                if not self._recv_chunk():
                    return None
            except (TimeoutError, OSError):
                return None
            finally:
                self._sock.settimeout(None)
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    # -- one run --------------------------------------------------------------------------------

    def run(self, kind: str, request: dict[str, Any], *, stdin: bytes = b"", limits: Limits | None = None,
            channel: socket.socket | None = None) -> RunResult:
        """Run one submission. ``kind`` is ``function``, ``program``, or one side of a tested run
        (``serve``, ``tester``: see :meth:`run_tested`); ``request`` holds ``code`` and the kind's
        fields (``entry_point``, ``calls``). ``channel`` becomes the run's fd 4 (and is closed
        here). A template process that cannot start is a ``status="error"`` result whose
        ``detail`` says why."""
        try:
            with self._lock:
                try:
                    if self._proc is None or self._proc.poll() is not None:
                        self._start()
                    return self._run(kind, request, stdin, limits or self.limits, channel)
                except (OSError, ValueError, SandboxError) as e:
                    self._stop()  # a broken template process is replaced on the next run
                    return RunResult(status="error", mode=self.mode, detail=f"sandbox failure: {e}")
        finally:
            if channel is not None:
                channel.close()

    def run_tested(self, request: dict[str, Any], tests: dict[str, Any], *,
                   limits: Limits | None = None) -> tuple[RunResult, RunResult]:
        """A data set's test code against a candidate, each in a run of its own: the candidate's
        code is loaded in a ``serve`` run of this sandbox; ``tests`` (``prelude``: the prompt's
        own definitions, ``setup``, ``steps``, ``entry_point``) runs in a ``tester`` run of a
        second template process (another uid, user and pid namespace) and calls the candidate's
        entry point over a socket, plain data only. Returns (tester's result, candidate's)."""
        lim = limits or self.limits
        if self._tester is None:
            self._tester = Sandbox(self.limits, isolation=self.mode, allow_unisolated=self._allow_unisolated,
                                   tmp_mb=self.tmp_mb, seccomp=self.seccomp)
        try:
            self._tester.ensure_started()  # here: a template process dies with the thread that started it
        except (OSError, ValueError, SandboxError) as e:
            failed = RunResult(status="error", mode=self.mode, detail=f"sandbox failure (tester): {e}")
            return failed, failed
        tester_limits = replace(lim, wall=lim.wall + 2, cpu=lim.cpu + 2, memory_mb=max(lim.memory_mb, 512), processes=2)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        got: dict[str, RunResult] = {}
        tester = threading.Thread(target=lambda: got.__setitem__("t", self._tester.run(
            "tester", {**tests, "code": ""}, limits=tester_limits, channel=theirs)), daemon=True)
        tester.start()
        candidate = self.run("serve", request, limits=lim, channel=ours)
        tester.join()
        return got.get("t") or RunResult(status="error", mode=self.mode, detail="the tester run did not finish"), candidate

    def _run(self, kind: str, request: dict, stdin: bytes, lim: Limits, channel: socket.socket | None) -> RunResult:
        if self._slot is None:
            raise SandboxError("no idle process tree to run in")
        self._runs += 1
        if self.mode == "namespaces":
            workdir, inside = None, "/tmp"  # a fresh tmpfs per run, in the run's mount namespace
        else:
            workdir = inside = os.path.join(self._base, "work", f"run{self._runs}")
            os.mkdir(workdir, 0o700)
            if self._root:
                os.chown(workdir, self._uid, self._uid)
        secret = secrets.token_hex(16)
        req = dict(request, kind=kind, secret=secret, workdir=inside, env=_env_for(inside), limits=self.rlimits(lim))
        payload = json.dumps(req).encode()
        pipes = [os.pipe2(os.O_CLOEXEC) for _ in range(4)]  # stdin, stdout, stderr, results
        child_ends = [pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1]]
        if channel is not None:
            child_ends.append(os.dup(channel.fileno()))  # the run's fd 4
        ours = [pipes[0][1], pipes[1][0], pipes[2][0], pipes[3][0]]
        pid, link = self._slot
        self._slot = None
        try:  # straight to the waiting child: the template process is not on this path
            socket.send_fds(link, [struct.pack("!Q", len(payload))], child_ends)
            link.sendall(payload)
        except OSError:
            pass  # the idle tree died; its end is reported like any other and judged from evidence
        finally:
            link.close()
            for fd in child_ends:
                os.close(fd)
        try:
            return self._supervise(pid, ours, stdin, lim, secret, len(request.get("calls") or request.get("steps") or []))
        finally:
            for fd in ours:
                if fd >= 0:  # closed ones are marked -1: never close a number another thread may reuse
                    os.close(fd)
            if workdir:
                _rmtree(workdir)

    def rlimits(self, lim: Limits) -> dict[str, Any]:
        """The limits as the child applies them. Memory is bounded per run through the process
        count: at most ``processes`` processes (RLIMIT_NPROC counts every process of the run's
        uid in its user namespace, so the template process and the idle tree are added), each
        with ``memory_mb / processes`` of address space, so together they stay within
        ``memory_mb``. Without namespaces and not root, RLIMIT_NPROC would count all our own
        processes: no process limit, and each process alone gets ``memory_mb``."""
        out = asdict(lim)
        processes = max(1, lim.processes)
        if self.mode == "namespaces":
            out["nproc"] = processes + BASELINE_PROCESSES
        elif self._root:
            out["nproc"] = processes  # a uid of the sandbox's own, taken only when the run starts
        else:
            out["nproc"], processes = 0, 1
        out["as_mb"] = max(1, lim.memory_mb // processes)
        return out

    def memory_mode(self) -> str:
        """How memory and processes are bounded, in words (``grpo-env doctor``)."""
        r = self.rlimits(self.limits)
        if r["nproc"]:
            return (f"per run: at most {self.limits.processes} processes x {r['as_mb']} MiB of address space each "
                    f"= {self.limits.memory_mb} MiB (RLIMIT_NPROC in the run's user namespace, RLIMIT_AS); no cgroup")
        return f"per process only: {r['as_mb']} MiB of address space each, no process limit (fallback, not root)"

    def _supervise(self, pid: int, fds: list[int], stdin: bytes, lim: Limits, secret: str, n_tests: int) -> RunResult:
        """Feed stdin, read every pipe concurrently, enforce the deadline and the byte caps.
        ``fds`` (stdin, stdout, stderr, results) is updated in place: -1 once closed here."""
        in_w, out_r, err_r, res_r = fds
        start = time.monotonic()
        deadline = start + lim.wall
        bufs = {out_r: bytearray(), err_r: bytearray(), res_r: bytearray()}
        caps = {out_r: lim.max_output, err_r: lim.max_output, res_r: lim.max_result}
        sel = selectors.DefaultSelector()
        for fd in (out_r, err_r, res_r):
            sel.register(fd, selectors.EVENT_READ)
        sel.register(self._sock, selectors.EVENT_READ)
        pending = memoryview(stdin)
        if pending:
            os.set_blocking(in_w, False)
            sel.register(in_w, selectors.EVENT_WRITE)
        else:
            os.close(in_w)  # stdin at EOF from the start
            fds[0] = -1
        killed = ""
        done: dict | None = None
        open_fds = {out_r, err_r, res_r}
        while done is None or open_fds:
            now = time.monotonic()
            if not killed and now >= deadline:
                killed = "deadline"
                self._kill(pid)
            if done is not None and now > deadline + 5:  # a writer outlived the sweep: stop reading
                break
            if now > deadline + 10:
                raise SandboxError("the template process did not report the end of a run")
            timeout = max(0.0, deadline - now) if not killed else 0.5
            for key, _ in sel.select(timeout):
                fd = key.fd
                if fd == in_w:
                    try:
                        n = os.write(in_w, pending[:65536])
                    except BrokenPipeError:
                        n = len(pending)
                    pending = pending[n:]
                    if not pending:
                        sel.unregister(in_w)
                        os.close(in_w)
                        fds[0] = -1
                    continue
                if key.fileobj is self._sock:
                    if not self._recv_chunk():
                        raise SandboxError(f"the template process died: {self._log_tail()}")
                    if b"\n" in self._buf:
                        line, self._buf = self._buf.split(b"\n", 1)
                        done = json.loads(line)  # the run's end, with the next idle tree
                        self._take_slot(done)
                        sel.unregister(self._sock)
                    continue
                data = os.read(fd, 65536)
                if not data:
                    sel.unregister(fd)
                    open_fds.discard(fd)
                    continue
                bufs[fd] += data
                if len(bufs[fd]) > caps[fd] and not killed:
                    killed = "output"
                    self._kill(pid)
        sel.close()
        result = RunResult(status="", wall=time.monotonic() - start, mode=self.mode,
                           stdout=bytes(bufs[out_r][: lim.max_output]), stderr=bytes(bufs[err_r][: lim.max_output]))
        result.cpu = done.get("cpu", 0.0) if done else 0.0
        self._read_records(result, bytes(bufs[res_r][: lim.max_result]), secret, n_tests)
        result.status = _status(result, done or {}, killed, lim)
        return result

    def _kill(self, pid: int) -> None:
        """Kill the run's process group: its top process (pid 1 of its namespace: the whole tree
        dies with it; in the fallback the zygote then sweeps what left the group)."""
        for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                target()
            except (ProcessLookupError, PermissionError):
                pass

    @staticmethod
    def _read_records(result: RunResult, data: bytes, secret: str, n_tests: int) -> None:
        for line in data.splitlines():
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError, MemoryError):  # garbage, or nested to crash us
                result.forged += 1
                continue
            if not isinstance(rec, dict) or rec.get("k") != secret:
                result.forged += 1
                continue
            if "i" not in rec and rec.get("s") == 1:
                result.started = True
                continue
            if "i" not in rec and "na" in rec:
                result.not_applicable = str(rec["na"])[:500]
                continue
            i = rec.get("i")
            if type(i) is not int or not 0 <= i < n_tests:
                result.forged += 1
                continue
            if i in result.records:
                result.duplicates.add(i)
            result.records[i] = rec


def _status(r: RunResult, done: dict, killed: str, lim: Limits) -> str:
    if killed == "deadline":
        r.detail = f"wall deadline of {lim.wall:g}s passed; process tree killed"
        return "timeout"
    if killed == "output":
        r.detail = "output over the byte cap; process tree killed"
        return "output_limit"
    code = done.get("code")  # the run's exit status; 128 + n when signal n killed it
    r.exit_code = code
    if code is not None and code > 128:
        r.signal, r.exit_code = code - 128, None
        if r.signal in (signal.SIGXCPU, signal.SIGKILL) and r.cpu >= lim.cpu * 0.9:
            r.detail = f"CPU limit of {lim.cpu:g}s reached"
            return "timeout"
        if r.signal == signal.SIGXFSZ:
            r.detail = f"file size limit of {lim.file_mb} MiB reached"
            return "output_limit"
        r.detail = f"killed by signal {signal.Signals(r.signal).name if r.signal in signal.valid_signals() else r.signal}"
        return "runtime_error"
    if code == 0:
        return "ok"
    if code == EXIT_SYNTAX:
        return "syntax_error"
    if code == EXIT_MEMORY:
        r.detail = f"memory limit of {lim.memory_mb} MiB reached"
        return "memory_limit"
    if code == EXIT_SETUP and not r.started:  # after set-up, the code itself may have exited so
        r.detail = "sandbox setup failed: " + r.stderr.decode(errors="replace")[-500:]
        return "error"
    return "runtime_error"


def _rmtree(path: str) -> None:
    def fix(func, p, exc):  # the code may have made its files unwritable
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=fix)


_local = threading.local()


def default_sandbox(limits: Limits | None = None, **kwargs: Any) -> Sandbox:
    """This thread's shared sandbox (one template process per thread and process)."""
    key = (os.getpid(), limits, tuple(sorted(kwargs.items())))
    boxes = getattr(_local, "boxes", None)
    if boxes is None or getattr(_local, "pid", None) != os.getpid():
        _local.boxes, _local.pid = {}, os.getpid()  # a forked worker must not reuse its parent's
        boxes = _local.boxes
    if key not in boxes:
        boxes[key] = Sandbox(limits, **kwargs)
    return boxes[key]


__all__ = ["IsolationRefused", "Limits", "RunResult", "Sandbox", "SandboxError", "default_sandbox", "replace"]
