"""The parallel strategy: one small object the training loop asks to run its passes, take its step,
gather weights for generation and move checkpoint state, whether it runs on one process, plain data
parallelism, FSDP or DeepSpeed (:func:`strategy` picks it from the model):

- :class:`Plain`: one process, or data parallelism over ``Dist``'s ranks (``distributed.py``): every
  rank holds the whole policy and AdamW; the gradients are summed over the ranks before the clip.
- :class:`Fsdp`: a policy sharded by ``sharding.shard_model``. FSDP sums the gradients in backward;
  generation and the frozen passes run with the full weights gathered (:meth:`Plain.gathered`);
  checkpoints gather the full weights and optimiser state, and a resume cuts them back into shards.
- :class:`DeepSpeed`: a policy marked by ``zero.prepare``, whose engine :func:`start` starts. The
  engine runs the passes, sums and clips the gradients and steps AdamW (its state partitioned) and
  the schedule; checkpoints gather and scatter the partitions.

Under FSDP and DeepSpeed the passes hold collectives, so the ranks run in lockstep: a rank with fewer
micro-batches adds zero-weight idle passes on a dummy group (:func:`idle_rollout`), and a rank whose
loss is not finite still runs its remaining passes. Checkpoints hold the full weights and optimiser
state in the single-process format under every strategy, so each resumes under the others.

The launch check lives here too (:func:`init_from_env`): it needs ``zero``, which ``distributed.py``
does not import.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, ContextManager

import torch

from grpo_env.engine import distributed, sharding, zero
from grpo_env.engine.distributed import Dist
from grpo_env.engine.sampling import Rollout

# ---------------------------------------------------------------------------------------------
# the launch


def check_launch_mode() -> None:
    """Refuse, before joining a process group, a DeepSpeed launch whose settings this engine cannot
    serve (``zero.requested`` raises, naming the setting and what to use instead). FSDP launches are
    checked by ``sharding.requested``, DeepSpeed's ZeRO 1/2 run by ``zero.py``."""
    zero.requested()


def init_from_env(device: torch.device | None = None) -> Dist:
    """Check the launch (:func:`check_launch_mode`), then join the process group a launcher set up in
    the environment (``distributed.join``; a single process gets the no-op ``Dist()``)."""
    check_launch_mode()
    return distributed.join(device)


# ---------------------------------------------------------------------------------------------
# the strategies


class Plain:
    """One process, or plain data parallelism: every rank holds the whole policy and optimiser, passes
    run no collective, and the gradients are summed over the ranks (``Dist.sum_grads``) before the clip."""

    lockstep = False  # True: every pass holds collectives, so every rank runs as many (idle passes)

    def __init__(self, model: torch.nn.Module, dist: Dist = Dist()):
        self.model, self.dist = model, dist

    # the passes and the step

    def forward(self, fn: Callable[..., Any], *args, **kwargs):
        """``fn(model, *args, **kwargs)``: a pass of the policy (a log-prob function) that backward follows."""
        return fn(self.model, *args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def idle_passes(self, passes: int) -> int:
        """How many zero-weight passes this rank adds to its ``passes`` so that every rank runs as many
        as the busiest one (lockstep only, and then a collective: every rank calls it)."""
        return max(self.dist.gather(passes)) - passes if self.lockstep else 0

    def step(self, opt: torch.optim.Optimizer, sched, finite: bool, max_grad_norm: float) -> float:
        """The step after a step's backward passes (``finite``: every rank's loss was finite): sum the
        gradients over the ranks, clip their global norm to ``max_grad_norm``, step ``opt`` and ``sched``;
        skipped when ``finite`` is False or the norm is not. Clears the gradients either way. Returns
        the norm before clipping (NaN when not computed)."""
        norm = math.nan
        if finite:
            params = [p for p in self.model.parameters() if p.requires_grad]
            self.dist.sum_grads(params)  # (FSDP: its sharded gradients were summed in backward)
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
            if math.isfinite(norm):
                opt.step()
                sched.step()
        opt.zero_grad(set_to_none=True)
        return norm

    def gathered(self, enabled: bool = True) -> ContextManager[None]:
        """FSDP: the full weights on every rank for the duration, for passes whose count or length
        differs between ranks (generation, frozen log-probs); every rank enters it. Otherwise a no-op."""
        return contextlib.nullcontext()

    # checkpoints: the single-process format

    def full_state(self, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(weights, optimiser state dict), whole, as one process holds them; a collective under FSDP
        and DeepSpeed: every rank calls it."""
        return self.model.state_dict(), opt.state_dict()

    def full_weights(self) -> dict[str, torch.Tensor]:
        """The whole policy's weights (a generator's sync); a collective under FSDP: every rank calls it."""
        return self.model.state_dict()

    def plain_copy(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        """An ordinary model holding ``weights`` (:meth:`full_state`'s): what a checkpoint saves."""
        return self.model

    def load_full_state(self, opt: torch.optim.Optimizer, weights: dict[str, torch.Tensor],
                        optimizer: dict[str, Any]) -> list[str]:
        """Load a checkpoint's weights and optimiser state (:meth:`full_state`'s format, from any
        strategy); returns the weight names that fit no parameter (the optimiser is not loaded then)."""
        _, unexpected = self.model.load_state_dict(weights, strict=False)
        if not unexpected:
            opt.load_state_dict(optimizer)
        return unexpected


class Fsdp(Plain):
    """A policy sharded by ``sharding.shard_model`` (FSDP2): its passes all-gather and reduce-scatter."""

    lockstep = True

    def gathered(self, enabled: bool = True) -> ContextManager[None]:
        return sharding.gathered(self.model) if enabled else contextlib.nullcontext()

    def full_state(self, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return sharding.full_state(self.model), sharding.full_optimizer_state(opt)

    def full_weights(self) -> dict[str, torch.Tensor]:
        return sharding.full_state(self.model)

    def plain_copy(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        return sharding.plain_copy(self.model, weights)

    def load_full_state(self, opt: torch.optim.Optimizer, weights: dict[str, torch.Tensor],
                        optimizer: dict[str, Any]) -> list[str]:
        unexpected = sharding.load_full_state(self.model, weights)  # each rank keeps its shards
        if not unexpected:
            opt.load_state_dict(optimizer)
            sharding.shard_optimizer_state(opt)
        return unexpected


class DeepSpeed(Plain):
    """A policy whose DeepSpeed engine (ZeRO 1/2, ``zero.py``) runs the passes and the step; every rank
    holds the whole policy, AdamW's state is partitioned over the ranks."""

    lockstep = True  # ZeRO-2 reduces in backward hooks

    def forward(self, fn: Callable[..., Any], *args, **kwargs):
        return zero.forward(self.model, fn, *args, **kwargs)  # through the engine

    def backward(self, loss: torch.Tensor) -> None:
        zero.backward(self.model, loss)  # a non-finite loss goes back as NaN gradients

    def step(self, opt: torch.optim.Optimizer, sched, finite: bool, max_grad_norm: float) -> float:
        """DeepSpeed's step: it sums (stage 1) and clips the gradients (its config holds ``max_grad_norm``),
        steps AdamW and the schedule, or skips all of it on every rank when the global norm is not
        finite (a non-finite loss went back as NaN gradients)."""
        norm = zero.step(self.model)
        opt.zero_grad(set_to_none=True)
        return norm

    def full_state(self, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return self.model.state_dict(), zero.full_optimizer_state(self.model)  # gathered from the partitions

    def load_full_state(self, opt: torch.optim.Optimizer, weights: dict[str, torch.Tensor],
                        optimizer: dict[str, Any]) -> list[str]:
        _, unexpected = self.model.load_state_dict(weights, strict=False)
        if not unexpected:  # the fp32 master and AdamW partitions take their parts
            zero.load_full_state(self.model, optimizer)
        return unexpected


def strategy(model: torch.nn.Module, dist: Dist = Dist()) -> Plain:
    """The strategy that trains ``model``: DeepSpeed once its engine runs (``zero.active``), FSDP when
    it is sharded, else plain (one process or data parallelism)."""
    if zero.active(model):
        return DeepSpeed(model, dist)
    if sharding.is_sharded(model):
        return Fsdp(model, dist)
    return Plain(model, dist)


def start(model: torch.nn.Module, opt: torch.optim.Optimizer, sched, cfg, dist: Dist = Dist()) -> Plain:
    """:func:`strategy` for training ``model`` with ``opt`` and ``sched`` (``cfg``: the TrainConfig); a
    model marked by ``zero.prepare`` first starts DeepSpeed's engine, which takes over both. Every
    rank calls it."""
    zero.initialize(model, opt, sched, cfg)
    return strategy(model, dist)


def idle_rollout(group_size: int, device: torch.device) -> Rollout:
    """A one-group rollout (2 prompt tokens, 1 completion token) for the zero-weight passes a rank runs
    when it has fewer micro-batches than another (:meth:`Plain.idle_passes`)."""
    G = group_size
    ids = torch.zeros(G, 3, dtype=torch.long, device=device)  # (G, 3)
    ones = torch.ones(G, 3, dtype=torch.long, device=device)
    return Rollout(ids, ones, ones[:, 2:], torch.zeros(G, dtype=torch.bool), [""] * G, 2)
