"""One grpo-env task per reasoning-gym dataset: ``rg.<dataset>``, scored by ``rg.score``.

An example's prompt is the dataset's question (after a reasoning-gym system prompt asking for
``<answer>`` tags, by default); its gold is ``{"dataset", "options", "entry"}``, everything the
scorer needs to rebuild the dataset and judge the entry in a worker process or from a score file.
"""

from __future__ import annotations

import itertools
from functools import cache, partial
from typing import Any, Iterator

from grpo_env import Example, Fixture, Task

from grpo_env_reasoning_gym import conformance, datasets
from grpo_env_reasoning_gym.options import DOCS, options_model, stored
from grpo_env_reasoning_gym.reward import NAME as REWARD


def examples(name: str, split: str, seed: int, options: dict[str, Any]) -> Iterator[Example]:
    """Endless and deterministic for (split, seed, options): the splits use unrelated seeds."""
    config = datasets.config_kwargs(name, options)
    kept = stored(name, options)
    system = datasets.system_prompt(options.get("system_prompt"))
    head = [{"role": "system", "content": system}] if system else []
    for ex_id, entry in datasets.entries(name, config, split, seed):
        prompt = head + [{"role": "user", "content": entry["question"]}]
        yield Example(id=ex_id, prompt=prompt, gold={"dataset": name, "options": kept, "entry": entry})


def from_row(name: str, row: dict[str, Any], options: dict[str, Any]) -> Example:
    """A score-file row: ``id``, ``prompt``, ``entry`` (and optionally ``options``) as ``examples`` stores them."""
    gold = {k: v for k, v in row.items() if k not in ("id", "prompt", "completion", "task")}
    gold.setdefault("dataset", name)
    gold.setdefault("options", stored(name, options))
    return Example(id=str(row.get("id", "")), prompt=row.get("prompt", ""), gold=gold)


def fixtures(name: str) -> list[Fixture]:
    """The conformance probes on the first example as fixtures: the gold answer gets full marks,
    junk gets zero, no answer block is unparsable."""
    return [Fixture(example=ex, completion=text, expect=expect, note=label)
            for ex, label, text, expect in conformance.probes(name)]


def summary(name: str) -> str:
    """The first line of the dataset class's docstring (the config's is often a generated signature)."""
    lines = (datasets.DATASETS[name][0].__doc__ or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def make_task(name: str) -> Task:
    return Task(
        name=datasets.PREFIX + name,
        description=f"reasoning-gym {name}" + (f": {summary(name)}" if summary(name) else ""),
        rewards={REWARD: 1.0},
        examples=partial(examples, name),
        from_row=partial(from_row, name),
        fixtures=partial(fixtures, name),
        options=options_model(name),
        flagged=partial(flags, name),
    )


def flags(name: str, options: dict[str, Any] | None = None) -> list[str]:
    """Why this dataset's scorer is untrustworthy with ``options``: the conformance check's reasons (the
    committed record's when it was made by the installed reasoning-gym under the current rules, else
    computed now, cached), and an opt-in to upstream's lenient or partial credit, which pays hedges."""
    from grpo_env_reasoning_gym.conformance import verdict

    v = verdict(name)
    out = list(v.reasons) if v.flagged else []
    opt = datasets.exact_option(name)
    if opt and (options or {}).get(opt):
        out.append(f"{opt} = true restores upstream's partial credit, which pays answers that commit to nothing "
                   f"(hedges, echoes): see {DOCS}")
    return out


@cache
def first_example(name: str) -> Example:
    """The dataset's first test example with default options (the fixtures' and probes' example)."""
    opts = options_model(name).model_construct().model_dump()  # no validation: no flag refusal here
    return next(itertools.islice(examples(name, "test", 0, opts), 1))
