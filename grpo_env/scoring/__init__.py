"""Scoring: rewards run out of the trainer's process, each call under a hard deadline.

Two backends with one interface (``score``, ``score_iter``, ``score_examples``, ``counts``, ``close``):

- :mod:`grpo_env.scoring.local` (``[scoring] backend = "local"``, the default): a pool of forked
  worker processes on this machine;
- :mod:`grpo_env.scoring.ray` (``backend = "ray"``): one scoring actor per node of a Ray cluster,
  each hosting a local service, so the deadlines and the sandbox act on the node where the code runs.
"""

from __future__ import annotations

from typing import Mapping

from grpo_env.scoring.local import ScoringService
from grpo_env.types import Reward

__all__ = ["ScoringService", "make_service"]


def make_service(cfg, rewards: Mapping[str, Reward]):
    """The scoring service a recipe's ``[scoring]`` section asks for (``cfg``: a ScoringConfig)."""
    if cfg.backend == "ray":
        from grpo_env.scoring.ray import RayScoringService

        return RayScoringService(rewards, address=cfg.address, workers=cfg.workers, grace=cfg.grace,
                                 max_in_flight=cfg.max_in_flight, allow_unisolated=cfg.allow_unisolated)
    return ScoringService(rewards, workers=cfg.workers, grace=cfg.grace)
