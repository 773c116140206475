"""DeepSpeed launches (``accelerate launch --use_deepspeed --zero_stage N``, or an accelerate config with
``distributed_type: DEEPSPEED``): DeepSpeed's own engine (``deepspeed.initialize``) runs ZeRO stage 1
(the AdamW state partitioned over the ranks) or stage 2 (the gradients too). Every rank keeps the
whole policy: generation, the frozen log-prob passes and the reference model are unchanged.

What maps, and where it is handled:

- **Optimiser and schedule** are the recipe's: the engine's AdamW and LambdaLR (``make_optimizer``)
  are handed to ``deepspeed.initialize``, which partitions AdamW's state (``zero_allow_untested_optimizer``)
  and steps the schedule itself. The engine's gradient clipping is ``[train] max_grad_norm``, on the
  global norm, which DeepSpeed reports (``metrics["grad_norm"]``).
- **Gradients are summed over ranks** (``gradient_allreduce_op: "sum"``; DeepSpeed averages by
  default), because the loss already uses the whole step's normalisers (see ``distributed.py``).
- **Accumulation boundary**: a step has a varying number of micro-batches (dynamic sampling, uneven
  shares), so the caller owns the boundary (``managed_gradient_accumulation: false``: every
  ``engine.step()`` is one). ZeRO-2 reduces inside backward hooks, so every rank runs as many passes
  as the busiest one (the trainer's zero-weight idle passes, shared with FSDP).
- **Passes go through the engine**: the engine wraps a thin module whose forward runs a function of
  the policy (:func:`forward`), because the trainer calls the decoder and the head separately and
  DeepSpeed does its per-pass bookkeeping in its own forward and backward.
- **Non-finite steps**: a non-finite loss is back-propagated as NaN gradients (:func:`backward`), so
  DeepSpeed's own check of the global gradient norm skips the step on every rank (no weight change,
  gradients cleared, the schedule not advanced); the trainer counts it as a bad step.
- **Checkpoints** stay in the single-process format: full weights (every rank holds them under ZeRO
  1/2) and a full torch AdamW state dict gathered with DeepSpeed's fragment API
  (:func:`full_optimizer_state`, including AdamW's ``step``); :func:`load_full_state` scatters one
  back into the partitions, so plain, FSDP and DeepSpeed checkpoints resume under each other.

accelerate's settings (environment variables set by ``accelerate launch``, or the DeepSpeed JSON named
by ``deepspeed_config_file``) that map: the ZeRO stage (0 is plain data parallelism); ``gradient_clipping``
when it equals ``[train] max_grad_norm``; ``gradient_accumulation_steps`` 1 (or ``auto``); the ZeRO
communication knobs (bucket sizes, ``overlap_comm``, ``contiguous_gradients``, ...). Refused with a
message: stage 3 (parameter partitioning: use FSDP), offload, fp16/bf16 (use ``[train] bf16``), an
``optimizer`` or ``scheduler`` section, a conflicting clip or accumulation count, LoRA models and
non-float32 weights. Everything else (``train_batch_size`` and other bookkeeping) is ignored with a note.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from grpo_env.engine.distributed import sync_from_rank0
from grpo_env.engine.errors import DistributedError

MIN_VERSION = (0, 19, 8)  # the first DeepSpeed that skips an fp32 step whose gradient norm is not finite

# zero_optimization keys passed through to DeepSpeed (communication and memory layout; no effect on the result)
ZERO_KNOBS = ("allgather_partitions", "allgather_bucket_size", "reduce_scatter", "reduce_bucket_size",
              "overlap_comm", "contiguous_gradients", "round_robin_gradients")
FSDP_HINT = "`accelerate launch --use_fsdp --fsdp_version 2 ...`"


class ZeroError(DistributedError):
    """The DeepSpeed launch asks for something this engine does not do; the message says what to use instead."""


# ---------------------------------------------------------------------------------------------
# settings: what the launch asks for


@dataclass(frozen=True)
class ZeroSettings:
    stage: int = 2  # 1: optimiser state partitioned; 2: gradients too
    gradient_clipping: float | None = None  # the launch's clip (must equal [train] max_grad_norm); None: not set
    knobs: dict[str, Any] = field(default_factory=dict)  # ZERO_KNOBS passed to zero_optimization
    ignored: tuple[str, ...] = ()  # settings without effect here (rank 0 prints a note)


def _is_auto(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip().lower() in ("auto", "none", ""))


def _true(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() in ("1", "true", "yes"))


def requested() -> ZeroSettings | None:
    """The DeepSpeed settings of this launch, or None when it is not a DeepSpeed launch (or asks for
    stage 0, which is plain data parallelism). Raises :class:`ZeroError` for what is refused."""
    if not _true(os.environ.get("ACCELERATE_USE_DEEPSPEED", "false")):
        return None
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").strip().lower()
    if precision not in ("no", "fp32", ""):
        _refuse_precision(f"--mixed_precision {precision}")
    path = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")
    settings = _from_env() if _is_auto(path) else _from_file(Path(path))
    if settings.stage == 0:
        return None
    if settings.stage == 3:
        raise ZeroError(f"DeepSpeed ZeRO stage 3 (parameter partitioning) is not supported: to shard the parameters "
                        f"use FSDP ({FSDP_HINT}); ZeRO stage 1 and 2 (optimizer state and gradients) are supported")
    if settings.stage not in (1, 2):
        raise ZeroError(f"DeepSpeed zero_stage {settings.stage} does not exist: use 1 or 2 (or FSDP to shard "
                        "parameters)")
    if settings.stage == 1 and "overlap_comm" in settings.knobs:  # DeepSpeed overlaps stage 2 only, when we own
        knobs = {k: v for k, v in settings.knobs.items() if k != "overlap_comm"}  # the accumulation boundary
        ignored = settings.ignored + ("zero_optimization.overlap_comm",)
        return ZeroSettings(1, settings.gradient_clipping, knobs, ignored)
    return settings


def _from_env() -> ZeroSettings:
    """``accelerate launch --use_deepspeed --zero_stage N ...`` (or a config with ``deepspeed_config: {...}``)."""
    env = os.environ.get
    stage = env("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")  # accelerate's default
    _check_accumulation(env("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "auto"))
    for key, var in (("offload_optimizer_device", "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"),
                     ("offload_param_device", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE")):
        _check_offload(key, env(var, "none"))
    ignored = tuple(key for key, var in (("zero3_init_flag", "ACCELERATE_DEEPSPEED_ZERO3_INIT"),
                                         ("zero3_save_16bit_model", "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"))
                    if _true(env(var, "false")))
    return ZeroSettings(_stage(stage), _clip(env("ACCELERATE_GRADIENT_CLIPPING", "auto")), {}, ignored)


def _from_file(path: Path) -> ZeroSettings:
    """A DeepSpeed JSON (``deepspeed_config_file``): every key is mapped, refused, or ignored with a note."""
    try:
        ds = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ZeroError(f"cannot read the DeepSpeed config {path}: {e}") from None
    for key in ("optimizer", "scheduler"):
        if key in ds:
            what = ("AdamW from [train] lr, adam_betas and weight_decay" if key == "optimizer"
                    else "the schedule from [train] lr_schedule and warmup_steps")
            raise ZeroError(f"the DeepSpeed config's `{key}` section is not supported: grpo-env trains with {what} "
                            f"in the recipe; remove the `{key}` section from {path}")
    for key in ("fp16", "bf16", "amp"):
        if isinstance(ds.get(key), dict) and _true(ds[key].get("enabled", False)):
            _refuse_precision(f"the `{key}` section of {path}")
    zero = ds.get("zero_optimization") or {}
    for key in ("offload_optimizer", "offload_param"):
        _check_offload(f"zero_optimization.{key}.device", (zero.get(key) or {}).get("device", "none"))
    _check_accumulation(ds.get("gradient_accumulation_steps", "auto"))
    stage = zero.get("stage", "auto")
    if _is_auto(stage):
        stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    handled_zero = set(ZERO_KNOBS) | {"stage", "offload_optimizer", "offload_param"}
    handled = {"zero_optimization", "optimizer", "scheduler", "fp16", "bf16", "amp", "gradient_accumulation_steps",
               "gradient_clipping"}
    ignored = [f"zero_optimization.{k}" for k, v in zero.items() if k not in handled_zero and not _is_auto(v)]
    ignored += [k for k, v in ds.items() if k not in handled and not _is_auto(v)]
    knobs = {k: zero[k] for k in ZERO_KNOBS if k in zero and not _is_auto(zero[k])}
    return ZeroSettings(_stage(stage), _clip(ds.get("gradient_clipping", "auto")), knobs, tuple(ignored))


def _stage(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ZeroError(f"DeepSpeed zero_stage {v!r} is not a number: use 1 or 2") from None


def _clip(v: Any) -> float | None:
    if _is_auto(v):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ZeroError(f"DeepSpeed gradient_clipping {v!r} is not a number: remove it (the recipe's "
                        "[train] max_grad_norm is used)") from None


def _refuse_precision(where: str) -> None:
    raise ZeroError(f"DeepSpeed mixed precision ({where}) is not supported: the weights and AdamW stay "
                    "float32; for bf16 compute set `[train] bf16 = true` in the recipe (autocast) and launch with "
                    "--mixed_precision no (and no fp16/bf16 section in the DeepSpeed config)")


def _check_offload(key: str, device: Any) -> None:
    if not _is_auto(device):
        raise ZeroError(f"DeepSpeed offload ({key} = {device}) is not supported: set it to none (ZeRO stage 2 "
                        f"already divides the optimizer state and gradients by the number of ranks; FSDP "
                        f"({FSDP_HINT}) also shards the parameters)")


def _check_accumulation(v: Any) -> None:
    if _is_auto(v) or str(v).strip() == "1":
        return
    raise ZeroError(f"DeepSpeed gradient_accumulation_steps = {v} is not supported: every grpo-env step already "
                    "accumulates all of its micro-batches; set it to 1 (or auto) and size micro-batches with "
                    "`[train] micro_batch_size`")


def ds_config(settings: ZeroSettings, cfg) -> dict[str, Any]:
    """The DeepSpeed config for ``deepspeed.initialize`` (``cfg``: the recipe's TrainConfig, whose values win)."""
    if settings.gradient_clipping is not None and not math.isclose(settings.gradient_clipping, cfg.max_grad_norm):
        raise ZeroError(f"DeepSpeed gradient_clipping = {settings.gradient_clipping:g} conflicts with the recipe's "
                        f"[train] max_grad_norm = {cfg.max_grad_norm:g}: remove gradient_clipping from the "
                        "accelerate/DeepSpeed config (the recipe's value is used), or set "
                        f"--train.max_grad_norm={settings.gradient_clipping:g}")
    return {
        "train_micro_batch_size_per_gpu": 1,  # bookkeeping only: the trainer feeds the engine itself
        "gradient_accumulation_steps": 1,  # ... and owns the accumulation boundary:
        "managed_gradient_accumulation": False,  # every engine.step() is one, however many passes it follows
        "gradient_allreduce_op": "sum",  # the loss is normalised by the whole step: sum, do not average
        "gradient_clipping": cfg.max_grad_norm,
        "zero_optimization": {"stage": settings.stage, **settings.knobs},
        "zero_allow_untested_optimizer": True,  # torch's AdamW, from make_optimizer
        "steps_per_print": 2**62,  # no progress lines of DeepSpeed's own
    }


# ---------------------------------------------------------------------------------------------
# the engine


@dataclass
class _Zero:
    """What a DeepSpeed-trained policy carries (as ``model._grpo_env_zero``)."""

    settings: ZeroSettings
    engine: Any = None  # deepspeed.DeepSpeedEngine, once initialize() ran
    opt: torch.optim.Optimizer | None = None  # the torch AdamW (DeepSpeed swapped its parameters for flat partitions)
    params: list[torch.nn.Parameter] = field(default_factory=list)  # the optimiser's parameters, in state-dict order
    groups: list[dict[str, Any]] = field(default_factory=list)  # its param_groups as a state dict writes them


class _Policy(torch.nn.Module):
    """The module DeepSpeed's engine wraps: calling it runs ``fn(policy, *args)``, so the engine's
    per-pass bookkeeping wraps the trainer's passes (which call the decoder and the head separately)."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, fn: Callable[..., Any], *args, **kwargs):
        return fn(self.policy, *args, **kwargs)


def _state(model) -> _Zero | None:
    return getattr(model, "_grpo_env_zero", None)


def active(model) -> bool:
    """True when DeepSpeed's engine trains ``model`` (after :func:`initialize`)."""
    z = _state(model)
    return z is not None and z.engine is not None


def require_deepspeed() -> None:
    """Refuse a missing or too old DeepSpeed, naming what to install."""
    want = ".".join(map(str, MIN_VERSION))
    try:
        import deepspeed
    except ImportError:
        raise ZeroError("DeepSpeed is not installed: `pip install 'grpo-env[deepspeed]'`, or launch without "
                        "--use_deepspeed") from None
    have = tuple(int(x) for x in deepspeed.__version__.split("+")[0].split(".")[:3] if x.isdigit())
    if have < MIN_VERSION:
        raise ZeroError(f"DeepSpeed {deepspeed.__version__} is too old: grpo-env needs deepspeed>={want} (it skips "
                        f"a float32 step whose gradient norm is not finite); `pip install -U 'deepspeed>={want}'`")


def prepare(model: torch.nn.Module, settings: ZeroSettings, cfg) -> torch.nn.Module:
    """Check that DeepSpeed can train ``model`` with the recipe's ``cfg``, start every rank from rank 0's
    weights, and mark the model; the engine itself starts in the trainer (:func:`initialize`), which
    owns the optimiser. Needs an initialised process group."""
    require_deepspeed()
    if hasattr(model, "get_base_model"):
        raise ZeroError("LoRA (peft) models are not supported under DeepSpeed: train full weights, or launch "
                        "without DeepSpeed (LoRA keeps the trainable part small; plain data parallelism fits it)")
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    if dtypes != {torch.float32}:
        raise ZeroError(f"[model] dtype {sorted(map(str, dtypes))} is not supported under DeepSpeed: its ZeRO "
                        "optimizer keeps float32 master weights, which trains differently from one process; "
                        "use `[model] dtype = \"float32\"` and `[train] bf16 = true` for bf16 compute")
    ds_config(settings, cfg)  # refuses a conflict with the recipe now, before any work
    sync_from_rank0(model)
    if settings.ignored and torch.distributed.get_rank() == 0:
        print(f"deepspeed: note: no effect here: {', '.join(settings.ignored)} (grpo-env sets the batch, optimizer "
              "and precision from the recipe)", file=sys.stderr)
    model._grpo_env_zero = _Zero(settings)
    return model


def initialize(model: torch.nn.Module, opt: torch.optim.Optimizer, sched, cfg) -> None:
    """Start DeepSpeed's engine on a model marked by :func:`prepare` (a no-op otherwise): it takes over
    ``opt`` (partitioning its state) and ``sched`` (stepping it). Every rank calls it (``parallel.start``)."""
    z = _state(model)
    if z is None:
        return
    if z.engine is not None:  # its gradient hooks are on the parameters already: a second engine would double them
        raise ZeroError("this model already trains under a DeepSpeed engine (one train() per model): load the "
                        "checkpoint into a fresh model prepared with zero.prepare, and pass resume=True")
    import deepspeed

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)  # its config dump and per-stage INFO lines
    sd = opt.state_dict()  # the parameter order and grouping of a plain checkpoint, before DeepSpeed regroups them
    z.params = [p for g in opt.param_groups for p in g["params"]]
    z.groups = [dict(g) for g in sd["param_groups"]]
    z.opt = opt
    z.engine, *_ = deepspeed.initialize(model=_Policy(model), optimizer=opt, lr_scheduler=sched,
                                        config=ds_config(z.settings, cfg))
    held, total = partition_numel(model)
    print(f"deepspeed: zero stage {z.settings.stage}, rank {torch.distributed.get_rank()} of "
          f"{torch.distributed.get_world_size()} holds the optimizer state of {held} of {total} parameter elements",
          file=sys.stderr)


def optimizer(model) -> torch.optim.Optimizer:
    """The torch optimiser DeepSpeed steps: its parameters (and state) are this rank's flat partitions."""
    return _state(model).opt


def partition_numel(model) -> tuple[int, int]:
    """(parameter elements whose optimiser state this rank holds, all trainable elements)."""
    z = _state(model)
    held = sum(p.numel() for g in z.opt.param_groups for p in g["params"])  # this rank's flat partitions
    return held, sum(p.numel() for p in z.params)


# ---------------------------------------------------------------------------------------------
# the passes and the step (what ``parallel.DeepSpeed`` runs; plain torch when DeepSpeed is not in use)


def forward(model, fn: Callable[..., Any], *args, **kwargs):
    """``fn(model, *args, **kwargs)``, through DeepSpeed's engine when it trains ``model``."""
    if not active(model):
        return fn(model, *args, **kwargs)
    return _state(model).engine(fn, *args, **kwargs)


def backward(model, loss: torch.Tensor) -> None:
    """``loss.backward()``, or DeepSpeed's ``engine.backward``. A non-finite loss goes back as NaN
    gradients: DeepSpeed's check of the global gradient norm then skips the step on every rank."""
    if not active(model):
        loss.backward()
        return
    if not torch.isfinite(loss):
        loss = loss * math.nan  # NaN reaches every parameter the loss depends on
    _state(model).engine.backward(loss)


def step(model) -> float:
    """DeepSpeed's step (the accumulation boundary): reduce (stage 1) and clip the summed gradients,
    step AdamW and the schedule, or skip all of it when the global norm is not finite. Returns that
    norm (not finite when skipped)."""
    engine = _state(model).engine
    engine.step()
    norm = engine.get_global_grad_norm()
    return math.nan if norm is None else float(norm)


# ---------------------------------------------------------------------------------------------
# checkpoints: the single-process format, gathered from and scattered to the partitions


def _elementwise(z: _Zero, group: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """A group's flat partition and its AdamW state (empty before the first step)."""
    flat = z.opt.param_groups[group]["params"][0]
    return flat, z.opt.state.get(flat, {})


def full_optimizer_state(model) -> dict[str, Any]:
    """The optimiser's state dict as one process would write it (per-parameter full tensors on CPU,
    the same parameter indices and groups); a collective: every rank calls it."""
    from deepspeed.utils import safe_get_full_optimizer_state

    z = _state(model)
    state: dict[int, dict[str, Any]] = {}
    for gi, group in enumerate(z.groups):
        flat, flat_state = _elementwise(z, gi)
        if not flat_state:
            continue  # no step taken yet: no state, as with one process
        per_elem = [k for k, v in flat_state.items() if torch.is_tensor(v) and v.shape == flat.shape]
        scalars = {k: v for k, v in flat_state.items() if k not in per_elem}  # AdamW's step
        for i in group["params"]:
            p = z.params[i]
            state[i] = {k: v.detach().cpu().clone() if torch.is_tensor(v) else v for k, v in scalars.items()}
            for k in per_elem:
                state[i][k] = safe_get_full_optimizer_state(p, k).detach().cpu().clone()
    groups = [{**{k: now[k] for k in saved if k != "params"}, "params": list(saved["params"])}
              for saved, now in zip(z.groups, z.opt.param_groups)]  # current lr etc., plain indices
    return {"state": state, "param_groups": groups}


def load_full_state(model, optimizer: dict[str, Any]) -> None:
    """After the full weights were loaded into ``model``: the fp32 master partitions take them, and the
    AdamW partitions take their parts of ``optimizer`` (a single-process state dict, or
    :func:`full_optimizer_state`'s), hyper-parameters (the scheduled lr) included."""
    from deepspeed.utils import (lazy_init_hp_params_optimizer_state, safe_set_full_fp32_param,
                                 safe_set_full_optimizer_state)

    z = _state(model)
    saved_groups = optimizer["param_groups"]
    if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in z.groups]:
        raise ValueError("the checkpoint's optimizer state has other parameter groups than this model's optimizer")
    for p in z.params:
        safe_set_full_fp32_param(p, p.detach())
    for gi, saved in enumerate(saved_groups):
        z.opt.param_groups[gi].update({k: v for k, v in saved.items() if k != "params"})
        rows = [optimizer["state"][i] for i in saved["params"] if i in optimizer["state"]]
        if not rows:
            continue  # the checkpoint was written before the first step
        flat, _ = _elementwise(z, gi)
        first = z.params[saved["params"][0]]
        per_elem = [k for k, v in rows[0].items() if torch.is_tensor(v) and v.shape == first.shape]
        flat_state = z.opt.state[flat]
        for k, v in rows[0].items():  # the partition's state: zeros, then every parameter's fragment
            flat_state[k] = torch.zeros_like(flat) if k in per_elem else (
                v.detach().clone().to(flat.device) if torch.is_tensor(v) else v)
        group_params = [z.params[i] for i in saved["params"]]
        lazy_init_hp_params_optimizer_state(group_params, flat, z.opt.state)  # link the fragments to the new state
        for i, p in zip(saved["params"], group_params):
            for k in per_elem:
                safe_set_full_optimizer_state(p, optimizer["state"][i][k].to(flat.device, flat.dtype), k)
