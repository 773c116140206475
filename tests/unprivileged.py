"""Run a command as an unprivileged user, from a test running as root (CI and the development
machine run as root; the sandbox must also work, and hold, for an ordinary user).

- The interpreter is copied under /tmp (standard library only, no site-packages) and owned by
  that user, as a user's own interpreter would be: the attack that writes ``sitecustomize.py``
  into it is then a real one.
- The child enters a private mount namespace while still root. Any directory on the way to what
  it needs (the project's virtual environment, this checkout) that others may not traverse, such
  as ``/root``, is covered there by a tmpfs holding bind mounts of just the entries on the way.
  Nothing changes on the host.
- It then drops to the uid for good (no groups, no capabilities) and runs the command with the
  copied interpreter, whose own site-packages holds a ``.pth`` that adds the virtual environment's
  (inside a sandbox run that directory is masked like any other).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

UID = 61_234  # no passwd entry: nobody's files but the copy's
CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x00020000, 4096, 16384, 1 << 18
REPO = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "__pycache__", "lib2to3"}


def copy_interpreter(dest: Path) -> Path:
    """This interpreter's executable, shared library and standard library under ``dest``, owned
    by UID; returns the copied executable."""
    base = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    exe = Path(os.path.realpath(sys._base_executable))
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(exe, dest / "bin" / exe.name)
    libdir = Path(sysconfig.get_config_var("LIBDIR") or base / "lib")
    (dest / "lib").mkdir()
    for lib in libdir.glob("libpython*.so*"):
        shutil.copy2(lib, dest / "lib" / lib.name, follow_symlinks=True)
    shutil.copytree(Path(os.__file__).parent, dest / "lib" / version,
                    ignore=lambda d, names: [n for n in names if n in SKIP_DIRS])
    own_site = dest / "lib" / version / "site-packages"
    own_site.mkdir()  # the venv's packages for every process of this interpreter, as in the venv
    venv_sites = [p for p in site.getsitepackages() if os.path.isdir(p)]
    (own_site / "_grpo_env_venv.pth").write_text("import site; " + "; ".join(f"site.addsitedir({p!r})" for p in venv_sites) + "\n")
    for path in [dest, *dest.rglob("*")]:
        os.lchown(path, UID, UID)
    return dest / "bin" / exe.name


def _open_up(needed: list[str]) -> None:
    """In this (private) mount namespace, let anyone traverse to each path in ``needed``."""
    libc = ctypes.CDLL(None, use_errno=True)

    def mount(src, target, fstype, flags, data=None):
        enc = lambda s: None if s is None else str(s).encode()
        if libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
            raise OSError(ctypes.get_errno(), f"mount {target}")

    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    closed: dict[str, set[str]] = {}  # a directory others may not enter -> the entries to keep in it
    for path in needed:
        parts = Path(path).parts
        for i in range(1, len(parts)):
            here = str(Path(*parts[:i]))
            if here != "/" and not os.stat(here).st_mode & 0o001:
                closed.setdefault(here, set()).add(parts[i])
    for here in sorted(closed, key=len, reverse=True):  # innermost first: binds carry the inner ones
        fds = {name: os.open(os.path.join(here, name), os.O_PATH) for name in closed[here]}
        mount("tmpfs", here, "tmpfs", 0, "mode=0755")
        for name, fd in fds.items():
            target = os.path.join(here, name)
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.mkdir(target)
            else:
                open(target, "w").close()
            mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
            os.close(fd)


def run(python: Path, code: str, *, cwd: Path, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -c code`` as UID (see the module docstring); the venv's packages importable."""
    sites = [p for p in site.getsitepackages() if os.path.isdir(p)]
    libdir = sysconfig.get_config_var("LIBDIR")  # the copied binary's RUNPATH finds libpython there
    needed = [*sites, str(REPO), str(cwd), *([libdir] if libdir else [])]

    def drop() -> None:
        _open_up(needed)
        os.setgroups([])
        os.setresgid(UID, UID, UID)
        os.setresuid(UID, UID, UID)

    home = cwd / "home"
    home.mkdir(exist_ok=True)
    os.chown(home, UID, UID)
    full_env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
                **(env or {})}
    return subprocess.run([str(python), "-c", code], cwd=cwd, env=full_env, preexec_fn=drop, capture_output=True,
                          text=True, timeout=timeout)


# a test parametrised over who runs the command: ``user`` is "root" (this process's user) or "unprivileged"
AS_ROOT_AND_UNPRIVILEGED = pytest.mark.parametrize("user", ["root", pytest.param("unprivileged", marks=pytest.mark.skipif(
    os.geteuid() != 0, reason="drops privileges: needs root (as in CI)"))])


def grpo_env_as(user: str, argv: list[str], work: Path, *, timeout: float) -> subprocess.CompletedProcess:
    """``grpo-env *argv`` in ``work``: the installed command as this process's user for "root", else as
    UID (:func:`grpo_env_cli`)."""
    if user == "root":
        return subprocess.run([str(Path(sys.executable).with_name("grpo-env")), *argv], capture_output=True,
                              text=True, timeout=timeout, cwd=work)
    return grpo_env_cli(argv, work, timeout=timeout)


def grpo_env_cli(argv: list[str], work: Path, *, timeout: float) -> subprocess.CompletedProcess:
    """``grpo-env *argv`` as UID, in ``work`` (made the user's, with what it holds), from a copied
    interpreter under ``work/python``; the user's home is ``work/home``."""
    os.chmod(work, 0o755)
    for p in (work, *work.iterdir()):
        os.chown(p, UID, UID)
    python = copy_interpreter(work / "python")
    code = f"import runpy, sys\nsys.argv = ['grpo-env', *{argv!r}]\nrunpy.run_module('grpo_env.cli', run_name='__main__')\n"
    return run(python, code, cwd=work, timeout=timeout)
