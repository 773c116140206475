"""The sandbox's template process and child-side harness (standard library only).

Started once per :class:`grpo_env.sandbox.Sandbox` as ``python -S -I -B _zygote.py CONFIG``, it
imports what submissions usually need, optionally enters its own user + mount namespace with a
minimal filesystem view (the interpreter and system libraries; no project files, no data sets),
then serves runs one at a time over a Unix socket. Per run::

    zygote ── clone(CLONE_NEWPID) ─> C (pid 1 of a fresh pid namespace, own process group:
                                        forks D, reaps, exits with D's status; when it exits the
                                        kernel kills everything left in the namespace)
                                        └─ fork ─> D (drops privileges, applies rlimits, runs the code)

In the fallback mode (no namespaces) the zygote forks D directly and, being a child subreaper,
kills every descendant it finds in /proc until none is left.

The next run's tree is forked ahead and handed to the supervisor as a process group plus a socket
on which its D waits; the supervisor sends the request (JSON plus the run's four pipe ends) straight
to D. When the tree's top process ends, the zygote sweeps strays and reports its wait status
together with the next idle tree. Nothing here ever sees expected outputs: only code and arguments.
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
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
MS_RDONLY, MS_NOSUID, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
MS_NODEV = 4
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


def fork_into_new_pid_namespace():
    """fork(), with the child as pid 1 of a new pid namespace (clone(CLONE_NEWPID)), so the
    caller's own namespace for later children stays as it is; wrapped in the interpreter's
    before/after-fork hooks exactly like os.fork()."""
    if SYS_CLONE is None:
        raise OSError(f"clone(CLONE_NEWPID) is not wired up for {os.uname().machine}")
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = libc.syscall(ctypes.c_long(SYS_CLONE), ctypes.c_ulong(CLONE_NEWPID | signal.SIGCHLD), None, None, None, None)
    err = ctypes.get_errno()
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone(CLONE_NEWPID): {os.strerror(err)}")
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


def build_root(fds):
    """Make a read-only tmpfs holding only the exposed paths (bind mounts) and an empty ``/tmp``
    (each run mounts its own there) the root. It is built on this namespace's private mount over
    /tmp, so nothing is created on the host."""
    root = "/tmp"
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID, "size=1m,mode=0755")
    for path, fd in fds.items():
        inside = root + path
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        if isinstance(fd, str):  # a symlink (/bin -> usr/bin): recreate it
            os.symlink(fd, inside)
            continue
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(inside, exist_ok=True)
        else:
            open(inside, "w").close()
        mount(f"/proc/self/fd/{fd}", inside, None, MS_BIND | MS_REC)
        os.close(fd)
    os.makedirs(root + "/tmp", exist_ok=True)
    os.chdir(root)
    os.mkdir(".old")
    _check(libc.pivot_root(b".", b".old"), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID)  # no run can leave files for the next


# ---------------------------------------------------------------------------------------------
# the child side of one run (D)


def presetup_child(link, ns):
    """D before its request arrives: nothing inherited but the link."""
    fd = fcntl.fcntl(link.fileno(), fcntl.F_DUPFD_CLOEXEC, 100)  # out of the way of 0..3
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 16)
    # (namespaces mode: C dropped every capability and set no_new_privs before forking D)
    return socket.socket(fileno=fd)


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
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]  # move clear of 0..3 first
    for target, fd in enumerate(high):
        os.dup2(fd, target, inheritable=target < 3)
    os.closerange(4, 1 << 16)  # the link, the received originals, the copies
    os.set_inheritable(3, False)  # programs the code starts never get the result channel
    if cfg.get("drop_uid") is not None:
        drop_to(cfg["drop_uid"], parent)
    if not cfg["ns"]:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
    lim = req["limits"]
    import resource

    def cap(res, value):
        resource.setrlimit(res, (value, value))

    cap(resource.RLIMIT_CORE, 0)
    cpu = max(1, int(lim["cpu"] + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    cap(resource.RLIMIT_AS, lim["memory_mb"] << 20)
    cap(resource.RLIMIT_STACK, lim["stack_mb"] << 20)
    cap(resource.RLIMIT_FSIZE, lim["file_mb"] << 20)
    cap(resource.RLIMIT_NOFILE, lim["open_files"])
    if lim.get("processes"):
        cap(resource.RLIMIT_NPROC, lim["processes"])
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


def run_asserts(req, codec, records):
    """Run assert-style test statements one by one (the flagged fallback for tests not converted
    to data): the entry point is wrapped so each result is a plain-data copy, which defeats
    objects with a rigged ``__eq__``."""
    env, fn = load_entry_point(req)  # as in the original harnesses, the tests see the module's helpers

    def candidate(*args, **kwargs):
        return codec.decode(codec.encode(fn(*args, **kwargs)))

    env["candidate"] = env[req["entry_point"]] = candidate
    try:
        exec(compile(req["setup"], "test_setup.py", "exec"), env)
    except MemoryError:
        flush_exit(EXIT_MEMORY)
    except BaseException as e:
        print(f"test setup failed: {describe(e)}", file=sys.stderr)
        flush_exit(EXIT_MODULE)
    env["candidate"] = env[req["entry_point"]] = candidate  # MBPP asserts call it by name

    def step(i, src):
        exec(compile(src, f"test_{i}.py", "exec"), env)
        return {"ok": True}

    report_each(records, req["steps"], step)


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


RUNNERS = {"function": run_function, "asserts": run_asserts, "program": run_program}


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
    RUNNERS[req["kind"]](req, codec, records)


def run_init(link):
    """C, pid 1 of the run's pid namespace: fork D, reap orphans until D is done, exit with D's
    status; the kernel then kills whatever is left in the namespace."""
    # A fresh, size-limited tmpfs as /tmp in a mount namespace of the run's own: the working
    # directory, gone with the run's last process (nothing to clean up, nothing left for the next).
    unshare(CLONE_NEWNS)
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={TMP_MB}m,mode=0700")
    drop_capabilities()  # C needs none either: it only forks and waits
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    # Python's SIGINT handler would let the code interrupt C (pid 1 only gets signals it handles)
    # and turn its own failure into a "sandbox failure"; with no handler, C cannot be signalled.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    d = os.fork()
    if d == 0:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return  # D goes on to run_child
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

    namespaces mode: zygote -> C (pid 1 of a new pid namespace) -> D; fallback: zygote -> D, the
    zygote being the child subreaper that sweeps what D leaves behind."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = fork_into_new_pid_namespace() if cfg["ns"] else os.fork()
    if pid == 0:
        try:
            sock.close()
            ours.close()
            os.setpgid(0, 0)  # the supervisor kills the run by its process group
            die_with_parent(None if cfg["ns"] else cfg["zygote_pid"])
            if cfg["ns"]:
                run_init(theirs)  # returns in D only
        except BaseException:
            os._exit(EXIT_SETUP)
        run_child(theirs, cfg, codec, None if cfg["ns"] else cfg["zygote_pid"])
    theirs.close()
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    return pid, ours


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


def serve(sock, cfg, codec):
    """Keep one idle tree handed out ahead; when a run's tree ends, report it with the next one."""
    pid, link = prefork(sock, cfg, codec)
    hand_over(sock, {"ready": True}, pid, link)
    while True:
        nxt, link = prefork(sock, cfg, codec)  # ready while the current tree waits or runs
        # returns when the supervisor's run (or its close) ends the current tree
        done = finish(pid, keep=(nxt,), ns=cfg["ns"])
        try:
            hand_over(sock, done, nxt, link)
        except OSError:  # the supervisor is gone
            return
        pid = nxt


def load_codec():
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("grpo_sandbox_codec", os.path.join(here, "codec.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def start(cfg):
    global PROC_FD, TMP_MB
    TMP_MB = int(cfg.get("tmp_mb", TMP_MB))
    os.environ.pop("LD_BIND_NOW", None)  # read by the loader at exec only; runs must not inherit it
    codec = load_codec()
    PROC_FD = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(fileno=cfg["sock"])
    die_with_parent(cfg["parent"])
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    cfg["zygote_pid"] = os.getpid()
    if cfg["ns"]:
        # One network namespace (no interfaces up: no network at all) and one mount namespace serve
        # every run of this zygote: runs are strictly sequential and each run's processes are all
        # dead (its pid namespace is gone) before the next starts, and runs have no capabilities
        # to change either. A fresh pid namespace per run is what kills each run's whole tree.
        unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET)
        if cfg["map_by_parent"]:  # root outside: the parent maps our uid 0 to an unprivileged uid
            send_msg(sock, {"map": os.getpid()})
            recv_exact(sock, 1)
        else:  # an unprivileged user may map only itself
            uid, gid = os.geteuid(), os.getegid()
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
        build_root(fds)
    die_with_parent(cfg["parent"])  # a change of credentials clears the parent-death signal
    serve(sock, cfg, codec)


if __name__ == "__main__":
    try:
        start(json.loads(sys.argv[1]))
    except BaseException as e:  # tell the parent why, on stderr (its log), then leave
        print(f"sandbox zygote failed: {describe(e)}", file=sys.stderr)
        sys.exit(3)
