"""fp32 linear layers on the CPU through oneDNN instead of torch's default BLAS.

torch's CPU builds run fp32 ``linear`` / ``mm`` through MKL. On AMD processors MKL takes a slower
code path: on the Zen 5 development machine a (1024 x 576) @ (576 x 1536) product runs at about
220 GFLOP/s through MKL and about 480 through oneDNN (also shipped inside torch), in full fp32
precision (relative error against float64: 3.9e-7 through oneDNN, 2.5e-7 through MKL). A training step is mostly such
products, in the forward and in both halves of the backward, so routing them through oneDNN
changes the arithmetic only by summation order (the same fp32 operations, regrouped).

:func:`onednn_linear` is a context manager that sends every eligible ``torch.nn.functional.linear``
call (CPU, float32, plain tensors, no autocast) through :class:`_Linear`, whose forward and whose
two backward products (input and weight gradients) are oneDNN calls on the same tensors (no copies:
transposes are strided views). Anything else (GPU, bf16/autocast, FSDP's DTensors, tensor
subclasses) goes through ``linear`` unchanged. :func:`mm_nt` does the same for the engine's own
products (the chunked LM head).

``ENABLED = False`` turns it off (``bench/step.py``'s lever ``default_blas``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch.overrides import TorchFunctionMode

ENABLED = True  # False: torch's default BLAS everywhere (bench/step.py's lever ``default_blas``)
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _op():
    """oneDNN's linear (``x @ w.T + b`` for 2-D or batched ``x``), or None where this torch lacks it."""
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


_LINEAR = _op()


def available() -> bool:
    return ENABLED and _LINEAR is not None


def _eligible(*tensors: torch.Tensor | None) -> bool:
    """CPU float32 plain tensors, outside autocast (which has its own bf16 kernels)."""
    return not torch.is_autocast_enabled("cpu") and all(
        t is None or (type(t) in _PLAIN and t.device.type == "cpu" and t.dtype == torch.float32) for t in tensors
    )


def _dnn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., K) @ w (N, K).T (+ b) through oneDNN."""
    return _LINEAR(x, w, b, "none", [], "")


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


@contextlib.contextmanager
def onednn_linear() -> Iterator[None]:
    """Within the block, eligible ``linear`` calls (forward, and their backward wherever it runs)
    go through oneDNN. A no-op when disabled or unavailable."""
    if not available():
        yield
        return
    with _RouteLinear():
        yield


def routes(*tensors: torch.Tensor) -> bool:
    """True when products of these tensors go through oneDNN (enabled, available, eligible)."""
    return available() and _eligible(*tensors)


def mm_nt(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``a @ w.T`` for a (M, K) and w (N, K), through oneDNN where eligible."""
    return _dnn(a, w) if routes(a, w) else a @ w.T
