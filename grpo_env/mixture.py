"""The task-mix sampler: draws a task by the recipe's weights, then that task's next example.

Deterministic for a seed: the task choice uses the sampler's own ``random.Random`` (never the
global one), and each task's stream is ``task.examples(split, seed, options)``. A finite stream is
cycled, with a new seed per pass (epoch). ``state_dict()`` is the RNG state plus, per task, the
(epoch, index) reached; ``load_state_dict()`` rebuilds each stream and skips to that index, so a
resumed run draws exactly the examples an uninterrupted one would.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

from grpo_env.types import Example, Message, Task


class MixtureError(ValueError):
    """A task in the mix cannot produce examples."""


@dataclass
class MixEntry:
    task: Task
    weight: float = 1.0  # relative sampling weight (normalised over the mix)
    options: dict[str, Any] = field(default_factory=dict)  # validated task options
    rewards: dict[str, float] | None = None  # reward components and weights (None: the task's own)
    prefill: str = ""  # text the assistant's turn starts with ("": none)

    @property
    def reward_weights(self) -> dict[str, float]:
        return dict(self.rewards if self.rewards is not None else self.task.rewards)

    @property
    def components(self) -> dict[str, float]:
        """The registered reward components among ``reward_weights`` (an environment's own name is
        its outcome, not a reward)."""
        return {k: w for k, w in self.reward_weights.items() if not (self.is_environment and k == self.task.name)}

    @property
    def is_environment(self) -> bool:
        return hasattr(self.task, "make")

    def prepare(self, ex: Example) -> Example:
        """The example as the model sees it: tagged with its task and, with a prefill, its prompt ending
        in an assistant message that the model continues (replacing one the task put there: the
        recipe decides). Carrying the prefill in the prompt keeps it on the prompt side of every
        tokenisation and tells the scoring glue what to put before the completion
        (:func:`grpo_env.engine.sampling.prefill_of`)."""
        update: dict[str, Any] = {}
        if ex.task != self.task.name:
            update["task"] = self.task.name
        tools = getattr(self.task, "tool_specs", lambda: [])()  # an environment's tools
        if tools and ex.tools != tools:
            update["tools"] = tools
        if self.prefill:
            head = ex.prompt[:-1] if ex.prompt[-1].role == "assistant" and len(ex.prompt) > 1 else ex.prompt
            update["prompt"] = [*head, Message(role="assistant", content=self.prefill)]
        return ex.model_copy(update=update) if update else ex


def epoch_seed(seed: int, entry: int, epoch: int) -> int:
    """The stream seed of mix entry ``entry`` on pass ``epoch`` (a fresh order every pass)."""
    return seed + 1_000_003 * epoch + 7_919 * entry


class TaskMixture:
    """An endless, seeded stream of examples drawn from several tasks by weight."""

    def __init__(self, entries: list[MixEntry], seed: int = 0, split: str = "train"):
        if not entries:
            raise MixtureError("the task mix is empty")
        for e in entries:
            if not e.weight > 0:
                raise MixtureError(f"task {e.task.name!r}: weight must be > 0, got {e.weight}")
            if split not in e.task.splits:
                raise MixtureError(f"task {e.task.name!r} has no split {split!r} (it has {list(e.task.splits)})")
        self.entries = entries
        self.seed = seed
        self.split = split
        total = sum(e.weight for e in entries)
        self._cum = list(itertools.accumulate(e.weight / total for e in entries))
        self._rng = random.Random(seed)
        self._pos = [(0, 0)] * len(entries)  # (epoch, index of the next example) per entry
        self._iters: list[Iterator[Example] | None] = [None] * len(entries)

    def _open(self, i: int, epoch: int, skip: int = 0) -> Iterator[Example]:
        e = self.entries[i]
        it = iter(e.task.examples(self.split, epoch_seed(self.seed, i, epoch), dict(e.options)))
        for _ in range(skip):
            if next(it, None) is None:
                raise MixtureError(f"task {e.task.name!r}: its stream is shorter than the saved position {skip}")
        return it

    def _next_of(self, i: int) -> Example:
        epoch, index = self._pos[i]
        if self._iters[i] is None:
            self._iters[i] = self._open(i, epoch, index)
        ex = next(self._iters[i], None)  # type: ignore[arg-type]
        if ex is None:  # end of a finite stream: next pass, new seed
            if index == 0:
                raise MixtureError(f"task {self.entries[i].task.name!r} yields no {self.split!r} examples")
            epoch, index = epoch + 1, 0
            self._iters[i] = self._open(i, epoch)
            ex = next(self._iters[i], None)  # type: ignore[arg-type]
            if ex is None:
                raise MixtureError(f"task {self.entries[i].task.name!r} yields no {self.split!r} examples")
        self._pos[i] = (epoch, index + 1)
        return self.entries[i].prepare(ex)

    def pick(self) -> int:
        """The index of the next task, drawn by weight."""
        return min(bisect.bisect_right(self._cum, self._rng.random()), len(self.entries) - 1)

    def sample(self, n: int) -> list[Example]:
        return [self._next_of(self.pick()) for _ in range(n)]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.getstate(), "positions": list(self._pos), "seed": self.seed, "split": self.split}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["positions"]) != len(self.entries):
            raise MixtureError(f"saved mix has {len(state['positions'])} tasks, this one {len(self.entries)}")
        self._rng.setstate(_as_rng_state(state["rng"]))
        self._pos = [tuple(p) for p in state["positions"]]  # type: ignore[misc]
        self._iters = [None] * len(self.entries)  # reopened lazily at the saved positions


def _as_rng_state(s: Any) -> tuple:
    """random.Random state back from a (possibly list-ified) saved copy."""
    return (s[0], tuple(s[1]), s[2])
