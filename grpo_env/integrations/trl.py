"""A recipe's tasks and rewards for TRL's ``GRPOTrainer``.

``recipe_dataset(recipe, n)`` draws ``n`` prompts from the recipe's task mix (its weights and seed)
as a ``datasets.Dataset`` for ``train_dataset``: a conversational ``prompt`` column plus ``task``,
``id`` and ``gold`` (the gold data as JSON, since tasks' golds differ in shape).

``TRLRewards(recipe)`` gives ``reward_funcs``: one function per reward component, named after it,
so TRL logs ``rewards/<component>/mean``. Every function of a batch shares one scoring pass through
the scoring service (deadlines, sandbox, typed outcomes), combined as ``grpo-env train`` combines
them; each returns its component's weighted score for the completions of tasks that use it.
``None`` is what TRL leaves out, so a completion with an ``error`` component, or whose components
are all ``not_applicable``, gets ``None`` from every function and is excluded, never scored 0; a
single ``not_applicable`` component is ``None`` and the others still count. Status counts go to
TRL's logs (``grpo_env/status/<status>``) and accumulate in ``counts``.

Environments (multi-turn episodes) are refused by both, naming them (:class:`EnvironmentRefused`):
these score single completions and play no episodes. Environments that fit TRL's own tool loop
(tools only, no feedback turns: ``math_python``) train in TRL through :class:`TRLEnvironments`
(:mod:`grpo_env.integrations.trl_env`: its ``environment_factory`` runs their tools in our episode
processes); the others with ``grpo-env train``.

    rewards = TRLRewards("tasks/example.toml")
    trainer = GRPOTrainer(model=..., reward_funcs=rewards.funcs, args=GRPOConfig(...),
                          train_dataset=recipe_dataset("tasks/example.toml", 512))
    trainer.train(); rewards.close()
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from grpo_env.environment import is_environment
from grpo_env.integrations._common import EnvironmentRefused, entries_of, recipe_of, refuse_environments, rewards_of  # noqa: F401
from grpo_env.integrations.trl_env import TRLEnvironments, refuse_unfit, unfit_reason  # noqa: F401
from grpo_env.mixture import TaskMixture
from grpo_env.recipe import Recipe
from grpo_env.types import Example, Scored, Task

RewardFunc = Callable[..., list[float | None]]


def refuse_for_trl(tasks: list[Task]) -> None:
    """:func:`refuse_environments` for TRL, saying which refused environments TRLEnvironments takes."""
    try:
        refuse_environments(tasks, "TRL")
    except EnvironmentRefused as e:
        fit = [t.name for t in tasks if is_environment(t) and unfit_reason(t) is None]  # type: ignore[arg-type]
        one = len(fit) == 1
        if fit:
            hint = (f"{', '.join(repr(n) for n in fit)} {'fits' if one else 'fit'} TRL's own tool loop: train "
                    f"{'it' if one else 'them'} with TRLEnvironments (its environment_factory and reward funcs), "
                    f"in a run of {'its' if one else 'their'} own")
        else:
            hint = ("TRLEnvironments bridges only tool environments without feedback turns (e.g. math_python), "
                    "through TRL's environment_factory")
        raise EnvironmentRefused(f"{e}. {hint}") from None


def example_row(example: Example, system_prompt: str | None = None) -> dict[str, Any]:
    """One dataset row: the prompt as chat messages, and what scoring needs to rebuild the example."""
    messages = [{"role": m.role, "content": m.content} for m in example.prompt]
    if system_prompt is not None and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return {"prompt": messages, "task": example.task, "id": example.id, "gold": json.dumps(example.gold)}


def recipe_dataset(recipe: Recipe | str | Path, n: int, split: str | None = None):
    """``n`` prompts drawn from the recipe's task mix, as TRL's ``train_dataset``."""
    import datasets

    rec = recipe_of(recipe)
    entries = entries_of(rec)
    refuse_for_trl([e.task for e in entries])
    mix = TaskMixture(entries, seed=rec.seed, split=split or rec.train.split)
    rows = [example_row(ex, rec.train.system_prompt) for ex in mix.sample(n)]
    return datasets.Dataset.from_list(rows)


def completion_text(completion: Any) -> str:
    """TRL hands a completion as text, or (conversational data) as a list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    raise TypeError(f"a completion must be text or a list of messages, got {type(completion).__name__}")


def prefill_text(prompt: Any) -> str:
    """The assistant turn's prefill: the content of a final assistant message of a chat prompt, else ""."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict) and prompt[-1].get("role") == "assistant":
        return str(prompt[-1].get("content", ""))
    return ""


class TRLRewards:
    """TRL ``reward_funcs`` for a recipe's tasks, scored by one scoring service. Close it when done."""

    def __init__(self, recipe: Recipe | str | Path, workers: int | None = None):
        from grpo_env.scoring import ScoringService

        rec = recipe_of(recipe)
        entries = entries_of(rec)
        refuse_for_trl([e.task for e in entries])
        self.weights = {e.task.name: e.reward_weights for e in entries}
        self.service = ScoringService(rewards_of(entries), workers=workers or rec.scoring.workers,
                                      grace=rec.scoring.grace)
        self.counts: Counter[str] = Counter()  # completions per status (the task's primary reward), over the run
        self._last: tuple[tuple, list[Scored]] | None = None  # the batch every function of a step shares
        components = dict.fromkeys(name for w in self.weights.values() for name in w)
        self.funcs: list[RewardFunc] = [self._func(name) for name in components]

    def _func(self, component: str) -> RewardFunc:
        def reward(prompts=None, completions=(), task=(), id=(), gold=(), log_metric=None, **_: Any):
            scored = self.score(list(completions), list(task), list(id), list(gold), log_metric, prompts)
            return [self._value(s, t, component) for s, t in zip(scored, task)]

        reward.__name__ = component
        reward.__qualname__ = component
        return reward

    def _value(self, scored: Scored, task: str, component: str) -> float | None:
        weight = self.weights[task].get(component)
        if weight is None or math.isnan(scored.total):  # not this task's component, or no signal at all
            return None
        outcome = scored.components[component]
        return None if outcome.status.excluded else weight * outcome.score

    def score(self, completions: list, tasks: list[str], ids: list[str], golds: list[str],
              log_metric: Callable[[str, float], None] | None = None, prompts: list | None = None) -> list[Scored]:
        """Score a batch once; the other component functions of the same batch reuse the result.

        Rewards judge the assistant's whole turn, as in ``grpo-env train``: a prompt ending with an
        assistant message (a prefill such as ``<think>``) has it put before the completion."""
        prefills = [prefill_text(p) for p in prompts] if prompts is not None else [""] * len(completions)
        texts = [pre + completion_text(c) for pre, c in zip(prefills, completions)]
        key = (tuple(texts), tuple(tasks), tuple(ids), tuple(golds))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        unknown = sorted(set(tasks) - set(self.weights))
        if unknown:
            raise ValueError(f"rows of task(s) {unknown} are not in this recipe (its tasks: {sorted(self.weights)})")
        examples = [Example(id=i, prompt=[{"role": "user", "content": "(scored for TRL)"}], gold=json.loads(g), task=t)
                    for t, i, g in zip(tasks, ids, golds)]
        scored = self.service.score_examples([self.weights[t] for t in tasks], examples, texts)
        batch = Counter(str(s.status) for s in scored)
        self.counts.update(batch)
        if log_metric is not None:  # every status seen so far, 0 when absent, so TRL's step means are true
            for status in sorted(self.counts):
                log_metric(f"grpo_env/status/{status}", float(batch.get(status, 0)))
        self._last = (key, scored)
        return scored

    def close(self) -> None:
        self.service.close()

    def __enter__(self) -> "TRLRewards":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
