"""fp32 linear layers through oneDNN (grpo_env/engine/cpu_matmul.py): same values and gradients as
torch's ``linear``, routed only where eligible, and really routed (so these tests can fail)."""

import pytest
import torch
import torch.nn.functional as F

from grpo_env.engine import cpu_matmul
from grpo_env.engine.cpu_matmul import mm_nt, onednn_linear

pytestmark = pytest.mark.skipif(not cpu_matmul.available(), reason="this torch has no oneDNN linear")


def _grads(fn, x0, w0, b0, g):
    x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    b = None if b0 is None else b0.clone().requires_grad_()
    y = fn(x, w, b)
    y.backward(g)
    return [y.detach(), x.grad, w.grad] + ([] if b is None else [b.grad]), y.grad_fn.name()


@pytest.mark.parametrize("shape", [(7, 24), (3, 5, 24), (2, 3, 4, 24)])
@pytest.mark.parametrize("bias", [False, True])
def test_routed_linear_matches_torch_values_and_gradients(shape, bias):
    torch.manual_seed(0)
    x, w = torch.randn(*shape), torch.randn(40, 24)
    b = torch.randn(40) if bias else None
    g = torch.randn(*shape[:-1], 40)
    with onednn_linear():
        routed, name = _grads(F.linear, x, w, b, g)
    plain, plain_name = _grads(F.linear, x, w, b, g)
    assert "_Linear" in name and "_Linear" not in plain_name  # really routed inside, and only there
    for a, r in zip(routed, plain):
        assert a.shape == r.shape
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


def test_non_contiguous_input_and_modules():
    """A transposed input, and nn.Linear modules (which call F.linear), take the routed path."""
    torch.manual_seed(1)
    lin = torch.nn.Linear(16, 8)
    x = torch.randn(16, 6).t()  # (6, 16), not contiguous
    with onednn_linear():
        y = lin(x)
    assert "_Linear" in y.grad_fn.name()
    torch.testing.assert_close(y, lin(x), rtol=1e-5, atol=1e-5)


def test_only_eligible_calls_are_routed(monkeypatch):
    torch.manual_seed(2)
    x, w = torch.randn(4, 8), torch.randn(3, 8, requires_grad=True)
    with onednn_linear():
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps its own bf16 kernels
            y = F.linear(x, w)
        assert y.dtype == torch.bfloat16 and "_Linear" not in y.grad_fn.name()
        y64 = F.linear(x.double(), w.double())  # not float32
        assert "_Linear" not in y64.grad_fn.name()
        v = F.linear(torch.randn(8), w)  # a 1-D input
        assert "_Linear" not in v.grad_fn.name()
    monkeypatch.setattr(cpu_matmul, "ENABLED", False)  # the switch (bench/step.py's lever)
    with onednn_linear():
        assert "_Linear" not in F.linear(x, w).grad_fn.name()


def test_mm_nt():
    torch.manual_seed(3)
    a, w = torch.randn(5, 12), torch.randn(9, 12)
    torch.testing.assert_close(mm_nt(a, w), a @ w.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mm_nt(a.t().contiguous().t(), w.t().contiguous().t()), a @ w.T, rtol=1e-5, atol=1e-5)
