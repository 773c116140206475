"""Keep freed host memory for reuse instead of handing it back to the OS after every tensor.

glibc serves large allocations (logits, activations: tens to hundreds of MB each) with a fresh
``mmap`` and unmaps them on free, so every training step faults in and zeroes gigabytes of new
pages again (millions of page faults per step on SmolLM2-135M). With ``mmap`` off and trimming off,
freed blocks stay in the heap and the next step reuses them: the resident size stays at the
step's peak, which the step reaches anyway. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)


def reuse_freed_memory() -> bool:
    """Tell glibc to keep freed memory in the heap; True when it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
