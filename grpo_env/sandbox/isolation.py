"""What isolation this machine grants the sandbox, probed once per process in a throw-away child.

``isolation_report()`` lists ``(feature, granted, detail)`` rows for ``grpo-env doctor``.
The sandbox runs in *namespaces* mode when user, pid, network and mount namespaces are all
granted; otherwise only the *subreaper* fallback is possible, which code tasks refuse unless the
user opts in (``GRPO_ENV_ALLOW_UNISOLATED=1`` or the task option ``allow_unisolated``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache

# Each probe runs in its own forked child of a fresh `python -S -I`, so nothing it changes sticks.
_PROBE = r"""
import ctypes, json, os, resource, sys
libc = ctypes.CDLL(None, use_errno=True)
NS = {"user": 0x10000000, "pid": 0x20000000, "net": 0x40000000, "mount": 0x00020000}
def attempt(fn):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            msg = fn() or ""
            ok = True
        except BaseException as e:
            ok, msg = False, f"{type(e).__name__}: {e}"
        os.write(w, json.dumps([ok, msg]).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.waitpid(pid, 0)
    return json.loads(data or b'[false, "probe died"]')
def unshare(flags):
    if libc.unshare(flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
def userns():
    unshare(NS["user"])
    return "CLONE_NEWUSER" + (" (as root; runs map it to an unprivileged uid)" if os.geteuid() == 0 else "")
def within_userns(name):
    def f():
        unshare(NS["user"] | NS[name])
        if name == "pid":
            pid = os.fork()
            if pid == 0:
                os._exit(0 if os.getpid() == 1 else 1)
            _, st = os.waitpid(pid, 0)
            if st != 0:
                raise OSError("the first child is not pid 1")
        return {"pid": "CLONE_NEWPID", "net": "CLONE_NEWNET", "mount": "CLONE_NEWNS"}[name] + " inside a user namespace"
    return f
def subreaper():
    if libc.prctl(36, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    return "PR_SET_CHILD_SUBREAPER"
def pdeathsig():
    if libc.prctl(1, 9, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    return "PR_SET_PDEATHSIG"
def rlimits():
    for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_STACK, resource.RLIMIT_FSIZE,
              resource.RLIMIT_NOFILE, resource.RLIMIT_CORE, resource.RLIMIT_NPROC):
        soft, hard = resource.getrlimit(r)
        resource.setrlimit(r, (min(soft, 1 << 30) if soft != -1 else 1 << 30, hard))
    return "AS, CPU, STACK, FSIZE, NOFILE, CORE, NPROC"
def children():
    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"):
        return "no /proc/PID/task/TID/children: sweeps scan /proc"
    return "/proc/PID/task/TID/children"
def nnp():
    if libc.prctl(38, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    return "PR_SET_NO_NEW_PRIVS"
out = {"user": attempt(userns)}
for name in ("pid", "net", "mount"):
    out[name] = attempt(within_userns(name))
out.update(subreaper=attempt(subreaper), pdeathsig=attempt(pdeathsig), rlimits=attempt(rlimits),
           children=attempt(children), no_new_privs=attempt(nnp))
out["root"] = os.geteuid() == 0
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Isolation:
    """Probed features: name -> (granted, detail)."""

    features: dict[str, tuple[bool, str]] = field(default_factory=dict)
    root: bool = False

    def granted(self, name: str) -> bool:
        return self.features.get(name, (False, ""))[0]

    @property
    def full(self) -> bool:
        """Process-tree, network and filesystem isolation: the namespaces mode can run (its raw
        clone(2) call is wired up for x86_64 and aarch64)."""
        return os.uname().machine in ("x86_64", "aarch64") and all(
            self.granted(n) for n in ("user", "pid", "net", "mount"))

    def missing(self) -> str:
        names = {"user": "user namespace", "pid": "pid namespace", "net": "network namespace",
                 "mount": "mount namespace"}
        return ", ".join(label for n, label in names.items() if not self.granted(n))


@lru_cache(maxsize=1)
def detect() -> Isolation:
    """Probe once per process (about 50 ms)."""
    try:
        proc = subprocess.run([sys.executable, "-S", "-I", "-c", _PROBE], capture_output=True, text=True,
                              timeout=30, env={"PATH": "/usr/bin:/bin"})
        raw = json.loads(proc.stdout)
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return Isolation({"probe": (False, f"the isolation probe failed: {e}")})
    root = bool(raw.pop("root"))
    return Isolation({k: (bool(v[0]), str(v[1])) for k, v in raw.items()}, root=root)


def isolation_report() -> list[tuple[str, bool, str]]:
    """(feature, granted, detail) for each isolation feature, then the mode the sandbox will use."""
    iso = detect()
    labels = [
        ("user", "user namespace"), ("pid", "pid namespace (process-tree kill)"),
        ("net", "network namespace (no network)"), ("mount", "mount namespace (private filesystem view)"),
        ("subreaper", "child subreaper (fallback tree sweep)"), ("pdeathsig", "parent-death signal"),
        ("no_new_privs", "no_new_privs"), ("rlimits", "resource limits"), ("children", "/proc children lists"),
    ]
    rows = [(label, *iso.features.get(key, (False, "not probed"))) for key, label in labels]
    if "probe" in iso.features:
        rows.insert(0, ("probe", *iso.features["probe"]))
    rows.append(("privilege drop", True, "code runs as an unprivileged uid with no capabilities"
                 + (" (we are root: a random uid >= 100000)" if iso.root else " (our own uid)")))
    if iso.full:
        rows.append(("sandbox mode", True, "namespaces: a user, mount and network namespace per template process "
                     "(minimal filesystem view, no network); a pid namespace and a private tmpfs per run"))
    else:
        rows.append(("sandbox mode", False, f"subreaper fallback only (missing: {iso.missing()}); code tasks "
                     "refuse to run unless GRPO_ENV_ALLOW_UNISOLATED=1 or allow_unisolated = true"))
    return rows
