"""Glue between plugins and the engine's reward-hacking monitor (:mod:`grpo_env.engine.monitor`).

- Plugin monitors (``register_monitors``) run in the scoring service's workers like rewards, under
  their deadline: each becomes a pseudo-reward ``monitor:<name>`` whose outcome carries the signals
  and is never weighed. A monitor applies to a task that weighs one of its ``rewards`` (or to every
  single-turn task when it names none).
- Strict re-verification scores a sample of rows with each component's ``Reward.strict`` variant.
- Canaries (``Task.canaries``): :class:`CanarySource` puts them among the prompts at
  ``[monitor] canary_share``, and :func:`canary_blind` makes their reward NaN to the engine, so a
  canary is judged and counted but never trains.
"""

from __future__ import annotations

import functools
import math
import random
from typing import Any

from grpo_env.engine.monitor import CANARY_PREFIX, MonitorConfig, StepMonitor, is_canary
from grpo_env.engine.distributed import Dist
from grpo_env.mixture import MixEntry
from grpo_env.types import Example, Monitor, Outcome, Reward, Scored, Status

PREFIX = "monitor:"  # pseudo-reward names: outside the reward namespace (a name may not hold ':')


def _run_monitor(monitor: Monitor, completion: str, example: Example) -> Outcome:
    """A monitor's signals as an outcome (in a scoring worker): known signals, each in [0, 1]."""
    found = monitor.fn(completion, example)
    if not isinstance(found, dict):
        return Outcome.error(f"monitor {monitor.name!r} returned {type(found).__name__}, expected a dict")
    signals = {}
    for name, v in found.items():
        if name not in monitor.signals:
            return Outcome.error(f"monitor {monitor.name!r} returned an undeclared signal {str(name)[:60]!r}")
        if isinstance(v, bool):
            v = float(v)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
            return Outcome.error(f"monitor {monitor.name!r}: signal {name!r} must be a number in [0, 1]")
        signals[name] = float(v)
    return Outcome.of(Status.NOT_APPLICABLE, 0.0, signals=signals)


def monitor_reward(monitor: Monitor) -> Reward:
    """``monitor`` as a pseudo-reward the scoring service runs (never weighed in a task)."""
    return Reward.model_construct(name=PREFIX + monitor.name, fn=functools.partial(_run_monitor, monitor),
                                  timeout=monitor.timeout, description=monitor.description, max_score=0.0,
                                  min_score=0.0, gold_keys={}, statuses=(), strict=None)


def applies(monitor: Monitor, entry: MixEntry) -> bool:
    if entry.is_environment:
        return False
    return not monitor.rewards or any(r in entry.reward_weights for r in monitor.rewards)


def scoring_rewards(registry, entries: list[MixEntry], cfg: MonitorConfig) -> dict[str, Reward]:
    """What the scoring service must hold for the monitor: the strict variants of the mix's
    components and the pseudo-rewards of the monitors that apply to the mix."""
    if not cfg.enabled:
        return {}
    out: dict[str, Reward] = {}
    for e in entries:
        for name in e.components:
            strict = registry.reward(name).strict
            if strict and cfg.strict_share > 0:
                out[strict] = registry.reward(strict)
    for m in registry.monitors.values():
        if any(applies(m, e) for e in entries):
            out[PREFIX + m.name] = monitor_reward(m)
    return out


def thresholds(registry) -> dict[str, float]:
    """Every plugin monitor's default alarm thresholds, ``'<monitor>.<signal>'`` -> share."""
    return {f"{m.name}.{s}": v for m in registry.monitors.values() for s, v in m.thresholds.items()}


def check_thresholds(cfg: MonitorConfig, registry) -> None:
    """A recipe's threshold for a signal no monitor declares is an error naming it (before the model loads)."""
    signals = {f"{m.name}.{s}" for m in registry.monitors.values() for s in m.signals}
    unknown = sorted(set(cfg.thresholds) - signals)
    if unknown:
        raise ValueError(f"monitor.thresholds: no monitor has a signal named {unknown}; known: "
                         f"{', '.join(sorted(signals)) or 'none'} (grpo-env plugins lists the monitors)")
    bad = {k: v for k, v in cfg.thresholds.items() if not 0 <= v <= 1}
    if bad:
        raise ValueError(f"monitor.thresholds: each is a share in [0, 1], got {bad}")


def make_monitor(cfg: MonitorConfig, registry, entries: list[MixEntry], service, dist: Dist = Dist(),
                 texts_of=None) -> StepMonitor:
    """The engine's monitor for this mix: plugin signals and strict re-scoring through ``service``
    (which must hold :func:`scoring_rewards`); ``texts_of(examples, completions)`` gives what
    rewards judge (the prefill and the completion)."""
    texts_of = texts_of or (lambda exs, cs: list(cs))
    by_task = {e.task.name: [m for m in registry.monitors.values() if applies(m, e)] for e in entries}
    strict_of = {name: registry.reward(name).strict for e in entries for name in e.components}
    check_thresholds(cfg, registry)

    def signals_fn(examples: list[Example], completions: list[str]) -> list[dict[str, float]]:
        texts = texts_of(examples, completions)
        items, where = [], []
        for i, (ex, text) in enumerate(zip(examples, texts)):
            for m in by_task.get(ex.task, []):
                items.append((PREFIX + m.name, ex, text))
                where.append((i, m.name))
        out: list[dict[str, float]] = [{} for _ in examples]
        for (i, name), o in zip(where, service.score(items) if items else []):
            for sig, v in o.details.get("signals", {}).items():
                out[i][f"{name}.{sig}"] = v
        return out

    def strict_fn(examples: list[Example], completions: list[str], scored: list[Scored]) -> list[dict[str, Outcome]]:
        texts = texts_of(examples, completions)
        items, where = [], []
        for i, (ex, text, s) in enumerate(zip(examples, texts, scored)):
            for name in s.components:
                if strict_of.get(name):
                    items.append((strict_of[name], ex, text))
                    where.append((i, name))
        out: list[dict[str, Outcome]] = [{} for _ in examples]
        for (i, name), o in zip(where, service.score(items) if items else []):
            out[i][name] = o
        return out

    has_strict = any(strict_of.values()) and cfg.strict_share > 0
    return StepMonitor(cfg, signals_fn if any(by_task.values()) else None, strict_fn if has_strict else None,
                       thresholds(registry), dist)


# ---- canaries ------------------------------------------------------------------------------------


class CanarySource:
    """A prompt source with a share of canaries: each drawn prompt of a task that offers canaries is
    replaced by one of them with probability ``share``. Its own seeded stream: the position is part of
    every checkpoint, so a resumed run draws the same canaries."""

    def __init__(self, prompts, entries: list[MixEntry], share: float, seed: int = 0):
        self.prompts = prompts
        self.share = share
        self.canaries: dict[str, list[Example]] = {}
        for e in entries:
            made = e.task.canaries() if getattr(e.task, "canaries", None) and not e.is_environment else []
            if made:
                self.canaries[e.task.name] = [e.prepare(c.model_copy(update={"id": _canary_id(c.id)})) for c in made]
        self._rng = random.Random(f"canaries-{seed}")

    def sample(self, n: int) -> list[Example]:
        out = []
        for ex in self.prompts.sample(n):
            pool = self.canaries.get(ex.task)
            out.append(self._rng.choice(pool) if pool and self._rng.random() < self.share else ex)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**self.prompts.state_dict(), "canary_rng": self._rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts.load_state_dict(state)
        if "canary_rng" in state:
            s = state["canary_rng"]
            self._rng.setstate((s[0], tuple(s[1]), s[2]))


def _canary_id(i: str) -> str:
    return i if i.startswith(CANARY_PREFIX) else CANARY_PREFIX + i


def canary_blind(score_fn):
    """``score_fn`` whose canary rows keep their judgement (status and components, for the monitor)
    but carry no reward (NaN): a canary never trains."""

    def scored(examples: list[Example], completions: list[str]) -> list[Scored]:
        out = score_fn(examples, completions)
        return [s.model_copy(update={"total": math.nan}) if is_canary(ex) else s for ex, s in zip(examples, out)]

    return scored
