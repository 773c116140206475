"""Data parallelism across processes (``accelerate launch``, ``torchrun``): one small object the loop asks.

Every rank draws the full step's prompts from its own copy of the seeded task mix (so all ranks
draw the same ones), keeps a contiguous share of the groups, generates and scores only those, and
computes the loss with the *global* normalisers (tokens and sequences of the whole step), so the
gradients summed across ranks are those of a single process on the whole batch. Rewards are
gathered so advantages and metrics cover the whole batch. Only rank 0 writes logs and checkpoints.
Under an FSDP launch the policy is sharded (``sharding.py``) and FSDP sums its gradients itself;
under a DeepSpeed launch DeepSpeed's engine partitions the optimiser state (ZeRO 1/2, ``zero.py``).
``parallel.py`` puts the three behind one strategy object the loop asks, and checks a launch before
it joins the process group (``parallel.init_from_env``). This module imports neither ``sharding``
nor ``zero`` (both import it).

With one process every method is a no-op, and nothing here touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from grpo_env.engine.errors import DistributedError  # noqa: F401  (its import path before errors.py)


def env_world_size() -> int:
    """The process count a launcher (accelerate launch, torchrun) announced in the environment."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """True on the process that writes logs, checkpoints and the report."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def share(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (groups); the first ``n % world`` ranks get one more."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def sum(self, x: float) -> float:
        """The sum of a number over all ranks."""
        if not self.active:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=_comm_device())
        torch.distributed.all_reduce(t)
        return float(t.item())

    def sum_all(self, xs: list[float]) -> list[float]:
        """Element-wise sums over all ranks, in one collective."""
        if not self.active:
            return list(xs)
        t = torch.tensor(xs, dtype=torch.float64, device=_comm_device())
        torch.distributed.all_reduce(t)
        return t.tolist()

    def all_true(self, flag: bool) -> bool:
        return self.sum(0.0 if flag else 1.0) == 0.0

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def sum_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Replace each gradient by its sum over ranks (one flat all-reduce; a missing gradient counts as 0).
        Sharded (FSDP) parameters are skipped: FSDP summed their gradients in backward."""
        if not self.active:
            return
        params = [p for p in params if not _is_dtensor(p)]
        if not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        i = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[i : i + n].view_as(p).clone()
            i += n

    def broadcast_params(self, model: torch.nn.Module) -> None:
        """Start every rank from rank 0's weights (covers any randomly initialised adapters). Sharded
        (FSDP) parameters are skipped: ``sharding.shard_model`` synchronised them before sharding."""
        if not self.active:
            return
        with torch.no_grad():
            for p in model.parameters():
                if not _is_dtensor(p):
                    torch.distributed.broadcast(p.data, src=0)

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def _is_dtensor(t: torch.Tensor) -> bool:
    """True for an FSDP-sharded parameter (a DTensor)."""
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def _comm_device() -> torch.device:
    """NCCL only moves CUDA tensors; gloo moves CPU ones."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sync_from_rank0(model: torch.nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers (a replicated model, before FSDP shards it or
    DeepSpeed's engine takes it over). Needs an initialised process group."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            torch.distributed.broadcast(t.data, src=0)


def join(device: torch.device | None = None) -> Dist:
    """Join the process group a launcher set up in the environment (gloo on CPU, NCCL on CUDA);
    a single process (no launcher) gets the no-op ``Dist()``. ``parallel.init_from_env`` checks the
    launch's settings first."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size())
    if env_world_size() <= 1:
        return Dist()
    cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size())
