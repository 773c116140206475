"""Log-probs of chosen tokens through the LM head without materialising the logits.

The plain way (``logits = head(h)``, then ``logsumexp`` and ``gather``) builds a (positions x
vocabulary) tensor: 1024 positions x 49k tokens is 200 MB in fp32, and the logsumexp, its backward
and the entropy make several passes over it, plus a fresh allocation (page faults) for each. Here
the vocabulary is cut into chunks small enough to stay in cache: the forward keeps a running
max / sum / entropy sum per row (online logsumexp), the backward recomputes each chunk's logits and
turns them straight into that chunk's gradients. One extra head matmul buys the removal of every
full-vocabulary pass and of the 200 MB tensor kept for backward.

Math, for one row with logits z = h W^T / T (T the temperature) and target y:
    logp = z_y - lse(z)              entropy = lse(z) - sum_v softmax(z)_v z_v
    d logp / d z = onehot(y) - softmax(z)
so with g = dL/dlogp:  dL/dh = g (W_y - softmax(z) W) / T  and  dL/dW = (onehot(y) - softmax(z))^T g h / T.
The entropy is a logged metric: no gradient flows through it (as before).
"""

from __future__ import annotations

import torch

from grpo_env.engine import cpu_matmul

CHUNK = 4096  # vocabulary rows per chunk: 1024 positions x 4096 x 4 B = 16 MB of logits at a time


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The matmul dtype autocast would pick for ``t``'s device (or ``t``'s own dtype without autocast)."""
    dev = t.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else t.dtype


def _chunk_logits(buf: torch.Tensor, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                  scale: float) -> torch.Tensor:
    """(n, H) x (c, H) -> fp32 logits (n, c) of one vocabulary chunk divided by the temperature,
    written into ``buf`` (one fp32 buffer reused for every chunk: no allocation per chunk)."""
    z = buf.view(-1)[: h.shape[0] * w.shape[0]].view(h.shape[0], w.shape[0])
    if h.dtype == torch.float32 and not cpu_matmul.routes(h, w):
        torch.mm(h, w.T, out=z)
    else:  # oneDNN on the CPU (cpu_matmul), or autocast's dtype: the softmax arithmetic in fp32
        z.copy_(cpu_matmul.mm_nt(h, w))
    if b is not None:
        z += b.float()
    return z.mul_(scale) if scale != 1.0 else z


def _logit_chunks(hc: torch.Tensor, wc: torch.Tensor, bias: torch.Tensor | None, scale: float, chunk: int):
    """Each vocabulary chunk's (slice, weight rows (c, H), fp32 logits (n, c)); the logits share one
    buffer, so each is valid (and may be changed in place) until the next one is drawn."""
    buf = torch.empty(hc.shape[0] * min(chunk, wc.shape[0]), device=hc.device)
    for v0 in range(0, wc.shape[0], chunk):
        rows = slice(v0, v0 + chunk)
        yield rows, wc[rows], _chunk_logits(buf, hc, wc[rows], None if bias is None else bias[rows], scale)


class _HeadLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, targets, scale: float, with_entropy: bool, chunk: int):
        # h (n, H), weight (V, H), bias (V,) or None, targets (n,) -> logp (n,), entropy (n,) or None
        cdt = _compute_dtype(h)
        n, V = h.shape[0], weight.shape[0]
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(cdt), weight.to(cdt)
            ebuf = torch.empty(n * min(chunk, V), device=h.device) if with_entropy else None
            m = torch.full((n,), float("-inf"), device=h.device)  # running max
            s = torch.zeros(n, device=h.device)  # running sum of exp(z - m)
            s1 = torch.zeros(n, device=h.device) if with_entropy else None  # running sum of exp(z - m) * z
            for _, _, z in _logit_chunks(hc, wc, bias, scale, chunk):
                m_new = torch.maximum(m, z.amax(-1))
                rescale = torch.exp(m - m_new)  # earlier chunks' sums, re-based on the new max
                m = m_new
                zs = z.sub_(m[:, None])  # (n, c) in place: z - m
                if s1 is None:
                    s.mul_(rescale).add_(zs.exp_().sum(-1))
                else:
                    e = torch.exp(zs, out=ebuf.view(-1)[: zs.numel()].view_as(zs))  # (n, c)
                    e_sum = e.sum(-1)
                    s.mul_(rescale).add_(e_sum)
                    s1.mul_(rescale).add_(e.mul_(zs).sum(-1)).add_(m * e_sum)  # sum e*z = sum e*(z-m) + m*sum e
            lse = m + s.log()  # (n,)
            # the targets' logits, rounded like the matmul's (fp32 sum, output in the compute dtype)
            z_y = (hc.float() * wc[targets].float()).sum(-1).to(cdt).float()  # (n,)
            if bias is not None:
                z_y = z_y + bias[targets].float()
            logp = z_y * scale - lse
            entropy = None if s1 is None else lse - s1 / s
        ctx.save_for_backward(h, weight, bias, targets, lse)
        ctx.scale, ctx.chunk, ctx.cdt = scale, chunk, cdt
        if entropy is not None:
            ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, g, _g_entropy):
        h, weight, bias, targets, lse = ctx.saved_tensors
        scale, cdt, chunk = ctx.scale, ctx.cdt, ctx.chunk
        gs = g.float() * scale  # (n,) dL/dz_y
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(cdt), weight.to(cdt)
            gh = torch.zeros(h.shape, dtype=torch.float32, device=h.device)
            gw = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device) if ctx.needs_input_grad[1] else None
            gb = torch.empty_like(bias) if bias is not None and ctx.needs_input_grad[2] else None
            for rows, w, z in _logit_chunks(hc, wc, bias, scale, chunk):
                gz = z.sub_(lse[:, None]).exp_().mul_(-gs[:, None])  # (n, c) in place: -softmax * dL/dz_y
                gzc = gz.to(cdt)  # the products in the compute dtype (fp32: oneDNN on the CPU)
                gh += cpu_matmul.mm_nt(gzc, w.t()).float()  # (n, c) @ (c, H)
                if gw is not None:
                    gw[rows] = cpu_matmul.mm_nt(gzc.t(), hc.t())  # (c, n) @ (n, H)
                if gb is not None:
                    gb[rows] = gz.sum(0)
            # the targets' own term: + dL/dz_y on the chosen token
            gh += gs[:, None] * wc[targets].float()
            if gw is not None:
                gw.index_add_(0, targets, (gs[:, None] * hc.float()).to(gw.dtype))
            if gb is not None:
                gb.index_add_(0, targets, gs.to(gb.dtype))
        return gh.to(h.dtype), gw, gb, None, None, None, None


FUSED = True  # False: always the materialised path (bench/step.py's lever ``materialised_head``)


def fusable(head) -> bool:
    """True for a plain linear head (the fused path needs its weight and bias, nothing else)."""
    return FUSED and type(head) is torch.nn.Linear


def materialised_logprobs(head, h, targets, temperature: float = 1.0, with_entropy: bool = False):
    """The plain path, for any head module: full logits, ``logit[target] - logsumexp(logits)``."""
    logits = head(h).float()  # (B, T, V)
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, -1)  # (B, T)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse  # (B, T)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            p = torch.softmax(logits.detach(), -1)
            entropy = lse.detach() - (p * logits.detach()).sum(-1)  # (B, T)
    return logp, entropy


def head_logprobs(
    head: torch.nn.Linear,
    h: torch.Tensor,  # (B, T, H) hidden states at the positions that predict ``targets``
    targets: torch.Tensor,  # (B, T) token ids
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, T) of ``targets`` under softmax(head(h) / temperature), and optionally the
    entropy (B, T) of that distribution (no gradient); for a plain linear head never holding more
    than one vocabulary chunk of logits, for any other head through the full logits."""
    if not fusable(head):
        return materialised_logprobs(head, h, targets, temperature, with_entropy)
    B, T, H = h.shape
    scale = 1.0 / temperature if temperature > 0 else 1.0
    logp, ent = _HeadLogprobs.apply(h.reshape(B * T, H), head.weight, head.bias, targets.reshape(-1), scale,
                                    with_entropy, chunk)
    return logp.view(B, T), None if ent is None else ent.view(B, T)
