"""FSDP launches (``accelerate launch --use_fsdp``, or an accelerate config with ``distributed_type: FSDP``):
the policy's parameters, gradients and optimiser state are sharded over the ranks with PyTorch's
FSDP2 (``torch.distributed.fsdp.fully_shard``).

Layout: every decoder layer is one FSDP unit, and the decoder (embeddings, final norm) together with
the LM head is one more. They form a single unit because the engine calls the decoder and the head
separately (prefix-shared prefill and log-probs), and because the head's weight is often the
embedding matrix (tied). The reference model stays replicated (no gradients, no optimiser state).

What differs from plain data parallelism, and where it is handled:

- **Gradients** are reduce-scattered by FSDP in backward, summed (not averaged: the loss uses the
  whole step's normalisers, see ``distributed.py``), so ``Dist.sum_grads`` skips sharded parameters.
- **Collectives in forward and backward** (all-gathers, reduce-scatters) need every rank to run the
  same passes: generation and the frozen log-prob passes run with the full parameters gathered once
  (:func:`gathered`: no collective while ``generate`` runs its rank-dependent number of steps), and
  in the update a rank with fewer micro-batches runs zero-weight passes (``parallel.idle_rollout``).
- **Checkpoints** hold full (unsharded) weights and optimiser state, in the same format as a
  single-process run (:func:`full_state`, :func:`full_optimizer_state`), and are loaded back into
  the shards (:func:`load_full_state`, :func:`shard_optimizer_state`).

accelerate's settings (environment variables set by ``accelerate launch``) that map are honoured:
``FSDP_VERSION`` 1 and 2 both run on FSDP2; the sharding strategy (``FSDP_SHARDING_STRATEGY`` for
version 1, ``FSDP_RESHARD_AFTER_FORWARD`` for version 2) picks whether layers reshard after forward
(``FULL_SHARD`` / ``true``) or keep their gathered weights until backward (``SHARD_GRAD_OP`` /
``false``); ``NO_SHARD`` is plain data parallelism; ``FSDP_TRANSFORMER_CLS_TO_WRAP`` names the layer
classes to wrap (default: the model's ``_no_split_modules``). Hybrid sharding, parameter offload and
FSDP activation checkpointing are refused with a message (use ``[model] gradient_checkpointing``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from grpo_env.engine.distributed import sync_from_rank0
from grpo_env.engine.errors import DistributedError

STRATEGIES = ["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "HYBRID_SHARD_ZERO2"]  # accelerate's order


class ShardingError(DistributedError):
    """The FSDP launch asks for something this engine does not do; the message says what to use instead."""


def _flag(name: str, default: str = "false") -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class FsdpSettings:
    reshard_after_forward: bool = True  # FULL_SHARD (True) or SHARD_GRAD_OP (False)
    wrap_classes: tuple[str, ...] = ()  # layer classes that become FSDP units (empty: the model's _no_split_modules)


def requested() -> FsdpSettings | None:
    """The FSDP settings of this launch, or None when it is not an FSDP launch (or asks for NO_SHARD)."""
    if not _flag("ACCELERATE_USE_FSDP"):
        return None
    version = os.environ.get("FSDP_VERSION", "1").strip()
    if version == "2":
        reshard = _flag("FSDP_RESHARD_AFTER_FORWARD", "true")
    else:  # FSDP1 names (accelerate's FSDP_SHARDING_STRATEGY: a name or its 1-based number)
        strategy = os.environ.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD").strip().upper()
        if strategy.isdigit() and 1 <= int(strategy) <= len(STRATEGIES):
            strategy = STRATEGIES[int(strategy) - 1]
        if strategy == "NO_SHARD":
            return None  # replicate everything: exactly the engine's data parallelism
        if strategy not in ("FULL_SHARD", "SHARD_GRAD_OP"):
            raise ShardingError(f"FSDP sharding strategy {strategy!r} is not supported: use FULL_SHARD or "
                                "SHARD_GRAD_OP (or NO_SHARD / a plain multi-process launch for data parallelism)")
        reshard = strategy == "FULL_SHARD"
    if _flag("FSDP_OFFLOAD_PARAMS"):
        raise ShardingError("FSDP parameter offload (fsdp_offload_params) is not supported: set it to false")
    if _flag("FSDP_ACTIVATION_CHECKPOINTING"):
        raise ShardingError("FSDP activation checkpointing is not supported: set fsdp_activation_checkpointing to "
                            "false and use `[model] gradient_checkpointing = true` in the recipe instead")
    classes = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "")
    return FsdpSettings(reshard, tuple(c.strip() for c in classes.split(",") if c.strip()))


def is_sharded(model: torch.nn.Module) -> bool:
    if not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def _units(model: torch.nn.Module) -> list[Any]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def shard_model(model: torch.nn.Module, settings: FsdpSettings) -> torch.nn.Module:
    """Shard ``model`` (in place) over the default process group; returns it.

    Every rank first takes rank 0's parameters and buffers (the same start as the data-parallel path,
    and what accelerate's ``cpu_ram_efficient_loading`` expects). Needs an initialised process group.
    """
    from torch.distributed.fsdp import fully_shard

    from grpo_env.engine.sampling import _hidden_and_head

    if hasattr(model, "get_base_model"):
        raise ShardingError("LoRA (peft) models are not supported under FSDP: train full weights, or launch "
                            "without FSDP (LoRA keeps the trainable part small; plain data parallelism fits it)")
    sync_from_rank0(model)
    decoder, head = _hidden_and_head(model)
    names = set(settings.wrap_classes or getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in decoder.modules() if type(m).__name__ in names]
    if not layers:
        raise ShardingError(f"no layer of class {sorted(names)} in {type(model).__name__}: set "
                            "fsdp_transformer_layer_cls_to_wrap to its decoder layer class")
    for layer in layers:
        fully_shard(layer, reshard_after_forward=settings.reshard_after_forward)
    # the decoder's own parameters and the head (often the same embedding matrix): one unit, so both
    # are gathered whichever of them the engine calls
    fully_shard([decoder, head], reshard_after_forward=settings.reshard_after_forward)
    fully_shard(model, reshard_after_forward=settings.reshard_after_forward)  # the root (holds no parameter itself)
    for unit in _units(model):
        # the loss is normalised by the whole step, so gradients are summed over ranks (FSDP averages
        # by default); sum-only collectives also suit gloo, which has no averaging reduce-scatter
        unit.set_gradient_divide_factor(1.0)
        unit.set_force_sum_reduction_for_comms(True)
    # FSDP picks its root at the first forward; run it through the whole model now, since the engine
    # later calls the decoder and the head directly
    with torch.no_grad():
        model(input_ids=torch.zeros(1, 1, dtype=torch.long, device=next(model.parameters()).device), use_cache=False)
    for unit in _units(model):
        unit.reshard()  # SHARD_GRAD_OP (and the root) keep a forward's gathered weights: drop them
    model._grpo_env_fsdp = settings  # what gathered() restores
    return model


def local_numel(model: torch.nn.Module) -> int:
    """The number of parameter elements this rank holds (its shards; every element when not sharded)."""
    from torch.distributed.tensor import DTensor

    return sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in model.parameters())


@contextlib.contextmanager
def gathered(model: torch.nn.Module) -> Iterator[None]:
    """Full parameters on every rank for the duration (one all-gather per unit on entry), so forwards
    inside run no collective: generation and frozen log-prob passes may differ between ranks in
    length and count. A no-op when the model is not sharded. Every rank must enter it together."""
    settings = getattr(model, "_grpo_env_fsdp", None)  # set by shard_model
    units = _units(model) if settings is not None else []
    for u in units:
        u.set_reshard_after_forward(False, recurse=False)
        u.unshard()
    try:
        yield
    finally:
        for u in units:
            u.set_reshard_after_forward(settings.reshard_after_forward, recurse=False)
            u.reshard()


def _full(t: Any) -> Any:
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict with full tensors on CPU (a collective: every rank calls it).
    Tied entries (the head and the embeddings) stay one tensor."""
    done: dict[int, torch.Tensor] = {}
    out = {}
    for k, v in model.state_dict().items():
        if id(v) not in done:
            done[id(v)] = _full(v).detach().cpu().clone()
        out[k] = done[id(v)]
    return out


def plain_copy(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """An ordinary (unsharded) model of the same class and config holding ``state`` (full tensors from
    :func:`full_state`, used in place, not copied): what a checkpoint's ``save_pretrained`` writes."""
    from torch.distributed.fsdp import FSDPModule

    cls = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))  # FSDP's class is a subclass
    with torch.device("meta"):
        plain = cls(model.config)
    plain.load_state_dict(state, assign=True)
    if getattr(model, "generation_config", None) is not None:
        plain.generation_config = model.generation_config
    return plain.eval()


def full_optimizer_state(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """``opt.state_dict()`` with full tensors: the format of a single-process run (a collective)."""
    sd = opt.state_dict()
    state = {i: {k: _full(v).detach().cpu().clone() if torch.is_tensor(v) else v for k, v in s.items()}
             for i, s in sd["state"].items()}
    return {**sd, "state": state}


def _shard_like(full: torch.Tensor, param: Any) -> Any:
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(param, DTensor) or not torch.is_tensor(full) or full.shape != param.shape:
        return full
    # every rank holds the same full tensor (it read the same checkpoint): cut its shard, no communication
    return distribute_tensor(full.to(param.device, param.dtype), param.device_mesh, param.placements,
                             src_data_rank=None)


def load_full_state(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Copy full tensors (a checkpoint's ``weights``) into the sharded parameters; returns the keys
    that name no parameter (nothing is loaded then)."""
    params = dict(model.named_parameters())
    unexpected = [k for k in weights if k not in params]
    if not unexpected:
        with torch.no_grad():
            for k, v in weights.items():
                params[k].copy_(_shard_like(v, params[k]))
    return unexpected


def shard_optimizer_state(opt: torch.optim.Optimizer) -> None:
    """After ``opt.load_state_dict`` of a full state (:func:`full_optimizer_state`, or a single-process
    run's): cut each state tensor to its parameter's shard."""
    for p, s in opt.state.items():
        for k, v in s.items():
            s[k] = _shard_like(v, p)
