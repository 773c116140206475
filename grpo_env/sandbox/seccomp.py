"""The sandbox's system-call filter, built with libseccomp (standard library only: ctypes).

The template process builds the filter once (:func:`build`) while the host's libraries are still
in view, as a classic BPF program, and prepares its :class:`Installer`; each run's pid 1 installs it before it forks
the code's process, so every process of a run, and everything they exec, is filtered. What it
refuses (``EPERM``; ``clone3`` gets ``ENOSYS`` so libc falls back to ``clone``, whose flags the filter
can read):

- reaching other processes: ``ptrace``, ``process_vm_readv/writev``, ``pidfd_getfd``, ``kcmp``;
- new namespaces and the mount table: ``unshare``, ``setns``, ``clone`` with any ``CLONE_NEW*`` flag,
  ``mount`` and the new mount API, ``pivot_root``, ``chroot``;
- state that outlives a run: the kernel keyrings (``keyctl``, ``add_key``, ``request_key``), SysV and
  POSIX IPC (``shmget``, ``msgget``, ``semget``, ``mq_open``);
- large kernel attack surface no solution needs: ``io_uring_*``, ``bpf``, ``perf_event_open``,
  ``userfaultfd``, ``fanotify_init``, ``open_by_handle_at``, modules, ``kexec``, ``reboot``, swap,
  clocks, ``personality``, ``syslog``, ``acct``, ``quotactl``.

Other architectures' system-call tables (i386 calls from an x86-64 process) kill the process:
libseccomp's default for a foreign architecture. We call the C library through ctypes because the
template process runs ``python -S`` (no site-packages): libseccomp's own Python binding is not on
PyPI, and the ctypes shim on PyPI (pyseccomp) has had no release since 2021.
"""

import ctypes
import ctypes.util
import errno
import os

DENY = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
    "fsopen", "fsmount", "fspick", "fsconfig",
    "keyctl", "add_key", "request_key", "shmget", "msgget", "semget", "mq_open",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open", "userfaultfd",
    "fanotify_init", "open_by_handle_at", "name_to_handle_at", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "personality", "syslog", "acct", "quotactl", "lookup_dcookie", "vhangup", "iopl", "ioperm",
)
CLONE_NEW = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
ACT_ALLOW = 0x7FFF0000
CMP_MASKED_EQ = 7
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}.get(os.uname().machine)
SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1, 1 << 2


def _errno(code):
    return 0x00050000 | (code & 0xFFFF)  # SCMP_ACT_ERRNO


class _ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def build():
    """The filter as a classic BPF program (bytes); raises OSError when libseccomp is missing."""
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(ACT_ALLOW)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:
        def rule(action, call, *cmps):
            nr = lib.seccomp_syscall_resolve_name(call.encode())
            if nr < 0:  # not a system call on this architecture (e.g. ipc multiplexers)
                return
            arr = (_ArgCmp * max(1, len(cmps)))(*cmps)
            ret = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr)
            if ret < 0:
                raise OSError(-ret, f"seccomp_rule_add({call}): {os.strerror(-ret)}")

        for call in DENY:
            rule(_errno(errno.EPERM), call)
        rule(_errno(errno.ENOSYS), "clone3")  # its flags live in memory a filter cannot read
        for flag in CLONE_NEW:  # clone(2)'s first argument holds the flags on every architecture we run on
            rule(_errno(errno.EPERM), "clone", _ArgCmp(0, CMP_MASKED_EQ, flag, flag))
        r, w = os.pipe()
        try:
            ret = lib.seccomp_export_bpf(ctx, w)
            os.close(w)
            w = -1
            if ret < 0:
                raise OSError(-ret, f"seccomp_export_bpf: {os.strerror(-ret)}")
            chunks = []
            while chunk := os.read(r, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
    finally:
        lib.seccomp_release(ctx)
    program = b"".join(chunks)
    if not program or len(program) % 8:
        raise OSError("libseccomp exported no filter")
    return program


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Installer:
    """Installs one filter on the calling process and its future children. Everything ctypes
    needs is made once here (in the template process, about 1 ms), so each run's pid 1 only makes
    two system calls.

    With ``SECCOMP_FILTER_FLAG_SPEC_ALLOW``: on kernels whose Speculative Store Bypass mitigation is
    in its ``seccomp`` mode, every filtered task would also get that mitigation, which slows the
    interpreter. It protects a process from its own code reading its own memory speculatively; a run
    holds nothing it could not read directly, and side channels are outside the threat model
    (docs/code.md)."""

    def __init__(self, program):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.buf = ctypes.create_string_buffer(program, len(program))
        self.prog = _SockFprog(len(program) // 8, ctypes.cast(self.buf, ctypes.c_void_p))
        self.ref = ctypes.byref(self.prog)
        self.args = (ctypes.c_long(SYS_SECCOMP or -1), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                     ctypes.c_uint(SECCOMP_FILTER_FLAG_SPEC_ALLOW), self.ref)
        self.nnp = (PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0)

    def __call__(self):
        libc = self.libc
        if libc.prctl(*self.nnp) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if SYS_SECCOMP is not None and libc.syscall(*self.args) == 0:
            return
        if libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), self.ref, 0, 0) != 0:  # older kernels
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")


def install(program):
    """Install ``program`` (from :func:`build`) on this process and its future children."""
    Installer(program)()


def describe():
    """One line for ``grpo-env doctor``."""
    return (f"{len(DENY) + 2} system calls refused (ptrace, pidfd_getfd, unshare/setns and clone with CLONE_NEW*, "
            "mount, keyctl, SysV/POSIX IPC, io_uring, bpf, ...); foreign-architecture calls kill")

