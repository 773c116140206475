"""The GRPO training loop: sample G completions per prompt, score them, normalise rewards within
each group, and take clipped, KL-penalised policy-gradient steps. One top-to-bottom function
(:func:`train`), with its helpers just above it.

The engine knows nothing of plugins: prompts come from a ``PromptSource`` and rewards from a
``score_fn(examples, completions) -> list[Scored]``. How the passes, the optimiser step and the
checkpoint state run on one process, under data parallelism, FSDP or DeepSpeed is the parallel
strategy's business (``parallel.py``): the loop only asks it.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from grpo_env.engine import checkpoint, cpu_matmul, parallel, tblog
from grpo_env.engine.config import TrainConfig
from grpo_env.engine.distributed import Dist
from grpo_env.engine.errors import DistributedError
from grpo_env.engine.generation import Generator, as_generator
from grpo_env.engine.generation.watch import SyncWatch, reduce_gaps
from grpo_env.engine.losses import (grpo_loss, group_advantages, masked_mean, sampling_gap, tis_weights,
                                    zero_spread_groups)
from grpo_env.engine.episode_watch import EpisodeWatch
from grpo_env.engine.monitor import StepMonitor
from grpo_env.engine import rollout
from grpo_env.engine.rollout import EpisodeHost
from grpo_env.engine.sampling import Rollout, group_logprobs, token_logprobs
from grpo_env.engine.sampling import gradient_checkpointing as _checkpointing
from grpo_env.types import Example, Scored

ScoreFn = Callable[[list[Example], list[str]], list[Scored]]


class PromptSource(Protocol):
    """Where training prompts come from; its position is part of every checkpoint."""

    def sample(self, n: int) -> list[Example]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TrainingDiverged(RuntimeError):
    """Too many steps in a row had a non-finite loss or gradient."""


@dataclass
class Batch:
    """One step's scored rollouts: B = groups * G sequences, groups on consecutive rows."""

    examples: list[Example]  # (B,) the example of each sequence
    rollout: Rollout
    scored: list[Scored]  # (B,)
    rewards: torch.Tensor  # (B,) float32, NaN = no signal
    rounds: int = 1  # generation rounds it took (dynamic sampling)
    dropped_groups: int = 0  # zero-spread groups dropped by dynamic sampling


@dataclass
class RunState:
    step: int = 0
    bad_steps: int = 0  # non-finite steps in a row
    history: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# rollouts


def merge_rollouts(parts: list[Rollout], pad_id: int) -> Rollout:
    """Concatenate rollouts with different prompt and completion lengths (re-padding both sides)."""
    if len(parts) == 1:
        return parts[0]
    P = max(r.prompt_len for r in parts)
    T = max(r.completion_ids.shape[1] for r in parts)
    ids, attn, cmask = [], [], []
    for r in parts:
        lp, rp = P - r.prompt_len, T - r.completion_ids.shape[1]
        ids.append(torch.nn.functional.pad(r.input_ids, (lp, rp), value=pad_id))
        attn.append(torch.nn.functional.pad(r.attention_mask, (lp, rp), value=0))
        cmask.append(torch.nn.functional.pad(r.completion_mask, (0, rp), value=0))
    model_mask = None
    if any(r.model_mask is not None for r in parts):  # episodes: the sampled tokens among the completion's
        model_mask = torch.cat([torch.nn.functional.pad(r.trained_mask, (0, T - r.completion_ids.shape[1]), value=0)
                                for r in parts])
    sample_logp = None
    if all(r.sample_logprobs is not None for r in parts):
        sample_logp = torch.cat([torch.nn.functional.pad(r.sample_logprobs, (0, T - r.completion_ids.shape[1]))
                                 for r in parts])
    episodes = None
    if any(r.episodes is not None for r in parts):
        episodes = [e for r in parts for e in (r.episodes or [None] * r.input_ids.shape[0])]
    return Rollout(
        torch.cat(ids), torch.cat(attn), torch.cat(cmask), torch.cat([r.truncated for r in parts]),
        [t for r in parts for t in r.texts], P, model_mask, sample_logp, episodes,
    )


def score_rows(score_fn: ScoreFn, examples: list[Example], texts: list[str], judged: list[Scored | None] | None) -> list[Scored]:
    """Each row's judgement: episodes come judged by their environments; the other rows go to ``score_fn``."""
    if judged is None:
        return score_fn(examples, texts)
    rest = [i for i, j in enumerate(judged) if j is None]
    scored = iter(score_fn([examples[i] for i in rest], [texts[i] for i in rest]) if rest else [])
    return [j if j is not None else next(scored) for j in judged]


def collect_batch(model, tokenizer, prompts: PromptSource, score_fn: ScoreFn, cfg: TrainConfig, timer: Counter,
                  dist: Dist = Dist(), env_host: EpisodeHost | None = None, generator: Generator | None = None) -> Batch:
    """Sample, roll out and score one step's batch; with dynamic sampling keep only groups whose
    rewards differ, drawing more prompts until ``prompts_per_step`` groups are kept (or the round cap).
    Rows of environments are played as episodes through ``env_host`` (:mod:`rollout`). The
    ``generator`` samples (default: our decode loop on ``model``), with each token's log-prob.

    Across ranks, every rank draws the same prompts and keeps its own share of the groups; the
    count of kept groups is summed over ranks, so every rank runs the same number of rounds.
    """
    G, want = cfg.group_size, cfg.prompts_per_step
    kept: list[tuple[list[Example], Rollout, list[Scored], torch.Tensor]] = []
    n_kept, rounds, dropped = 0, 0, 0
    env_before = timer["environment"]
    while n_kept < want and rounds < cfg.max_sampling_rounds:
        rounds += 1
        drawn = prompts.sample(want - n_kept)
        examples = drawn[dist.share(len(drawn))]  # this rank's groups
        keep_groups: list[int] = []
        if examples:
            t = time.perf_counter()
            with _autocast(model, cfg.bf16):
                ro, judged = rollout.run(generator or model, tokenizer, examples, G, cfg, env_host,
                                         return_logprobs=True, timer=timer)
            timer["generation"] += time.perf_counter() - t - timer["environment"] + env_before
            env_before = timer["environment"]
            seq_examples = [e for e in examples for _ in range(G)]
            t = time.perf_counter()
            scored = score_rows(score_fn, seq_examples, ro.texts, judged)
            timer["scoring"] += time.perf_counter() - t
            rewards = torch.tensor([s.total for s in scored], dtype=torch.float32)
            keep_groups = list(range(len(examples)))
            if cfg.dynamic_sampling:
                flat = zero_spread_groups(rewards, G)
                keep_groups = [g for g in keep_groups if not flat[g]]
                dropped += len(examples) - len(keep_groups)
            if keep_groups:
                rows = [g * G + j for g in keep_groups for j in range(G)]
                kept.append(([seq_examples[i] for i in rows], ro.select(rows), [scored[i] for i in rows], rewards[rows]))
        n_kept += int(dist.sum(len(keep_groups)))
        if not cfg.dynamic_sampling:
            break
    dropped = int(dist.sum(dropped))
    if not kept:  # nothing kept on this rank (dynamic sampling found no group with spread, or no share)
        return Batch([], None, [], torch.zeros(0), rounds, dropped)  # type: ignore[arg-type]
    batch = Batch(
        [e for k in kept for e in k[0]],
        merge_rollouts([k[1] for k in kept], tokenizer.pad_token_id),
        [s for k in kept for s in k[2]],
        torch.cat([k[3] for k in kept]),
        rounds,
        dropped,
    )
    return sort_groups(batch, G) if cfg.sort_by_length else batch


def sort_groups(batch: Batch, group_size: int) -> Batch:
    """The batch with its groups ordered by their longest completion (stable), so each micro-batch
    is cut to a length close to all of its rows'. Advantages, losses and normalisers do not depend
    on the order of groups."""
    G = group_size
    longest = batch.rollout.completion_mask.sum(-1).view(-1, G).max(-1).values.cpu()  # (N,)
    order = torch.argsort(longest, stable=True).tolist()
    if order == sorted(order):
        return batch
    rows = [g * G + j for g in order for j in range(G)]
    return Batch([batch.examples[i] for i in rows], batch.rollout.select(rows), [batch.scored[i] for i in rows],
                 batch.rewards[rows], batch.rounds, batch.dropped_groups)


# ---------------------------------------------------------------------------------------------
# the update


def make_optimizer(model, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (the fused kernel where torch has one: on CPU, torch's default is a per-tensor loop,
    ~20x slower on a 135M model) and the learning-rate schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = all(type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") for p in params)  # not sharded
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay,
                            fused=fused or None)
    total = max(cfg.steps * cfg.mu, 1)

    def factor(i: int) -> float:  # i = optimiser steps taken so far
        if i < cfg.warmup_steps:
            return (i + 1) / (cfg.warmup_steps + 1)
        frac = (i - cfg.warmup_steps) / max(total - cfg.warmup_steps, 1)
        if cfg.lr_schedule == "linear":
            return max(0.0, 1.0 - frac)
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _chunks(n: int, size: int, group_size: int = 1) -> list[slice]:
    """Row slices of at most ``size`` rows (0: all), rounded up to whole groups."""
    size = -(-(size or n) // group_size) * group_size
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def chunk_logprobs(model, ro: Rollout, s: slice, cfg: TrainConfig, with_entropy: bool = False):
    """Log-probs (b, T) (and entropy) of rows ``s`` of a rollout (whole groups).

    Completion columns past the chunk's longest completion are not computed (they are padding);
    each prompt runs once per group (prefix sharing) unless gradient checkpointing is on (it needs
    the plain path: checkpointed layers do not return a cache).
    """
    P, T = ro.prompt_len, ro.completion_mask.shape[1]
    tc = max(int(ro.completion_mask[s].sum(-1).max().item()), 1)
    if _checkpointing(model):
        logp, ent = token_logprobs(model, ro.input_ids[s, : P + tc], ro.attention_mask[s, : P + tc], P,
                                   cfg.temperature, with_entropy)
    else:
        G = cfg.group_size
        logp, ent = group_logprobs(
            model, ro.input_ids[s][::G, :P], ro.attention_mask[s][::G, :P], ro.input_ids[s, P : P + tc],
            ro.attention_mask[s, P : P + tc], G, cfg.temperature, with_entropy,
        )
    pad = (0, T - tc)
    return torch.nn.functional.pad(logp, pad), None if ent is None else torch.nn.functional.pad(ent, pad)


def _device_type(model) -> str:
    return next(model.parameters()).device.type


def _autocast(model, enabled: bool):
    return torch.autocast(_device_type(model), dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


@torch.no_grad()
def frozen_logprobs(model, ro: Rollout, cfg: TrainConfig, disable_adapter: bool = False) -> torch.Tensor:
    """(B, T) log-probs of the completions under a frozen model (reference, or the old policy)."""
    out = []
    ctx = model.disable_adapter() if disable_adapter else contextlib.nullcontext()
    with ctx, _autocast(model, cfg.bf16):
        for s in _chunks(ro.input_ids.shape[0], cfg.micro_batch_size, cfg.group_size):
            out.append(chunk_logprobs(model, ro, s, cfg)[0])
    return torch.cat(out)


METRIC_SUMS = ("loss", "entropy", "kl", "clip_low_frac", "clip_high_frac", "_w")  # summed over micro-batches and ranks


def _idle_pass(par: parallel.Plain, cfg: TrainConfig) -> None:
    """A zero-weight forward and backward on a dummy group: under FSDP or DeepSpeed, a rank with fewer
    micro-batches than another still joins every pass's collectives (its gradients do not change)."""
    ro = parallel.idle_rollout(cfg.group_size, next(par.model.parameters()).device)  # (G, 3)
    with _autocast(par.model, cfg.bf16):
        logp, _ = par.forward(chunk_logprobs, ro, slice(0, cfg.group_size), cfg)  # (G, 1)
    par.backward(logp.sum() * 0.0)


def update(
    model,
    opt: torch.optim.Optimizer,
    sched,
    ro: Rollout | None,  # None: this rank has no sequences this step (it still joins the gradient sum)
    advantages: torch.Tensor,  # (B,)
    loss_mask: torch.Tensor | None,  # (B, T)
    ref_logp: torch.Tensor | None,  # (B, T)
    old_logp: torch.Tensor | None,  # (B, T) None when mu = 1
    cfg: TrainConfig,
    dist: Dist = Dist(),
    par: parallel.Plain | None = None,  # the parallel strategy; None: parallel.strategy(model, dist)
    tis_cap: float = 0.0,  # > 0: weigh each token's policy loss by min(train/sample ratio, cap)
) -> tuple[dict[str, float], bool]:
    """One optimiser step over the batch with gradient accumulation; returns (metrics, finite).

    The loss uses the whole step's normalisers (tokens, sequences, micro-batches summed over ranks)
    and the gradients are summed over ranks, so N ranks on N shares equal one process on the batch.
    The parallel strategy runs the passes and the step. Where the rollout has sampling log-probs,
    the train-inference gap over the trained tokens is measured (and corrected with ``tis_cap``).
    """
    par = parallel.strategy(model, dist) if par is None else par
    B = 0 if ro is None else ro.input_ids.shape[0]
    eps_high = cfg.epsilon if cfg.epsilon_high is None else cfg.epsilon_high
    chunks = _chunks(B, cfg.micro_batch_size, cfg.group_size) if B else []
    local_tokens = float(loss_mask.sum().item()) if B else 0.0
    total_tokens, total_seqs, total_chunks = dist.sum_all([local_tokens, float(B), float(len(chunks))])
    total_seqs = int(total_seqs)
    sums: Counter = Counter()
    gaps: list[dict[str, Any]] = []  # per micro-batch: the train-inference gap's sums
    sample_logp = None if ro is None else ro.sample_logprobs  # (B, T)
    finite = True
    model.train(_checkpointing(model))  # checkpointing only acts in train mode; otherwise no dropout
    opt.zero_grad(set_to_none=True)
    # FSDP gathers and reduces in every pass, DeepSpeed (ZeRO-2) reduces in backward: all ranks run as many
    idle = par.idle_passes(len(chunks))
    for s in chunks:
        with _autocast(model, cfg.bf16):
            logp, ent = par.forward(chunk_logprobs, ro, s, cfg, with_entropy=True)  # (b, T); DeepSpeed: its engine
        is_w = None
        if sample_logp is not None:  # the trained weights' log-probs of the tokens against the generator's
            behaviour = logp.detach() if old_logp is None else old_logp[s]  # (b, T)
            gaps.append(sampling_gap(behaviour, sample_logp[s], loss_mask[s]))
            is_w = tis_weights(behaviour, sample_logp[s], tis_cap) if tis_cap > 0 else None
        loss, m = grpo_loss(
            logp,
            None if old_logp is None else old_logp[s],
            None if ref_logp is None else ref_logp[s],
            advantages[s].to(logp.device),
            loss_mask[s],
            loss_type=cfg.loss_type,
            eps_low=cfg.epsilon,
            eps_high=eps_high,
            beta=cfg.beta,
            kl_estimator=cfg.kl_estimator,
            max_tokens=cfg.max_new_tokens,
            total_tokens=total_tokens,
            total_seqs=total_seqs,
            is_weights=is_w,
        )
        if cfg.loss_type == "bnpo":  # a per-micro-batch mean: average the micro-batches
            loss = loss / total_chunks
        if not torch.isfinite(loss):
            finite = False
            if not par.lockstep:
                break
            par.backward(loss)  # FSDP, DeepSpeed: this pass's collectives still run (the step is skipped)
            continue
        par.backward(loss)
        w = float(loss_mask[s].sum().item())  # token weight of this micro-batch's metrics
        sums["loss"] += loss.item()
        sums["entropy"] += masked_mean(ent, loss_mask[s]) * w
        for k, v in m.items():
            sums[k] += v * w
        sums["_w"] += w
    for _ in range(idle):
        _idle_pass(par, cfg)
    model.eval()
    # whole-step numbers: every rank runs these collectives in the same order, whatever happened above
    finite = dist.all_true(finite)
    sums = dict(zip(METRIC_SUMS, dist.sum_all([sums[k] for k in METRIC_SUMS])))
    metrics = {"loss": sums["loss"], **reduce_gaps(gaps, dist)}
    for k in ("entropy", "kl", "clip_low_frac", "clip_high_frac"):
        if k != "kl" or ref_logp is not None or (ro is None and cfg.beta > 0):
            metrics[k] = sums[k] / max(sums["_w"], 1.0)
    # the step: gradients summed over ranks and clipped, AdamW and the schedule stepped; skipped when not finite
    metrics["grad_norm"] = par.step(opt, sched, finite, cfg.max_grad_norm)
    return metrics, finite and math.isfinite(metrics["grad_norm"])


# ---------------------------------------------------------------------------------------------
# logging


@dataclass
class StepView:
    """The whole step's batch as the logs see it (all ranks' sequences, in rank order)."""

    examples: list[Example]  # (B,)
    scored: list[Scored]  # (B,)
    rewards: torch.Tensor  # (B,)
    texts: list[str]  # (B,)
    lengths: torch.Tensor  # (B,) completion lengths
    truncated: torch.Tensor  # (B,) bool
    offset: int = 0  # where this rank's rows start
    episodes: list[dict | None] = field(default_factory=list)  # (B,) per-episode stats (None: single-turn rows)


def gather_view(batch: Batch, dist: Dist) -> StepView:
    """This rank's batch plus every other rank's (one all-gather of plain Python objects)."""
    ro = batch.rollout
    mine = {
        "examples": batch.examples,
        "scored": batch.scored,
        "rewards": batch.rewards.tolist(),
        "texts": ro.texts if ro is not None else [],
        "lengths": ro.trained_mask.sum(-1).tolist() if ro is not None else [],  # the model's tokens
        "truncated": ro.truncated.tolist() if ro is not None else [],
        "episodes": (ro.episodes or [None] * len(ro.texts)) if ro is not None else [],
    }
    parts = dist.gather(mine)
    offset = sum(len(p["examples"]) for p in parts[: dist.rank])
    return StepView(
        [e for p in parts for e in p["examples"]],
        [s for p in parts for s in p["scored"]],
        torch.tensor([r for p in parts for r in p["rewards"]], dtype=torch.float32),
        [t for p in parts for t in p["texts"]],
        torch.tensor([n for p in parts for n in p["lengths"]], dtype=torch.float32),
        torch.tensor([b for p in parts for b in p["truncated"]], dtype=torch.bool),
        offset,
        [e for p in parts for e in p["episodes"]],
    )


def _stats(xs: list[float]) -> dict[str, float | int]:
    t = torch.tensor([x for x in xs if math.isfinite(x)], dtype=torch.float64)
    if t.numel() == 0:
        return {"mean": None, "std": None, "n": 0}  # type: ignore[dict-item]
    return {"mean": t.mean().item(), "std": t.std(unbiased=False).item(), "n": t.numel()}


def episode_metrics(view: StepView) -> dict[str, Any]:
    """Per environment: mean turns, tool calls, tool errors and tokens per episode, and how the
    episodes ended (by the environment, a limit, a timeout or an error)."""
    by_env: dict[str, list[dict]] = defaultdict(list)
    for ex, ep in zip(view.examples, view.episodes):
        if ep is not None:
            by_env[ex.task].append(ep)
    out: dict[str, Any] = {}
    for env, eps in sorted(by_env.items()):
        n = len(eps)
        m: dict[str, Any] = {k: sum(e[k] for e in eps) / n for k in ("turns", "tool_calls", "tool_errors", "tokens")}
        m["ended_by"] = dict(Counter(e["ended_by"] for e in eps))
        m["env_timeouts"], m["env_errors"] = m["ended_by"].get("timeout", 0), m["ended_by"].get("error", 0)
        m["episodes"] = n
        out[env] = m
    return {"episodes_by_env": out} if out else {}


def reward_metrics(batch: Batch | StepView) -> dict[str, Any]:
    """Reward mean and spread overall, per task and per component; status counts per task; and,
    for a step with episodes, per-environment episode statistics."""
    by_task: dict[str, list[float]] = defaultdict(list)
    by_comp: dict[str, list[float]] = defaultdict(list)
    status: dict[str, Counter] = defaultdict(Counter)
    for ex, sc in zip(batch.examples, batch.scored):
        by_task[ex.task].append(sc.total)
        status[ex.task][str(sc.status)] += 1
        for name, o in sc.components.items():
            if not o.status.excluded:
                by_comp[name].append(o.score)
            if o.status.value in ("timeout", "error", "unparsable", "memory_limit", "output_limit", "rejected"):
                status[ex.task][f"{name}:{o.status.value}"] += 1
    overall = _stats(batch.rewards.tolist())
    return {
        "reward_mean": overall["mean"],
        "reward_std": overall["std"],
        "reward_nan": int(torch.isnan(batch.rewards).sum()),
        "reward_by_task": {t: _stats(v) for t, v in sorted(by_task.items())},
        "reward_by_component": {c: _stats(v)["mean"] for c, v in sorted(by_comp.items())},
        "status_by_task": {t: dict(c) for t, c in sorted(status.items())},
        **(episode_metrics(batch) if isinstance(batch, StepView) else {}),
    }


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


class RunLog:
    """The run directory's append-only logs: metrics.jsonl, rollouts.jsonl and samples.log, and
    (``tensorboard``) metrics.jsonl's records as TensorBoard scalars. A context manager: leaving it
    closes the TensorBoard writer."""

    def __init__(self, out_dir: Path, resume_step: int | None, tensorboard: bool = False):
        self.dir = out_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "rollouts.jsonl"):
            self._truncate(self.dir / name, resume_step)
        if resume_step is None and (self.dir / "samples.log").exists():
            (self.dir / "samples.log").unlink()
        if resume_step is None:  # a fresh run: an earlier attempt's events go, like its metrics.jsonl
            shutil.rmtree(self.dir / "tensorboard", ignore_errors=True)
        self.tb = tblog.TBLog(self.dir, resume_step) if tensorboard else None

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        if self.tb is not None:
            self.tb.close()

    @staticmethod
    def _truncate(path: Path, keep_upto: int | None) -> None:
        """Drop records past the checkpoint we resume from (they are about to be redone)."""
        if not path.exists():
            return
        if keep_upto is None:  # a fresh run
            path.unlink()
            return
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        kept = []
        for ln in lines:
            try:
                if json.loads(ln)["step"] <= keep_upto:
                    kept.append(ln)
            except (json.JSONDecodeError, KeyError):
                break  # a torn last line from a kill
        path.write_text("".join(k + "\n" for k in kept))

    def append(self, name: str, record: dict[str, Any]) -> None:
        with open(self.dir / name, "a") as f:
            f.write(json.dumps(record) + "\n")
        if name == "metrics.jsonl" and self.tb is not None:
            self.tb.write(record)

    def samples(self, step: int, batch: StepView, n: int) -> None:
        if n <= 0 or not batch.examples:
            return
        with open(self.dir / "samples.log", "a") as f:
            for i in range(min(n, len(batch.examples))):
                ex = batch.examples[i]
                f.write(
                    f"=== step {step} | {ex.task} | {ex.id} | reward {batch.scored[i].total:.3f} "
                    f"({batch.scored[i].status}) ===\n[prompt] {ex.prompt[-1].content}\n"
                    f"[completion] {batch.texts[i]}\n\n"
                )


def _progress(enabled: bool, total: int, start: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(
        TextColumn("[bold]GRPO"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"), disable=not enabled,
    )
    task = prog.add_task("train", total=total, completed=start, info="")
    return prog, task


# ---------------------------------------------------------------------------------------------
# the loop


@dataclass
class Checkpoints:
    """A run's checkpoints under ``root``: the weights and optimiser state (whole, in the single-process
    format, whatever the parallel strategy), the schedule, the prompt stream's position, every rank's
    RNG state and the run's counters. ``save_model(model, tokenizer, dir)`` writes the model beside them."""

    root: Path
    par: parallel.Plain
    opt: torch.optim.Optimizer
    sched: Any
    prompts: PromptSource
    keep: int = 2
    tokenizer: Any = None
    save_model: Callable[[Any, Any, Path], None] | None = None
    monitor: StepMonitor | None = None  # its baselines and alarms carry over a resume

    def resume(self, run: RunState) -> bool:
        """Every rank continues from the latest checkpoint, if there is one; returns whether there was.
        Every rank must see the same one (on several machines, a run directory they share): otherwise
        every rank raises ``DistributedError``, where they would have trained out of step and hung."""
        ckpt = checkpoint.latest(self.root)
        if self.par.dist.active:  # each rank reads its own node's run directory, which only rank 0 writes
            seen = self.par.dist.gather(None if ckpt is None else ckpt.name)
            if len(set(seen)) > 1:
                by: dict[str, list[int]] = defaultdict(list)
                for r, name in enumerate(seen):
                    by[name or "no checkpoint"].append(r)
                found = "; ".join(f"{name} on rank {', '.join(map(str, rs[:8]))}{', ...' if len(rs) > 8 else ''}"
                                  for name, rs in by.items())
                raise DistributedError(
                    f"cannot resume: the ranks see different checkpoints under {self.root} ({found}). Only rank 0 "
                    "writes the run directory: on several machines put [train] output_dir on a filesystem every "
                    "node mounts at the same path, or copy rank 0's run directory to the other nodes first")
        if ckpt is None:
            return False
        state = checkpoint.load(ckpt)
        unexpected = self.par.load_full_state(self.opt, checkpoint.weights(ckpt, state), state["optimizer"])
        if unexpected:
            raise RuntimeError(f"checkpoint {ckpt} does not fit this model: {unexpected[:3]}")
        self.sched.load_state_dict(state["scheduler"])
        self.prompts.load_state_dict(state["prompts"])
        dist = self.par.dist
        ranks = state.get("rng_ranks")  # one per rank (several processes); rank 0's alone in older checkpoints
        checkpoint.set_rng_state(ranks[dist.rank] if ranks and len(ranks) == dist.world else state["rng"])
        run.step, run.bad_steps = state["step"], state["bad_steps"]
        if "cpu_matmul" in state:  # the same product kernels as before the stop: an exact resume
            cpu_matmul.pin(state["cpu_matmul"])
        if self.monitor is not None and "monitor" in state:
            self.monitor.load_state_dict(state["monitor"])
        return True

    def save(self, run: RunState) -> None:
        """Rank 0 writes a checkpoint; every rank calls it (each rank's RNG state is gathered, and under
        FSDP and DeepSpeed the full weights and optimiser state too)."""
        weights, optimizer = self.par.full_state(self.opt)
        rngs = self.par.dist.gather(checkpoint.rng_state())  # every rank's sampling stream, for an exact resume
        if not self.par.dist.main:
            return
        model = self.par.model
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        in_model = self.save_model is not None and not hasattr(model, "merge_and_unload")  # saved as trained
        names = [k for k in weights if k in trainable]
        state = {
            "step": run.step,
            "bad_steps": run.bad_steps,
            **({"weight_names": names} if in_model else {"weights": {k: weights[k].detach().cpu().clone() for k in names}}),
            "optimizer": optimizer,
            "scheduler": self.sched.state_dict(),
            "prompts": self.prompts.state_dict(),
            "rng": rngs[0],
            **({"rng_ranks": rngs} if self.par.dist.active else {}),
            **({"monitor": self.monitor.state_dict()} if self.monitor is not None else {}),
            **({"cpu_matmul": cpu_matmul.choice()} if _device_type(model) == "cpu" else {}),
        }
        plain = self.par.plain_copy(weights)  # FSDP: an unsharded model holding the full weights
        writer = (lambda d: self.save_model(plain, self.tokenizer, d)) if self.save_model else None
        checkpoint.save(self.root, run.step, state, writer, keep=self.keep)


def train(
    model,
    tokenizer,
    prompts: PromptSource,
    score_fn: ScoreFn,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    ref_model=None,
    resume: bool = False,
    save_model: Callable[[Any, Any, Path], None] | None = None,
    dist: Dist = Dist(),
    env_host: EpisodeHost | None = None,
    monitor: StepMonitor | None = None,
    generator: Generator | None = None,
) -> RunState:
    """Train ``model`` for ``cfg.steps`` steps, logging to and checkpointing under ``out_dir``.

    ``ref_model`` is the frozen reference for the KL term (needed when ``cfg.beta > 0``, unless the
    model is a peft model: then the reference is the same model with its adapters disabled).
    With ``resume``, the run continues from ``out_dir/checkpoints/latest`` exactly.
    With ``dist`` (several processes), each rank generates its share of the groups, gradients are
    summed over ranks, and only rank 0 writes logs and checkpoints. A model sharded by
    ``sharding.shard_model`` (FSDP), or marked by ``zero.prepare`` (DeepSpeed ZeRO 1/2, whose engine
    starts here), trains the same way (``parallel.start`` picks the strategy); its checkpoints hold
    the full weights and optimiser state. With ``env_host``, examples of environments are played as
    multi-turn episodes (:mod:`rollout`); the loss covers the model's sampled tokens only.
    With ``monitor``, each step's reward-hacking signals are logged under ``monitor`` (they never
    enter a reward), and an alarm warns or stops the run (:mod:`grpo_env.engine.monitor`).
    Environments that fail are written down, warned about and stop the run (:mod:`episode_watch`).
    ``generator`` samples the completions (:mod:`grpo_env.engine.generation`; default: our decode
    loop on ``model``); it takes the new weights after every step, and the train-inference gap is
    logged (and, for a generator that is not ``model`` itself, corrected by ``cfg.tis_cap``).
    """
    out_dir = Path(out_dir)
    ckpt_root = out_dir / "checkpoints"
    use_adapter_ref = cfg.beta > 0 and ref_model is None and hasattr(model, "disable_adapter")
    if cfg.beta > 0 and ref_model is None and not use_adapter_ref:
        raise ValueError("beta > 0 needs a reference model (or a LoRA model, whose base is the reference)")
    if not resume and checkpoint.latest(ckpt_root) is not None:
        raise FileExistsError(
            f"{out_dir} already holds a run's checkpoints: continue it with --resume, or choose another "
            "directory (--name=... or --train.output_dir=...)"
        )
    opt, sched = make_optimizer(model, cfg)
    par = parallel.start(model, opt, sched, cfg, dist)  # DeepSpeed launch (zero.prepare): its engine takes over both
    ckpts = Checkpoints(ckpt_root, par, opt, sched, prompts, cfg.keep_checkpoints, tokenizer, save_model, monitor)
    run = RunState()

    # resume: weights, optimiser, scheduler, RNG and the prompt stream's position
    resumed = resume and ckpts.resume(run)
    if not resumed and dist.active:  # a fresh run: each rank its own sampling stream (launched ranks share a seed)
        torch.manual_seed(torch.initial_seed() + dist.rank)
    if cfg.tensorboard:
        tblog.require()  # on every rank, before the first step: every rank fails alike
    log = RunLog(out_dir, run.step if resumed else None, cfg.tensorboard) if dist.main else None
    watch = EpisodeWatch(cfg, out_dir, dist, run.step if resumed else None)  # environments' errors: written, warned, a stop
    env_host = watch.observe(env_host)
    dist.broadcast_params(model)  # every rank starts from rank 0's weights
    generator = as_generator(model) if generator is None else generator
    syncing = SyncWatch(generator, cfg, dist)
    syncing.sync(model, sched.last_epoch, par.full_weights)  # the generator starts on the (resumed) weights
    prog, bar = _progress(cfg.progress and dist.main, cfg.steps, run.step)
    with prog, (log or contextlib.nullcontext()):  # the log's TensorBoard writer is closed on any exit
        while run.step < cfg.steps:
            t_step = time.perf_counter()
            timer: Counter = Counter()

            # 1. sample prompts, generate G completions each (this rank's share of the groups), score them
            with par.gathered():  # FSDP: full weights while ranks generate for different lengths
                batch = collect_batch(model, tokenizer, prompts, score_fn, cfg, timer, dist, env_host, generator)
            view = gather_view(batch, dist)  # the whole step's rewards, texts and lengths, on every rank
            watching = monitor.begin(run.step + 1, view) if monitor else None  # plugin signals, strict re-scoring: in the background
            record: dict[str, Any] = {"step": run.step + 1, "lr": sched.get_last_lr()[0]}
            metrics: dict[str, Any] = {}
            ok = True
            if view.examples:
                ro = batch.rollout  # None when this rank kept no group (dynamic sampling)
                # 2. group-normalised advantages over the whole batch (NaN rewards: no signal, no loss)
                adv_all, adv_m = group_advantages(view.rewards, cfg.group_size, cfg.scale_rewards, cfg.adv_eps)
                adv = adv_all[view.offset : view.offset + len(batch.examples)]
                loss_mask = None
                if ro is not None:
                    loss_mask = ro.trained_mask.float().cpu()  # (B, T) the sampled tokens (not an environment's)
                    loss_mask[torch.isnan(batch.rewards)] = 0  # no signal: no loss
                    if cfg.mask_truncated:
                        loss_mask[ro.truncated] = 0
                    loss_mask = loss_mask.to(ro.input_ids.device)

                # 3. frozen log-probs: reference (beta > 0) and sampling policy (mu > 1 only)
                t = time.perf_counter()
                ref_logp = old_logp = None
                if cfg.beta > 0 and ro is not None:
                    ref_logp = frozen_logprobs(model if use_adapter_ref else ref_model, ro, cfg, use_adapter_ref)
                with par.gathered(cfg.mu > 1):  # every rank
                    if cfg.mu > 1 and ro is not None:
                        old_logp = frozen_logprobs(model, ro, cfg)
                timer["reference"] += time.perf_counter() - t

                # 4. mu optimiser steps on this batch (gradients summed over ranks)
                t = time.perf_counter()
                for _ in range(cfg.mu):
                    m, ok = update(model, opt, sched, ro, adv, loss_mask, ref_logp, old_logp, cfg, dist, par,
                                   syncing.tis_cap)
                    metrics = metrics or m  # report the first pass (ratio 1: the on-policy numbers)
                    if not ok:
                        metrics = m
                        break
                timer["update"] += time.perf_counter() - t

                # 5. the generator takes the new weights (vLLM; our decode loop samples from them already)
                t = time.perf_counter()
                syncing.sync(model, sched.last_epoch, par.full_weights)
                timer["sync"] += time.perf_counter() - t
                metrics.update(adv_m)
                metrics.update(
                    completion_len_mean=view.lengths.mean().item(),
                    completion_len_max=view.lengths.max().item(),
                    truncated_frac=view.truncated.float().mean().item(),
                )
                metrics.update(reward_metrics(view))
                if monitor is not None:
                    metrics.update(monitor.finish(run.step + 1, view, watching))
                    timer["monitor"] = monitor.seconds  # on the critical path; its background work ran beside the update:
                    metrics["monitor_background_s"] = round(monitor.background, 4)
            else:
                metrics.update(zero_spread_frac=1.0, skipped_reason="no group with reward spread")
            metrics.update(watch.finish(run.step + 1))
            metrics.update(syncing.finish(run.step + 1, sched.last_epoch, metrics))

            # 6. log the step (rank 0); stop after too many non-finite steps in a row
            run.bad_steps = 0 if ok else run.bad_steps + 1
            run.step += 1
            timer["total"] = time.perf_counter() - t_step
            record.update({k: (_finite_or_none(v) if isinstance(v, float) else v) for k, v in metrics.items()})
            record.update(
                skipped=not ok,
                sampling_rounds=batch.rounds,
                dropped_groups=batch.dropped_groups,
                sequences=len(view.examples),
                time={k: round(v, 3) for k, v in timer.items()},
            )
            if dist.main:
                log.append("metrics.jsonl", record)
                log.append("rollouts.jsonl", {
                    "step": run.step,
                    "examples": [e.id for e in view.examples[:: cfg.group_size]],
                    "tasks": [e.task for e in view.examples[:: cfg.group_size]],
                    "rewards": [_finite_or_none(x) for x in view.rewards.tolist()],
                    "completions": view.texts,
                    **({"episodes": view.episodes} if any(view.episodes) else {}),
                })
                log.samples(run.step, view, cfg.log_samples)
            run.history.append(record)
            prog.update(bar, advance=1, info=_headline(record))
            if not cfg.progress and dist.main:  # no bar: a plain line per step (logs, pipes, CI)
                print(f"step {run.step}/{cfg.steps}  {_headline(record)}", file=sys.stderr, flush=True)
            watch.check()  # every episode of an environment failed too many steps in a row: EnvironmentFailing
            if run.bad_steps >= cfg.max_bad_steps:
                raise TrainingDiverged(f"{run.bad_steps} steps in a row had a non-finite loss or gradient (step {run.step})")

            # 7. checkpoint (atomic, written by rank 0; every rank adds its RNG state, FSDP and DeepSpeed their shards);
            #    a monitor alarm with on_alarm = "stop" ends the run here, checkpointed
            stopping = monitor is not None and monitor.stopping()
            due = (cfg.save_every and run.step % cfg.save_every == 0) or run.step == cfg.steps or stopping
            if cfg.save and due:  # save = false: a smoke run writes no checkpoint
                ckpts.save(run)
                dist.barrier()  # nobody runs ahead of (or exits before) a checkpoint
            if stopping:
                raise monitor.alarm()
    return run


def _headline(r: dict[str, Any]) -> str:
    def f(k: str, fmt: str = ".3f") -> str:
        v = r.get(k)
        return "-" if v is None else format(v, fmt)

    return (f"reward {f('reward_mean')}  kl {f('kl', '.4f')}  len {f('completion_len_mean', '.0f')}  "
            f"trunc {f('truncated_frac', '.2f')}  {r['time'].get('total', 0):.1f}s/step")
