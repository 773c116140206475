"""The chunked LM-head log-probs (grpo_env/engine/head.py) against the plain full-logits path:
same log-probs, entropy and gradients, for any chunking, temperature, bias, bf16 autocast and a
head tied to the embeddings."""

import pytest
import torch

from grpo_env.engine import head as head_mod
from grpo_env.engine.head import head_logprobs, materialised_logprobs


def _run(fn, head, h0, targets, grad_out, temperature, autocast=False, params=()):
    """log-probs, entropy and the gradients of (log-probs * grad_out).sum() w.r.t. h and ``params``."""
    for p in params:
        p.grad = None
    h = h0.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logp, ent = fn(head, h, targets, temperature, True)
    (logp * grad_out).sum().backward()
    return [logp.detach(), ent, h.grad] + [p.grad.clone() for p in params]


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


@pytest.mark.parametrize("chunk", [7, 64, 1000, 5000])  # ragged last chunk, several, exactly V, more than V
@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_equals_materialised_in_fp32(chunk, temperature, bias):
    torch.manual_seed(0)
    head = torch.nn.Linear(48, 1000, bias=bias)
    h0, targets, g = torch.randn(3, 9, 48), torch.randint(0, 1000, (3, 9)), torch.randn(3, 9)
    params = [p for p in head.parameters()]
    fused = _run(lambda *a: head_logprobs(*a, chunk=chunk), head, h0, targets, g, temperature, params=params)
    plain = _run(materialised_logprobs, head, h0, targets, g, temperature, params=params)
    for a, b in zip(fused, plain):
        assert _rel(a, b) < 1e-5
    assert (fused[1] > 0).all()  # entropy of a non-degenerate softmax


def test_fused_follows_bf16_autocast():
    """Under autocast the matmuls run in bf16 on both paths: results agree to bf16 rounding, and the
    fused path is no closer to fp32 than that (it really used bf16)."""
    torch.manual_seed(1)
    head = torch.nn.Linear(64, 3000, bias=False)
    h0, targets, g = torch.randn(4, 16, 64), torch.randint(0, 3000, (4, 16)), torch.randn(4, 16)
    params = [head.weight]
    fused = _run(lambda *a: head_logprobs(*a, chunk=512), head, h0, targets, g, 1.0, True, params)
    plain = _run(materialised_logprobs, head, h0, targets, g, 1.0, True, params)
    fp32 = _run(materialised_logprobs, head, h0, targets, g, 1.0, False, params)
    for a, b in zip(fused, plain):
        assert a.dtype == b.dtype
        assert _rel(a, b) < 2e-2
    assert _rel(fused[0], fp32[0]) > 1e-5  # bf16, not fp32, arithmetic in the head


def test_tied_head_and_embedding_accumulate_both_gradients():
    """The head's weight is the embedding matrix (as in SmolLM2): both uses add into one gradient."""
    torch.manual_seed(2)
    emb = torch.nn.Embedding(500, 32)
    head = torch.nn.Linear(32, 500, bias=False)
    head.weight = emb.weight
    ids, targets, g = torch.randint(0, 500, (2, 11)), torch.randint(0, 500, (2, 11)), torch.randn(2, 11)

    def grads(fn):
        emb.weight.grad = None
        logp, _ = fn(head, torch.tanh(emb(ids)), targets, 1.0, False)
        (logp * g).sum().backward()
        return emb.weight.grad.clone()

    fused, plain = grads(lambda *a: head_logprobs(*a, chunk=128)), grads(materialised_logprobs)
    assert _rel(fused, plain) < 1e-5
    assert fused[ids.unique()].abs().sum(-1).min() > 0  # the embedding rows got their share too


def test_no_grad_and_other_heads():
    torch.manual_seed(3)
    head = torch.nn.Linear(16, 300, bias=False)
    h, targets = torch.randn(2, 5, 16), torch.randint(0, 300, (2, 5))
    with torch.no_grad():
        logp, ent = head_logprobs(head, h, targets, 1.0, False, chunk=64)
    assert ent is None and not logp.requires_grad
    torch.testing.assert_close(logp, materialised_logprobs(head, h, targets)[0], rtol=1e-5, atol=1e-5)
    # a head that is not a plain Linear (a wrapper, a quantised layer) takes the plain path
    wrapped = torch.nn.Sequential(head)
    assert not head_mod.fusable(wrapped)
    torch.testing.assert_close(head_logprobs(wrapped, h, targets)[0], materialised_logprobs(head, h, targets)[0])
