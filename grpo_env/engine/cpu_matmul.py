"""fp32 products on the CPU through the library this machine runs fastest: MKL or oneDNN.

torch's CPU builds run fp32 ``linear`` / ``mm`` through MKL; oneDNN ships in the same wheel. Which is
faster depends on the processor and on the shape, and by a lot:

- training-sized products ((1024 x 576) @ (576 x 1536), forward and both halves of the backward):
  oneDNN about 2x MKL on a Zen 5 EPYC; MKL up to 1.6x oneDNN on a Zen 3 EPYC (and, judging by
  issue 17's step ratios, faster on an Intel Xeon too: not timed alone there);
- decode-sized products (32 rows: one token for each of a step's sequences): on the Zen 3, MKL with
  the product transposed (``w @ x.T``, the weight as the long side) beats both plain MKL and
  oneDNN on the layers, while oneDNN wins the vocabulary-sized LM head.

So nothing is assumed: :func:`choice` times both libraries on fixed representative shapes, once per
machine (about half a second; the result is kept in ``~/.cache/grpo-env/cpu_matmul.json``, keyed by
processor, torch version and thread count, so every run on a machine makes the same choice), and
picks per role: ``train`` (every product with gradients, and the log-prob passes), ``decode`` (the
layers at small row counts) and ``decode_head`` (the LM head at small row counts). MKL is torch's
default and keeps ties (oneDNN must be 10% faster). A checkpoint records the choice and a resumed run
pins it (:func:`pin`), so a resume computes with the same kernels, bit for bit.

The choice changes the arithmetic only by summation order (the same fp32 operations, regrouped:
relative error against float64 3.9e-7 through oneDNN, 2.5e-7 through MKL).

- :func:`onednn_linear`: a context manager that sends every eligible ``torch.nn.functional.linear``
  call (CPU, float32, plain tensors, no autocast) through :class:`_Linear` (oneDNN in the forward and
  in both backward products) when ``train`` chose oneDNN; a no-op otherwise.
- :func:`decode_linears`: for the decode loop (no gradient), each eligible ``nn.Linear`` runs its
  product directly through the kernel chosen for decode. Its ``forward`` is replaced for the block,
  so no per-operation Python hook runs on the decode's hot path.
- :func:`mm_nt`: the engine's own products (the chunked LM head).

``GRPO_ENV_CPU_MATMUL=mkl`` or ``onednn`` forces one library everywhere; ``ENABLED = False`` is torch's
default BLAS everywhere (``bench/step.py``'s lever ``default_blas``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Iterator

import torch
from torch.overrides import TorchFunctionMode

ENABLED = True  # False: torch's default BLAS everywhere (bench/step.py's lever ``default_blas``)
LIBRARIES = ("mkl", "onednn")
ROLES = ("train", "decode", "decode_head")
SMALL_ROWS = 128  # products with at most this many rows use the decode roles' kernels
HEAD_COLUMNS = 8192  # a linear with at least this many outputs is an LM head (vocabulary-sized)
MARGIN = 0.9  # oneDNN is chosen only when it takes at most this fraction of MKL's time
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _op():
    """oneDNN's linear (``x @ w.T + b`` for 2-D or batched ``x``), or None where this torch lacks it."""
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


_LINEAR = _op()
_chosen: dict[str, str] | None = None  # this process's choice, once made (or pinned)


class MatmulConfigError(ValueError):
    """``GRPO_ENV_CPU_MATMUL`` or a pinned choice names something that is not a library."""


def has_onednn() -> bool:
    return _LINEAR is not None


def _forced() -> str | None:
    name = os.environ.get("GRPO_ENV_CPU_MATMUL", "auto")
    if name == "auto":
        return None
    if name not in LIBRARIES:
        raise MatmulConfigError(f"GRPO_ENV_CPU_MATMUL must be auto, mkl or onednn, got {name!r}")
    return name


def choice() -> dict[str, str]:
    """The library of each role (``train``, ``decode``, ``decode_head``): ``mkl`` or ``onednn``."""
    global _chosen
    if not ENABLED or _LINEAR is None:
        return dict.fromkeys(ROLES, "mkl")
    forced = _forced()
    if forced is not None:
        return dict.fromkeys(ROLES, forced)
    if _chosen is None:
        _chosen = _cached_choice()
    return dict(_chosen)


def _is_choice(chosen) -> bool:
    """A library for each role, nothing else (a record read from a file or a checkpoint)."""
    return isinstance(chosen, dict) and set(chosen) == set(ROLES) and set(chosen.values()) <= set(LIBRARIES)


def pin(chosen: dict[str, str] | None) -> None:
    """Use ``chosen`` (a checkpoint's record of :func:`choice`) from now on; None forgets the choice."""
    global _chosen
    if chosen is not None and not _is_choice(chosen):
        raise MatmulConfigError(f"not a choice of product libraries: {chosen!r}")
    _chosen = None if chosen is None else dict(chosen)


# ---------------------------------------------------------------------------------------------
# the per-machine calibration


def machine_key() -> str:
    """The processor (its name, family, model and instruction-set flags: a VM's name alone can be a
    bare "AMD EPYC"), the torch version and the thread count."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if not name.strip() and info:
                break  # the first processor's block is enough
            info.setdefault(name.strip(), value.strip())
    flags = hashlib.sha256(info.get("flags", "").encode()).hexdigest()[:8]
    cpu = f"{info.get('model name', 'unknown processor')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}, flags {flags})"
    return f"{cpu} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grpo-env" / "cpu_matmul.json"


def _cached_choice() -> dict[str, str]:
    """This machine's choice from the cache file, or calibrated now and written there (a cache that
    cannot be read or written only means calibrating in every process)."""
    path, key = cache_path(), machine_key()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if _is_choice(known.get(key)):
        return known[key]
    chosen = calibrate()["choice"]
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**known, key: chosen}, indent=1, sort_keys=True))
        os.replace(tmp, path)
    return chosen


def _best(kernels: dict[str, list], reps: int = 3) -> dict[str, float]:
    """Best-of-``reps`` seconds of each library's list of products, the libraries interleaved."""
    for fns in kernels.values():  # warm-up (oneDNN builds its primitives on first use)
        for fn in fns:
            fn()
    best = dict.fromkeys(kernels, float("inf"))
    for _ in range(reps):
        for lib, fns in kernels.items():
            t = time.perf_counter()
            for fn in fns:
                fn()
            best[lib] = min(best[lib], time.perf_counter() - t)
    return best


def calibrate() -> dict:
    """Time MKL and oneDNN on each role's representative products; returns the seconds and the choice."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1024, 576, generator=g), torch.randn(1536, 576, generator=g)  # a layer's forward
    gy = torch.randn(1024, 1536, generator=g)  # its output gradient
    xs, xl = torch.randn(32, 576, generator=g), torch.randn(32, 1536, generator=g)  # one decode token, 32 rows
    wd = torch.randn(576, 1536, generator=g)
    head = torch.randn(32768, 576, generator=g)  # a vocabulary-sized head
    roles = {
        "train": {"mkl": [lambda: torch.nn.functional.linear(x, w), lambda: gy @ w, lambda: gy.t() @ x],
                  "onednn": [lambda: _dnn(x, w), lambda: _dnn(gy, w.t()), lambda: _dnn(gy.t(), x.t())]},
        "decode": {"mkl": [lambda: _mkl_small(xs, w), lambda: _mkl_small(xl, wd)],
                   "onednn": [lambda: _dnn(xs, w), lambda: _dnn(xl, wd)]},
        "decode_head": {"mkl": [lambda: _mkl_small(xs, head)], "onednn": [lambda: _dnn(xs, head)]},
    }
    seconds = {role: _best(k) for role, k in roles.items()}
    chosen = {role: "onednn" if s["onednn"] <= MARGIN * s["mkl"] else "mkl" for role, s in seconds.items()}
    return {"seconds": seconds, "choice": chosen}


# ---------------------------------------------------------------------------------------------
# the products


def _eligible(*tensors: torch.Tensor | None) -> bool:
    """CPU float32 plain tensors, outside autocast (which has its own bf16 kernels)."""
    return not torch.is_autocast_enabled("cpu") and all(
        t is None or (type(t) in _PLAIN and t.device.type == "cpu" and t.dtype == torch.float32) for t in tensors
    )


def _dnn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., K) @ w (N, K).T (+ b) through oneDNN."""
    return _LINEAR(x, w, b, "none", [], "")


def _mkl_small(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x (M, K) @ w (N, K).T (+ b) for few rows M, through MKL as w @ x.T: the weight as the long
    side, which MKL runs faster at small M. The result is a transposed view (M, N)."""
    y = torch.mm(w, x.t()) if b is None else torch.addmm(b[:, None], w, x.t())  # (N, M)
    return y.t()


class _Linear(torch.autograd.Function):
    """``linear(x, w, b)`` with oneDNN in the forward and in both backward products."""

    @staticmethod
    def forward(ctx, x, w, b):  # x (..., K), w (N, K), b (N,) or None -> (..., N)
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _dnn(x, w, b)

    @staticmethod
    def backward(ctx, gy):  # gy (..., N)
        x, w = ctx.saved_tensors
        g2 = gy.reshape(-1, gy.shape[-1])  # (M, N)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _dnn(g2, w.t()).view(x.shape)  # (M, N) @ (N, K)
        if ctx.needs_input_grad[1]:
            gw = _dnn(g2.t(), x.reshape(-1, x.shape[-1]).t())  # (N, M) @ (M, K)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g2.sum(0)
        return gx, gw, gb


class _RouteLinear(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear:
            x = args[0] if args else kwargs["input"]
            w = args[1] if len(args) > 1 else kwargs["weight"]
            b = args[2] if len(args) > 2 else kwargs.get("bias")
            if x.dim() >= 2 and w.dim() == 2 and _eligible(x, w, b):
                return _Linear.apply(x, w, b)
        return func(*args, **kwargs)


def available() -> bool:
    """True when training products go through oneDNN on this machine (enabled, present, chosen)."""
    return _LINEAR is not None and choice()["train"] == "onednn"


@contextlib.contextmanager
def onednn_linear() -> Iterator[None]:
    """Within the block, eligible ``linear`` calls (forward, and their backward wherever it runs)
    go through oneDNN, where it is this machine's choice for training. A no-op otherwise."""
    if not available():
        yield
        return
    with _RouteLinear():
        yield


def routes(*tensors: torch.Tensor) -> bool:
    """True when training products of these tensors go through oneDNN (chosen, eligible)."""
    return available() and _eligible(*tensors)


def mm_nt(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``a @ w.T`` for a (M, K) and w (N, K), through oneDNN where that is the choice."""
    return _dnn(a, w) if routes(a, w) else a @ w.T


# Linears whose output becomes the attention's query. Their output is made row-major: a transposed
# (M, N) view would send the attention to its slow strided kernel. The others keep the view: what
# follows them is elementwise, or a copy into the KV cache, which take any layout.
QUERY_NAMES = ("q_proj", "qkv_proj", "query", "query_key_value", "c_attn", "Wqkv")


def _decode_forward(module: torch.nn.Linear, small: str, large: str, row_major: bool):
    """``module``'s forward with its product through ``small``'s kernel at few rows, ``large``'s above."""
    linear = torch.nn.functional.linear

    def forward(x: torch.Tensor) -> torch.Tensor:
        w, b = module.weight, module.bias  # eligible: checked when the forward was put in place
        if x.dim() < 2 or not _eligible(x):
            return linear(x, w, b)
        rows = x.numel() // x.shape[-1]
        lib = small if rows <= SMALL_ROWS else large
        if lib == "onednn":
            return _dnn(x, w, b)
        if rows > SMALL_ROWS:
            return linear(x, w, b)
        y = _mkl_small(x.reshape(rows, x.shape[-1]), w, b)
        return (y.contiguous() if row_major else y).reshape(*x.shape[:-1], w.shape[0])

    return forward


@contextlib.contextmanager
def decode_linears(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, each eligible ``nn.Linear`` of ``model`` (fp32 CPU weights, the class's own
    forward) computes through the kernel this machine chose for decoding: ``decode_head`` for a
    vocabulary-sized layer, ``decode`` for the others, the ``train`` choice above
    :data:`SMALL_ROWS` rows (a prefill). Only without gradients and outside autocast; a no-op
    otherwise."""
    if torch.is_grad_enabled() or torch.is_autocast_enabled("cpu") or not ENABLED:
        yield
        return
    patched = [(name, m) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and type(m).forward is torch.nn.Linear.forward
               and "forward" not in m.__dict__ and _eligible(m.weight, m.bias)]
    chosen = choice() if patched else {}  # a GPU or bf16 model never times this machine's CPU kernels
    for name, m in patched:
        small = chosen["decode_head"] if m.out_features >= HEAD_COLUMNS else chosen["decode"]
        m.forward = _decode_forward(m, small, chosen["train"], name.rpartition(".")[2] in QUERY_NAMES)
    try:
        yield
    finally:
        for _, m in patched:
            del m.forward
