"""The GRPO math as small pure tensor functions (shapes in comments).

B = sequences in a (micro-)batch, T = completion tokens (padded), G = group size, N = groups.
"""

from __future__ import annotations

import torch


def group_advantages(
    rewards: torch.Tensor,  # (N*G,) float, NaN = no signal; groups are consecutive rows
    group_size: int,
    scale: str = "group",  # "group" | "batch" | "none" (Dr. GRPO: centre only)
    eps: float = 1e-4,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Advantages ``(r - group mean) / (std + eps)``, leaving NaN rewards out of the statistics.

    The std is the unbiased one (so rewards [1,0,0,1] give +-0.866). A NaN reward gets advantage 0.
    A group with fewer than two finite rewards, or all equal, has zero spread (all advantages 0).
    """
    r = rewards.view(-1, group_size).double()  # (N, G)
    valid = ~torch.isnan(r)  # (N, G)
    n = valid.sum(-1, keepdim=True)  # (N, 1)
    r0 = torch.where(valid, r, torch.zeros_like(r))  # (N, G)
    mean = r0.sum(-1, keepdim=True) / n.clamp(min=1)  # (N, 1)
    centred = torch.where(valid, r - mean, torch.zeros_like(r))  # (N, G)
    std_g = (centred.pow(2).sum(-1, keepdim=True) / (n - 1).clamp(min=1)).sqrt()  # (N, 1)
    zero_spread = (n < 2) | (std_g < 1e-8)  # (N, 1)
    if scale == "group":
        adv = centred / (std_g + eps)
    elif scale == "batch":
        flat = r[valid]
        std_b = flat.std() if flat.numel() > 1 else torch.zeros((), dtype=r.dtype)
        adv = centred / (std_b + eps)
    elif scale == "none":
        adv = centred
    else:
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    adv = torch.where(zero_spread, torch.zeros_like(adv), adv)  # exact zeros, no eps noise
    metrics = {"zero_spread_frac": zero_spread.float().mean().item()}
    return adv.view(-1).to(rewards.dtype), metrics


def zero_spread_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N,) bool: groups whose finite rewards are fewer than two or all equal."""
    r = rewards.view(-1, group_size)  # (N, G)
    valid = ~torch.isnan(r)
    hi = torch.where(valid, r, torch.full_like(r, -torch.inf)).amax(-1)  # (N,)
    lo = torch.where(valid, r, torch.full_like(r, torch.inf)).amin(-1)  # (N,)
    return (valid.sum(-1) < 2) | ((hi - lo) < 1e-8)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from samples of the policy; (B, T) -> (B, T).

    k1 = log(p/q) (unbiased, high variance, can be negative); k2 = 0.5 log(p/q)^2;
    k3 = q/p - 1 - log(q/p) (unbiased, always >= 0). p: policy, q: reference.
    """
    log_ratio = logp - ref_logp  # (B, T) log(p/q)
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.pow(2)
    if estimator == "k3":
        return torch.exp(-log_ratio) + log_ratio - 1
    raise ValueError(f"kl estimator must be k1, k2 or k3, got {estimator!r}")


def clipped_surrogate(
    logp: torch.Tensor,  # (B, T) log-probs under the current policy (with grad)
    old_logp: torch.Tensor,  # (B, T) log-probs under the sampling policy (no grad)
    advantages: torch.Tensor,  # (B,)
    eps_low: float,
    eps_high: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO-style clipped objective as a per-token loss to minimise.

    Returns (loss (B, T), clipped_low (B, T) bool, clipped_high (B, T) bool): where the ratio was
    clipped at ``1 - eps_low`` with a negative advantage, or at ``1 + eps_high`` with a positive one.
    """
    ratio = torch.exp(logp - old_logp)  # (B, T)
    adv = advantages.unsqueeze(-1)  # (B, 1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv
    loss = -torch.min(unclipped, clipped)  # (B, T)
    low = (ratio < 1 - eps_low) & (adv < 0)
    high = (ratio > 1 + eps_high) & (adv > 0)
    return loss, low, high


def aggregate(
    per_token: torch.Tensor,  # (B, T) loss per token
    mask: torch.Tensor,  # (B, T) 1 for completion tokens that count
    loss_type: str,
    max_tokens: int,  # T_max, the completion length cap (dr_grpo's constant normaliser)
    total_tokens: float | None = None,  # tokens in the whole step batch (dapo's normaliser)
    total_seqs: int | None = None,  # sequences in the whole step batch (grpo/dr_grpo normaliser)
) -> torch.Tensor:
    """Reduce a per-token loss to a scalar.

    - grpo: mean over each sequence's tokens, then mean over sequences;
    - bnpo: mean over the tokens of this (micro-)batch;
    - dr_grpo: sum over tokens / (sequences * max_tokens), a constant normaliser (no length bias);
    - dapo: sum over tokens / tokens of the whole step batch (token-level, across micro-batches).
    ``total_*`` make micro-batch losses sum to the full-batch loss under gradient accumulation.
    """
    mask = mask.to(per_token.dtype)
    summed = per_token * mask  # (B, T)
    seqs = total_seqs if total_seqs is not None else per_token.shape[0]
    if loss_type == "grpo":
        per_seq = summed.sum(-1) / mask.sum(-1).clamp(min=1)  # (B,)
        return per_seq.sum() / seqs
    if loss_type == "bnpo":
        return summed.sum() / mask.sum().clamp(min=1)
    if loss_type == "dr_grpo":
        return summed.sum() / (seqs * max_tokens)
    if loss_type == "dapo":
        denom = total_tokens if total_tokens is not None else mask.sum().item()
        return summed.sum() / max(denom, 1.0)
    raise ValueError(f"loss_type must be grpo, bnpo, dr_grpo or dapo, got {loss_type!r}")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of ``x`` over ``mask`` (both (B, T)); 0.0 when the mask is empty."""
    m = mask.to(x.dtype)
    return (x * m).sum().item() / max(m.sum().item(), 1.0)


def sampling_gap(
    train_logp: torch.Tensor,  # (B, T) the trained weights' log-probs of the sampled tokens (no grad)
    sample_logp: torch.Tensor,  # (B, T) the generator's log-probs of the same tokens
    mask: torch.Tensor,  # (B, T) 1 on the tokens that count
) -> dict[str, float]:
    """The train-inference mismatch over ``mask``: sums and extremes of |train - sample| log-prob and
    of the importance ratio exp(train - sample), to be reduced over micro-batches and ranks
    (``n`` tokens; extremes are None when ``n`` is 0)."""
    d = (train_logp - sample_logp)[mask.bool()].double()  # (n,)
    if d.numel() == 0:
        return {"n": 0, "abs_sum": 0.0, "ratio_sum": 0.0, "abs_max": None, "ratio_min": None, "ratio_max": None}
    r = d.exp()
    return {"n": d.numel(), "abs_sum": d.abs().sum().item(), "ratio_sum": r.sum().item(),
            "abs_max": d.abs().max().item(), "ratio_min": r.min().item(), "ratio_max": r.max().item()}


def tis_weights(
    train_logp: torch.Tensor,  # (B, T) no grad
    sample_logp: torch.Tensor,  # (B, T)
    cap: float,
) -> torch.Tensor:  # (B, T)
    """Token-level truncated importance sampling: the probability ratio of the trained weights to
    the generator, min(exp(train - sample), cap), a constant weight on each token's policy loss.
    It corrects the bias of sampling from a generator that is not the trained module (vLLM's kernels,
    its precision, a sync that lagged); the cap bounds the variance."""
    return torch.exp(train_logp - sample_logp).clamp(max=cap).detach()


def grpo_loss(
    logp: torch.Tensor,  # (B, T)
    old_logp: torch.Tensor | None,  # (B, T), None: the sampling policy is this one (mu = 1)
    ref_logp: torch.Tensor | None,  # (B, T), None: no KL term
    advantages: torch.Tensor,  # (B,)
    mask: torch.Tensor,  # (B, T)
    *,
    loss_type: str,
    eps_low: float,
    eps_high: float,
    beta: float,
    kl_estimator: str,
    max_tokens: int,
    total_tokens: float | None = None,
    total_seqs: int | None = None,
    is_weights: torch.Tensor | None = None,  # (B, T) truncated importance weights (tis_weights), or None
) -> tuple[torch.Tensor, dict[str, float]]:
    """The full GRPO loss of one (micro-)batch and its metrics (token means over ``mask``)."""
    if old_logp is None:
        old_logp = logp.detach()  # ratio exactly 1, gradient of ratio = gradient of logp
    per_token, low, high = clipped_surrogate(logp, old_logp, advantages, eps_low, eps_high)
    if is_weights is not None:  # the policy term only, as TRL and verl weigh it (not the KL term)
        per_token = per_token * is_weights
    metrics = {"clip_low_frac": masked_mean(low.float(), mask), "clip_high_frac": masked_mean(high.float(), mask)}
    if ref_logp is not None:
        kl = kl_estimate(logp, ref_logp, kl_estimator)  # (B, T)
        per_token = per_token + beta * kl
        metrics["kl"] = masked_mean(kl.detach(), mask)
    loss = aggregate(per_token, mask, loss_type, max_tokens, total_tokens, total_seqs)
    return loss, metrics
