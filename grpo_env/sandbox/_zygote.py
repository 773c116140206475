"""The sandbox's template process and child-side harness (standard library only).

Started once per :class:`grpo_env.sandbox.Sandbox` as ``python -S -I -B _zygote.py CONFIG``, it
imports what submissions usually need, optionally enters its own user + mount namespace with a
minimal filesystem view (the interpreter and system libraries; no project files, no data sets),
then serves runs one at a time over a Unix socket. Per run::

    zygote ── clone(CLONE_NEWPID|CLONE_NEWIPC) ─> C (pid 1 of fresh pid and IPC namespaces, own
                   process group: mounts the run's /tmp, closes every inherited descriptor, becomes
                   non-dumpable, installs the system-call filter, forks D, reaps, exits with D's
                   status; when it exits the kernel kills everything left in the namespace)
                   └─ fork ─> D (applies rlimits, runs the code)

In the fallback mode (no namespaces) the zygote forks D directly and, being a child subreaper,
kills every descendant it finds in /proc until none is left.

The next run's tree is forked ahead and handed to the supervisor as a process group plus a socket
on which its D waits; the supervisor sends the request (JSON plus the run's four pipe ends) straight
to D. When the tree's top process ends, the zygote sweeps strays and reports its wait status
together with the next idle tree. Nothing here ever sees expected outputs: only code and arguments,
except in a *tester* run, which holds a data set's test code and calls the candidate's entry point
in another run (a ``serve`` run, in another template process) over a socket: plain data only.
"""

import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import time

# Modules submissions commonly import, loaded once so forked runs import nothing from disk.
PRELOAD = (
    "abc", "array", "base64", "bisect", "builtins", "cmath", "collections", "collections.abc", "contextlib",
    "copy", "dataclasses", "datetime", "decimal", "enum", "fractions", "functools", "hashlib", "heapq", "io",
    "itertools", "json", "math", "numbers", "operator", "random", "re", "resource", "statistics", "string",
    "struct", "textwrap", "traceback", "typing", "unicodedata",
)
for _m in PRELOAD:
    __import__(_m)
import gc

gc.freeze()  # forked runs must not copy every preloaded page when their collector walks the heap

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
CLONE_NEWIPC = 0x08000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE = 442, -100, 0x8000  # mount_setattr(2): 442 on x86_64 and aarch64
TMP_MB = 64  # size of a run's /tmp in the namespaces mode (set from the config at start)

# Exit codes D uses to say what happened (labels only: a pass is never read from an exit code).
EXIT_SYNTAX, EXIT_MEMORY, EXIT_MODULE, EXIT_NO_ENTRY, EXIT_SETUP = 90, 91, 92, 93, 94

libc = ctypes.CDLL(None, use_errno=True)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option, arg):
    _check(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def unshare(flags):
    _check(libc.unshare(flags), "unshare")


SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)


def fork_into_new_namespaces():
    """fork(), with the child as pid 1 of new pid and IPC namespaces (clone(CLONE_NEWPID |
    CLONE_NEWIPC)), so the caller's own namespaces for later children stay as they are; wrapped
    in the interpreter's before/after-fork hooks exactly like os.fork(). A run's SysV objects and
    POSIX message queues live in its IPC namespace and die with it."""
    if SYS_CLONE is None:
        raise OSError(f"clone(CLONE_NEWPID) is not wired up for {os.uname().machine}")
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    flags = CLONE_NEWPID | CLONE_NEWIPC | signal.SIGCHLD
    pid = libc.syscall(ctypes.c_long(SYS_CLONE), ctypes.c_ulong(flags), None, None, None, None)
    err = ctypes.get_errno()
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone(CLONE_NEWPID|CLONE_NEWIPC): {os.strerror(err)}")
    return pid


def die_with_parent(parent):
    """SIGKILL this process when its parent dies; exit now if it already has."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:
        os._exit(EXIT_SETUP)


def drop_capabilities():
    """Clear every capability (those a user namespace grants inside it, too)."""
    header = struct.pack("II", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = ctypes.create_string_buffer(24)  # two zeroed (effective, permitted, inheritable)
    _check(libc.capset(ctypes.c_char_p(header), data), "capset")


# ---------------------------------------------------------------------------------------------
# process sweeping (the fallback when there is no pid namespace, and the zygote's own backstop)

PROC_FD = None  # a descriptor on the host /proc, kept across pivot_root


def children_of(pid):
    try:
        fd = os.open(f"{pid}/task/{pid}/children", os.O_RDONLY, dir_fd=PROC_FD)
    except OSError:
        return _children_by_scan(pid)
    try:
        return [int(p) for p in os.read(fd, 1 << 16).split()]
    finally:
        os.close(fd)


def _children_by_scan(pid):
    kids = []
    for name in os.listdir(PROC_FD):
        if name.isdigit():
            try:
                fd = os.open(f"{name}/stat", os.O_RDONLY, dir_fd=PROC_FD)
                stat = os.read(fd, 4096)
                os.close(fd)
            except OSError:
                continue
            if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
                kids.append(int(name))
    return kids


def reap_nohang():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def sweep(keep=()):
    """Kill and reap every child of this process (orphans land here: it is a subreaper) until none."""
    me = os.getpid()
    for _ in range(10000):
        reap_nohang()
        kids = [k for k in children_of(me) if k not in keep]
        if not kids:
            return
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.0005)


# ---------------------------------------------------------------------------------------------
# filesystem view (namespaces mode)


def mount(src, target, fstype, flags, data=None):
    b = lambda s: None if s is None else s.encode()
    _check(libc.mount(b(src), b(target), b(fstype), ctypes.c_ulong(flags), b(data)), f"mount {target}")


def open_paths(expose):
    """O_PATH descriptors on the exposed paths, opened while we may still traverse to them
    (the interpreter can live under a directory only root may enter)."""
    found = {}
    for path in expose:
        if os.path.islink(path):
            found[path] = os.readlink(path)
        elif os.path.exists(path):
            found[path] = os.open(path, os.O_PATH | os.O_CLOEXEC)
    return found


class _MountAttr(ctypes.Structure):  # struct mount_attr
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


# statvfs flags a remount must keep (the kernel locks them on mounts a user namespace inherited)
_KEEP = ((os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, 1024), (os.ST_NODIRATIME, 2048), (os.ST_RELATIME, 1 << 21))
NO_MOUNT_SETATTR = False  # set from the config: take the remount path even where mount_setattr exists


def set_readonly(path, dev=False):
    """Make the mount at ``path`` read-only, nosuid and (unless it holds device nodes) nodev:
    with mount_setattr(2) the whole tree of mounts below it too (Linux >= 5.12); on older kernels
    a remount of that one mount, keeping its locked flags."""
    flags = MS_RDONLY | MS_NOSUID | (0 if dev else MS_NODEV)  # MOUNT_ATTR_* have the MS_* values here
    if not NO_MOUNT_SETATTR:
        attr = _MountAttr(flags, 0, 0, 0)
        ret = libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), path.encode(),
                           ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
        if ret == 0:
            return "mount_setattr"
        err = ctypes.get_errno()
        if err != 38:  # ENOSYS
            raise OSError(err, f"mount_setattr {path}: {os.strerror(err)}")
    keep = os.statvfs(path).f_flag
    extra = 0
    for st, ms in _KEEP:
        if keep & st:
            extra |= ms
    mount(None, path, None, MS_REMOUNT | MS_BIND | flags | extra)
    return "remount"


def _mountpoint(path, directory):
    """An empty directory or file to mount on (a bind mount's target has its source's type)."""
    if directory:
        os.makedirs(path, mode=0o755)
    else:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        open(path, "w").close()


def build_root(fds, masks, under_tmp):
    """Make a read-only tmpfs holding only the exposed paths (bind mounts, each made read-only,
    nosuid and nodev) and an empty ``/tmp`` (each run mounts its own there) the root. Package
    directories (``masks``) are covered with empty read-only tmpfs mounts. Exposed paths under
    /tmp (an interpreter installed there) also get a staging directory ``/.stage/N`` from which
    each run binds them back into its own /tmp. It is built on this namespace's private mount
    over /tmp, so nothing is created on the host. Returns how binds were made read-only."""
    root = "/tmp"
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    how = ""
    for path, fd in fds.items():
        inside = root + path
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        if isinstance(fd, str):  # a symlink (/bin -> usr/bin): recreate it
            os.symlink(fd, inside)
            continue
        if not os.path.exists(inside):
            _mountpoint(inside, directory=os.path.isdir(f"/proc/self/fd/{fd}"))
        mount(f"/proc/self/fd/{fd}", inside, None, MS_BIND | MS_REC)
        os.close(fd)
    for path in masks:
        if os.path.isdir(root + path):
            mount("tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
    for path, fd in fds.items():  # after the masks, so a recursive change covers them too
        if not isinstance(fd, str):
            how = set_readonly(root + path, dev=path.startswith("/dev/"))
    os.makedirs(root + "/tmp", exist_ok=True)
    for i, path in enumerate(under_tmp):
        _mountpoint(f"{root}/.stage/{i}", directory=os.path.isdir(root + path))
    os.chdir(root)
    os.mkdir(".old")
    _check(libc.pivot_root(b".", b".old"), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)  # no run can leave files for the next
    return how


def mount_run_tmp(under_tmp):
    """The run's /tmp: a fresh, size-limited, noexec tmpfs in the run's own mount namespace (its
    working directory, gone with the run's last process), with exposed paths under /tmp bound
    back into it read-only."""
    for i, path in enumerate(under_tmp):
        mount(path, f"/.stage/{i}", None, MS_BIND | MS_REC)
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={TMP_MB}m,mode=0700")
    for i, path in enumerate(under_tmp):
        _mountpoint(path, directory=os.path.isdir(f"/.stage/{i}"))
        mount(f"/.stage/{i}", path, None, MS_BIND | MS_REC)
        set_readonly(path)
        _check(libc.umount2(f"/.stage/{i}".encode(), MNT_DETACH), "umount stage")


# ---------------------------------------------------------------------------------------------
# the child side of one run (D)


LINK_FD, GO_FD = 100, 101  # where a tree keeps its link and its go pipe, out of the way of 0..4


def keep_only(link):
    """Close every inherited descriptor but the link and the go pipe (at LINK_FD, GO_FD)."""
    if link.fileno() != LINK_FD:  # (dup3 refuses equal descriptors)
        os.dup2(link.fileno(), LINK_FD, inheritable=False)
        link.close()
    os.closerange(3, LINK_FD)
    os.closerange(GO_FD + 1, 1 << 16)
    return socket.socket(fileno=LINK_FD)


def presetup_child(link, ns):
    """D before its request arrives: nothing inherited but the link and the go pipe."""
    # (namespaces mode: C dropped every capability and set no_new_privs before forking D)
    return keep_only(link)


def wait_for_go():
    """Block until the template process says the tree after this one exists (or is gone): only
    then may the code run, so the run's process count is exact (see ``serve``)."""
    try:
        os.read(GO_FD, 1)
    finally:
        os.close(GO_FD)


def drop_to(uid, parent):
    """Fallback mode started as root: become an unprivileged user. Only once the request is here,
    so while it waits an idle tree is no target for the previous run's code (same uid)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the change of credentials
    if parent is not None and os.getppid() != parent:
        os._exit(EXIT_SETUP)


def setup_child(req, fds, cfg, parent):
    """D once its request is here, before any submitted code: descriptors, privileges, limits,
    environment."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]  # move clear of 0..4 first
    for target, fd in enumerate(high):
        os.dup2(fd, target, inheritable=target < 3)
    os.closerange(len(high), 1 << 16)  # the link, the received originals, the copies
    # fds 3 (results) and 4 (a tester's channel) stay non-inheritable: programs the code starts
    # never get them
    if cfg.get("drop_uid") is not None:
        drop_to(cfg["drop_uid"], parent)
    if not cfg["ns"]:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_DUMPABLE, 0)  # no peer of the same uid may trace it or read its memory
    lim = req["limits"]
    import resource

    def cap(res, value):
        resource.setrlimit(res, (value, value))

    cap(resource.RLIMIT_CORE, 0)
    cpu = max(1, int(lim["cpu"] + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    cap(resource.RLIMIT_AS, lim["as_mb"] << 20)  # the run's memory over its process count
    cap(resource.RLIMIT_STACK, lim["stack_mb"] << 20)
    cap(resource.RLIMIT_FSIZE, lim["file_mb"] << 20)
    cap(resource.RLIMIT_NOFILE, lim["open_files"])
    cap(resource.RLIMIT_MSGQUEUE, 0)
    if lim.get("nproc"):
        cap(resource.RLIMIT_NPROC, lim["nproc"])
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # a too-big file kills: the supervisor sees it
    env = req["env"]
    if set(os.environ) != set(env):  # the zygote starts with the allow-list: usually no change
        os.environ.clear()
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    os.chdir(req["workdir"])
    os.umask(0o077)
    import random

    random.seed()  # the zygote's state is shared by every fork
    sys.argv = ["solution.py"]  # sys.stdin/out/err already wrap fds 0-2, now the run's pipes


def flush_exit(code):
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except BaseException:
            pass
    os._exit(code)


class Records:
    """The result channel: one JSON line per test, each carrying the run's secret."""

    def __init__(self, secret):
        self._secret = secret

    def write(self, record):
        record["k"] = self._secret
        data = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        while data:
            data = data[os.write(3, data):]


def describe(e):
    return f"{type(e).__name__}: {e}"[:500]


def load_code(req):
    try:
        compiled = compile(req["code"], "solution.py", "exec")
    except (SyntaxError, ValueError, OverflowError):
        flush_exit(EXIT_SYNTAX)
    except MemoryError:
        flush_exit(EXIT_MEMORY)
    g = {"__name__": req.get("module_name", "__main__"), "__builtins__": __builtins__}
    try:
        exec(compiled, g)
    except MemoryError:
        flush_exit(EXIT_MEMORY)
    except BaseException:  # SystemExit included: leaving early never passes anything
        import traceback

        traceback.print_exc(limit=-5)
        flush_exit(EXIT_MODULE)
    return g


def load_entry_point(req):
    """The submission's module namespace and its entry point (exit EXIT_NO_ENTRY when missing)."""
    g = load_code(req)
    fn = g.get(req["entry_point"])
    if not callable(fn):
        print(f"entry point {req['entry_point']!r} is not defined", file=sys.stderr)
        flush_exit(EXIT_NO_ENTRY)
    return g, fn


def report_each(records, items, run_one):
    """Run ``run_one(i, item)`` per test and write one record each (its result, or the exception);
    a MemoryError ends the run as a memory limit. Never compares anything here."""
    for i, item in enumerate(items):
        try:
            rec = {"i": i, **run_one(i, item)}
        except MemoryError:
            flush_exit(EXIT_MEMORY)
        except BaseException as e:
            rec = {"i": i, "e": describe(e)}
        records.write(rec)
    flush_exit(0)


def run_function(req, codec, records):
    """Call the entry point once per test; report each result as plain data."""
    _, fn = load_entry_point(req)
    report_each(records, req["calls"], lambda i, call: {"v": codec.encode(fn(*codec.decode(call)))})


class NotApplicable(BaseException):
    """The test code hands the candidate something that is not plain data (a callable, an
    instance of its own class): the suite cannot run across processes. A BaseException, so the
    test code's own ``except Exception`` cannot swallow it."""


class Channel:
    """JSON lines over the socket between a tester and the candidate's run (fd 4)."""

    def __init__(self, fd, cap):
        self.fd, self.cap, self.buf, self.seen, self.closed = fd, cap, bytearray(), 0, False

    def send(self, obj):
        data = (json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data):]

    def recv(self):
        """The next message, or None at the end (EOF, or a message over the size cap). Linear in
        what arrives: each byte is appended and searched for the newline once."""
        while (end := self.buf.find(b"\n", self.seen)) < 0:
            self.seen = len(self.buf)
            if self.closed or len(self.buf) > self.cap:
                self.closed = True
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk
        line = bytes(self.buf[:end])
        del self.buf[:end + 1]
        self.seen = 0
        return json.loads(line)


def run_serve(req, codec, records):
    """The candidate's side of a tested run: load the code, then answer calls from the tester
    (arguments in, the result or the exception's name and message out, as plain data) until it
    hangs up. Nothing of the tests is ever here."""
    _, fn = load_entry_point(req)
    chan = Channel(4, req["limits"]["max_result"])
    while (call := chan.recv()) is not None:
        args, kwargs = codec.decode(call)
        try:
            reply = {"v": codec.encode(fn(*args, **kwargs))}
        except MemoryError:
            flush_exit(EXIT_MEMORY)
        except BaseException as e:  # SystemExit included: it fails this call, nothing else
            reply = {"e": describe(e), "t": type(e).__name__}
        chan.send(reply)
    flush_exit(0)


def run_tester(req, codec, records):
    """The trusted side of a tested run: the prompt's own definitions (its helpers, never the
    candidate's), the data set's set-up code, then each test step, with ``candidate`` and the
    entry point's name bound to a proxy that calls the candidate's run over fd 4. One record per
    step; ``{"na": ...}`` when a step hands the candidate something that is not plain data."""
    import builtins

    chan = Channel(4, req["limits"]["max_result"])
    state = {}

    class CandidateError(Exception):
        pass

    def candidate(*args, **kwargs):
        try:  # room for any reply the candidate may send (MAX_DEPTH), handed back inside a test's call
            call = codec.encode([list(args), dict(kwargs)], max_depth=2 * codec.MAX_DEPTH)
        except codec.NotPlainData as e:
            state["na"] = f"the tests pass the candidate a value that is not plain data ({e})"
            raise NotApplicable(state["na"]) from None
        if chan.closed:
            raise CandidateError("the candidate's process has ended")
        state["calls"] = state.get("calls", 0) + 1
        chan.send(call)
        reply = chan.recv()
        if reply is None:
            raise CandidateError("the candidate's process ended during the call")
        if "e" in reply:
            kind = getattr(builtins, str(reply.get("t")), None)  # a test may expect ValueError, say
            if not (isinstance(kind, type) and issubclass(kind, Exception)) or issubclass(
                    kind, (StopIteration, StopAsyncIteration)):  # these would end the test's own iteration
                kind = CandidateError
            raise kind(str(reply["e"])[:500])
        return codec.decode(reply.get("v"))

    def exit_if_not_applicable():
        if "na" in state:  # the whole suite, not this step: one record saying why, nothing else
            records.write({"na": state["na"]})
            flush_exit(0)

    env = {"__name__": "__main__", "__builtins__": builtins}
    try:
        try:
            prelude = compile(req["prelude"], "prompt.py", "exec")
        except SyntaxError:  # a prompt that ends in a bare signature: give it a body
            prelude = compile(req["prelude"].rstrip() + "\n    pass\n", "prompt.py", "exec")
        exec(prelude, env)
        env["candidate"] = env[req["entry_point"]] = candidate
        exec(compile(req["setup"], "test_setup.py", "exec"), env)
    except MemoryError:
        flush_exit(EXIT_MEMORY)
    except BaseException as e:
        exit_if_not_applicable()
        if not state.get("calls"):  # the data set's own code failed: not the candidate's doing
            print(f"the tests' set-up failed: {describe(e)}", file=sys.stderr)
            flush_exit(EXIT_SETUP)
        for i in range(len(req["steps"])):  # the set-up called the candidate, and that failed
            records.write({"i": i, "e": f"the tests' set-up failed: {describe(e)}"})
        flush_exit(0)
    env["candidate"] = env[req["entry_point"]] = candidate  # MBPP asserts call it by name
    for name in PRELOAD:  # MBPP's asserts ran where the solution's `import math` was visible
        if "." not in name and name in sys.modules:
            env.setdefault(name, sys.modules[name])
    for i, src in enumerate(req["steps"]):
        try:
            exec(compile(src, f"test_{i}.py", "exec"), env)
            rec = {"i": i, "ok": True}
        except MemoryError:
            flush_exit(EXIT_MEMORY)
        except BaseException as e:
            rec = {"i": i, "e": describe(e)}
        exit_if_not_applicable()
        records.write(rec)
    flush_exit(0)


def run_program(req, codec, records):
    """Run the code as a script (stdin/stdout tasks); the supervisor compares the output."""
    try:
        compiled = compile(req["code"], "solution.py", "exec")
    except (SyntaxError, ValueError, OverflowError):
        flush_exit(EXIT_SYNTAX)
    try:
        exec(compiled, {"__name__": "__main__", "__builtins__": __builtins__})
    except MemoryError:
        flush_exit(EXIT_MEMORY)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        flush_exit(code & 0xFF)
    except BaseException:
        import traceback

        traceback.print_exc(limit=-5)
        flush_exit(1)
    flush_exit(0)


RUNNERS = {"function": run_function, "serve": run_serve, "tester": run_tester, "program": run_program}


def encode_status(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else EXIT_SETUP


def recv_request(link):
    """The request (JSON) and its four descriptors, as the zygote forwards them."""
    head, fds, _, _ = socket.recv_fds(link, 8, 8)
    if not head:
        raise EOFError
    head += recv_exact(link, 8 - len(head)) if len(head) < 8 else b""
    (size,) = struct.unpack("!Q", head)
    return json.loads(recv_exact(link, size)), fds


def run_child(link, cfg, codec, parent=None):
    """D: wait (pre-forked, already isolated) for a request, then set up and run it."""
    try:
        link = presetup_child(link, cfg["ns"])
    except BaseException:
        os._exit(EXIT_SETUP)
    try:
        req, fds = recv_request(link)
        wait_for_go()
    except BaseException:  # the zygote is closing
        os._exit(EXIT_SETUP)
    try:
        setup_child(req, fds, cfg, parent)
        records = Records(req.pop("secret"))
        records.write({"s": 1})  # set-up done: from here on, no exit status can mean "sandbox failure"
    except BaseException as e:
        try:
            os.write(2, f"sandbox setup failed: {describe(e)}\n".encode())
        finally:
            os._exit(EXIT_SETUP)
    try:
        RUNNERS[req["kind"]](req, codec, records)
    except MemoryError:  # while writing a result, say: nothing may unwind into the template's code
        flush_exit(EXIT_MEMORY)
    except BaseException:
        flush_exit(EXIT_MODULE)


def run_init(link, cfg):
    """C, pid 1 of the run's pid namespace: set the run up, fork D, reap orphans until D is done,
    exit with D's status; the kernel then kills whatever is left in the namespace. Returns (in D
    only) the link D waits on."""
    unshare(CLONE_NEWNS)  # the run's own mount namespace, for its own /tmp
    mount_run_tmp(cfg["under_tmp"])
    link = keep_only(link)  # nothing of the template process's (its socket, a /proc handle)
    drop_capabilities()  # C needs none either: it only forks and waits
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_DUMPABLE, 0)
    if INSTALL_FILTER is not None:
        INSTALL_FILTER()  # C and everything below it
    # Python's SIGINT handler would let the code interrupt C (pid 1 only gets signals it handles)
    # and turn its own failure into a "sandbox failure"; with no handler, C cannot be signalled.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    d = os.fork()
    if d == 0:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return link  # D goes on to run_child with it
    link.close()
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(EXIT_SETUP)
        if got == d:
            os._exit(encode_status(status))


# ---------------------------------------------------------------------------------------------
# the zygote's serving loop


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def send_msg(sock, obj):
    sock.sendall((json.dumps(obj) + "\n").encode())


def prefork(sock, cfg, codec):
    """Start the next run's isolated process tree now; it waits on a link for its request, so a
    request only has to be forwarded (forks and namespaces stay off the critical path).

    namespaces mode: zygote -> C (pid 1 of new pid and IPC namespaces) -> D; fallback: zygote ->
    D, the zygote being the child subreaper that sweeps what D leaves behind."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    go_r, go_w = os.pipe()
    pid = fork_into_new_namespaces() if cfg["ns"] else os.fork()
    if pid == 0:
        try:
            sock.close()
            ours.close()
            os.close(go_w)
            os.dup2(go_r, GO_FD, inheritable=False)
            if go_r != GO_FD:
                os.close(go_r)
            os.setpgid(0, 0)  # the supervisor kills the run by its process group
            die_with_parent(None if cfg["ns"] else cfg["zygote_pid"])
            if cfg["ns"]:
                theirs = run_init(theirs, cfg)  # returns in D only
        except BaseException:
            os._exit(EXIT_SETUP)
        run_child(theirs, cfg, codec, None if cfg["ns"] else cfg["zygote_pid"])
    theirs.close()
    os.close(go_r)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    return pid, ours, go_w


def release(go):
    """Let a handed-over tree's code run (the tree after it exists now)."""
    try:
        os.write(go, b"g")
    except OSError:  # the tree is gone
        pass
    os.close(go)


def finish(pid, keep, ns):
    """Wait for a run's top process, sweep strays (not ``keep``); the report for the supervisor.
    (With a pid namespace nothing of the run can outlive its pid 1: no sweep needed.)"""
    _, status, usage = os.wait4(pid, 0)
    if not ns:
        sweep(keep)
    done = {"done": True, "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss, "minflt": usage.ru_minflt,
            "code": encode_status(status)}
    return done


def hand_over(sock, msg, pid, link):
    """Give the supervisor an idle tree: its process group and the link its D waits on. The
    supervisor then sends the request (JSON and the run's four pipe ends) straight to D."""
    msg["slot"] = pid
    socket.send_fds(sock, [(json.dumps(msg) + "\n").encode()], [link.fileno()])
    link.close()


def serve(sock, cfg, codec, ready):
    """Keep one idle tree handed out ahead; when a run's tree ends, report it together with the
    next tree at once, then fork the tree after that one and only then let the handed-over tree's
    code run (its go pipe). So while a run's code runs, the namespace's process count is always the
    template, one idle tree and the run: the process limit the supervisor computes from that is
    exact, and no fork is on the path from a run's end to the next run's start."""
    pid, link, go = prefork(sock, cfg, codec)
    hand_over(sock, ready, pid, link)
    nxt, nxt_link, nxt_go = prefork(sock, cfg, codec)
    release(go)
    while True:
        done = finish(pid, keep=(nxt,), ns=cfg["ns"])  # returns when the supervisor's run (or its close) ends it
        try:
            hand_over(sock, done, nxt, nxt_link)
        except OSError:  # the supervisor is gone
            return
        after, after_link, after_go = prefork(sock, cfg, codec)
        release(nxt_go)
        pid, nxt, nxt_link, nxt_go = nxt, after, after_link, after_go


def load_sibling(name):
    """A module beside this file, loaded by path (this process has no site-packages)."""
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(f"grpo_sandbox_{name}", os.path.join(here, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


INSTALL_FILTER = None  # the seccomp filter's installer, made once here; each run's pid 1 calls it


def start(cfg):
    global PROC_FD, TMP_MB, INSTALL_FILTER, NO_MOUNT_SETATTR
    TMP_MB = int(cfg.get("tmp_mb", TMP_MB))
    NO_MOUNT_SETATTR = bool(cfg.get("no_mount_setattr"))
    os.environ.pop("LD_BIND_NOW", None)  # read by the loader at exec only; runs must not inherit it
    codec = load_sibling("codec")
    features = {}
    if not cfg["ns"]:  # the fallback sweeps by /proc; in the namespaces mode nothing holds the host's /proc
        PROC_FD = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(fileno=cfg["sock"])
    die_with_parent(cfg["parent"])
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    cfg["zygote_pid"] = os.getpid()
    if cfg["ns"]:
        if cfg.get("seccomp", True):
            seccomp = load_sibling("seccomp")
            try:
                program = seccomp.build()
                INSTALL_FILTER = seccomp.Installer(program)
                features["seccomp"] = f"{len(program) // 8} BPF instructions"
            except OSError as e:
                features["seccomp"] = f"off: {e}"
        uid, gid = os.geteuid(), os.getegid()  # before unshare: inside a new user namespace they read 65534
        # One network namespace (no interfaces up: no network at all) and one mount namespace serve
        # every run of this zygote: runs are strictly sequential and each run's processes are all
        # dead (its pid namespace is gone) before the next starts, and runs have no capabilities
        # to change either. A fresh pid and IPC namespace per run is what kills each run's whole
        # tree and everything it made.
        unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET)
        if cfg["map_by_parent"]:  # root outside: the parent maps our uid 0 to an unprivileged uid
            send_msg(sock, {"map": os.getpid()})
            recv_exact(sock, 1)
        else:  # an unprivileged user may map only itself
            with open("/proc/self/setgroups", "w") as f:
                f.write("deny")
            with open("/proc/self/uid_map", "w") as f:
                f.write(f"0 {uid} 1")
            with open("/proc/self/gid_map", "w") as f:
                f.write(f"0 {gid} 1")
        fds = open_paths(cfg["expose"])  # still our old ids: may traverse root-only directories
        if cfg["map_by_parent"]:
            os.setgroups([])
        os.setresgid(0, 0, 0)  # the namespace's root: the unprivileged ids outside
        os.setresuid(0, 0, 0)
        features["read_only"] = build_root(fds, cfg["masks"], cfg["under_tmp"])
    die_with_parent(cfg["parent"])  # a change of credentials clears the parent-death signal
    prctl(PR_SET_DUMPABLE, 0)  # (a change of credentials resets it too)
    serve(sock, cfg, codec, {"ready": True, "features": features})


if __name__ == "__main__":
    try:
        start(json.loads(sys.argv[1]))
    except BaseException as e:  # tell the parent why, on stderr (its log), then leave
        print(f"sandbox zygote failed: {describe(e)}", file=sys.stderr)
        sys.exit(3)
