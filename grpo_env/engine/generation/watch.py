"""Keeping the generator on the trained weights, and saying so when it is not.

After each training step the generator loads the new weights (:meth:`SyncWatch.sync`; a no-op for
our decode loop, which samples from the trained module itself). Both sides count: the trainer's
optimiser steps (the scheduler's count, which a checkpoint restores) and the weight version the
generator holds. Each step logs

- ``generator_lag``: optimiser steps the generator's weights are behind (0 unless a sync was missed),
- ``mismatch_logp_abs_mean`` / ``_max``: |training - sampling| log-prob over the trained tokens,
- ``is_ratio_min`` / ``_mean`` / ``_max``: the importance ratio exp(training - sampling),

and warns when the lag is not 0 or the mean gap passes ``[train] mismatch_warn``. With our decode
loop the gap is ~0 (the same module, the same kernels); vLLM's is its kernels' and precision's.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import torch

from grpo_env.engine.distributed import Dist


def reduce_gaps(parts: list[dict[str, Any]], dist: Dist) -> dict[str, float]:
    """Every rank's and micro-batch's :func:`~grpo_env.engine.losses.sampling_gap` sums as the
    step's metrics (empty when no token was measured). A collective: every rank calls it."""
    parts = [p for rank in dist.gather(parts) for p in rank if p["n"]]
    n = sum(p["n"] for p in parts)
    if not n:
        return {}
    return {
        "mismatch_logp_abs_mean": sum(p["abs_sum"] for p in parts) / n,
        "mismatch_logp_abs_max": max(p["abs_max"] for p in parts),
        "is_ratio_min": min(p["ratio_min"] for p in parts),
        "is_ratio_mean": sum(p["ratio_sum"] for p in parts) / n,
        "is_ratio_max": max(p["ratio_max"] for p in parts),
    }


class SyncWatch:
    """The generator's weight syncs and the train-inference gap, for the training loop."""

    def __init__(self, generator, cfg, dist: Dist = Dist(), out: TextIO | None = None):
        self.gen, self.cfg, self.dist, self.out = generator, cfg, dist, out

    @property
    def tis_cap(self) -> float:
        """The truncated-importance-sampling cap the loss uses: on whenever the generator is not the
        trained module (``[train] tis_cap``, 0: off), off for our decode loop (its ratio is 1)."""
        return 0.0 if self.gen.exact else self.cfg.tis_cap

    def sync(self, model, version: int, weights: Callable[[], Mapping[str, torch.Tensor]] | None = None) -> None:
        """The generator loads the trained weights of optimiser step ``version`` (``weights``: the
        strategy's full state, gathered under FSDP; called only by a generator that loads weights)."""
        self.gen.sync(model, version, weights)

    def finish(self, step: int, version: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """The step's generator metrics (added to ``metrics``' gap numbers), and its warnings."""
        lag = version - self.gen.version
        out = {"generator": self.gen.backend, "generator_lag": lag, "generator_syncs": self.gen.syncs}
        if lag:
            self._say(f"warning: step {step}: the generator ({self.gen.backend}) holds the weights of optimiser "
                      f"step {self.gen.version}, the trainer is at {version}: a weight sync was missed, so the "
                      "samples come from an older policy")
        gap = metrics.get("mismatch_logp_abs_mean")
        if gap is not None and math.isfinite(gap) and gap > self.cfg.mismatch_warn:
            self._say(f"warning: step {step}: the mean |log-prob| gap between sampling ({self.gen.backend}) and "
                      f"training is {gap:.4f} (max {metrics.get('mismatch_logp_abs_max', 0):.3f}), above [train] "
                      f"mismatch_warn = {self.cfg.mismatch_warn}: "
                      + ("a stale or wrong weight sync, or a precision gap"
                         if not self.gen.exact else "the decode loop and the update disagree"))
        return out

    def _say(self, msg: str) -> None:
        if self.dist.main:
            print(msg, file=self.out or sys.stderr, flush=True)
