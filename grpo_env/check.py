"""`grpo-env check`: run a task's own fixtures through the real scoring service, twice.

A task passes when it ships fixtures, every fixture gets the judgement it declares, two runs give
identical outcomes, and its example streams are deterministic for a (split, seed).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from grpo_env.plugins import Registry
from grpo_env.scoring import ScoringService
from grpo_env.types import Fixture, Scored, Status, Task

SAMPLE = 8  # examples drawn per split for the determinism check


@dataclass
class TaskCheck:
    task: str
    fixtures: int = 0
    passed: int = 0
    deterministic: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.fixtures > 0 and self.passed == self.fixtures and self.deterministic


def judge(fixture: Fixture, scored: Scored, task: Task, registry: Registry) -> str | None:
    """Why ``scored`` does not meet the fixture's expectation, or None when it does."""
    comps = scored.components
    if fixture.expect == "full":
        short = {n: o for n, o in comps.items() if o.score != registry.rewards[n].max_score}
        if scored.status is Status.ERROR or short:
            got = ", ".join(f"{n}={o.score:g} ({o.status})" for n, o in (short or comps).items())
            return f"expected full marks, got {got}"
        return None
    name = fixture.reward
    if name is not None and name not in comps:
        return f"fixture names reward {name!r}, which task {task.name!r} does not use"
    if fixture.expect == "zero":
        value = comps[name].score if name else scored.total
        if math.isnan(value) or value != 0:
            return f"expected {name or 'total'} = 0, got {value:g} ({(comps[name] if name else scored).status})"
        return None
    want = Status(fixture.expect)
    got = comps[name or next(iter(task.rewards))]
    if got.status is not want:
        return f"expected status {want} from {name or next(iter(task.rewards))}, got {got.status} {got.details}"
    return None


def _stream_sample(task: Task, split: str, seed: int) -> list[str]:
    opts = task.parse_options({})
    return [ex.model_dump_json() for ex in itertools.islice(task.examples(split, seed, opts), SAMPLE)]


def check_task(task: Task, registry: Registry, service: ScoringService) -> TaskCheck:
    result = TaskCheck(task=task.name)
    try:
        fixtures = task.get_fixtures()
    except Exception as e:
        result.problems.append(f"fixtures could not be built: {type(e).__name__}: {e}")
        return result
    result.fixtures = len(fixtures)
    if not fixtures:
        result.problems.append("the task ships no fixtures")
    weights = [task.rewards] * len(fixtures)
    examples = [f.example.model_copy(update={"task": task.name}) for f in fixtures]
    completions = [f.completion for f in fixtures]
    first = service.score_examples(weights, examples, completions)
    second = service.score_examples(weights, examples, completions)
    for i, (fixture, a, b) in enumerate(zip(fixtures, first, second)):
        why = judge(fixture, a, task, registry)
        if why is None:
            result.passed += 1
        else:
            label = fixture.note or fixture.example.id
            result.problems.append(f"fixture {i} ({label}): {why}")
        if a.model_dump_json() != b.model_dump_json():
            result.deterministic = False
            result.problems.append(f"fixture {i}: two runs differ")
    for split in task.splits:
        try:
            if _stream_sample(task, split, 0) != _stream_sample(task, split, 0):
                result.deterministic = False
                result.problems.append(f"examples({split!r}, seed=0) differ between two calls")
        except Exception as e:
            result.problems.append(f"examples({split!r}, seed=0) failed: {type(e).__name__}: {e}")
    return result
