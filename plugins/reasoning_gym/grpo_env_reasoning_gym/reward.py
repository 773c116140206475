"""``rg.score``: a reasoning-gym dataset's own scorer, its float turned into a typed outcome.

The answer is the last ``<answer>`` block (reasoning-gym's convention); none is ``unparsable``,
and one over ``MAX_ANSWER_CHARS`` is ``rejected`` before any scorer sees it (upstream scorers are
not linear: several parse the answer with sympy).
The scorer's value must be a real number in [0, 1]: 1 is ``correct``, 0 ``incorrect``, anything
between ``partial``. A scorer that raises, or returns anything else (NaN, out of range, not a
number), is reported as ``error`` naming the dataset: the item is left out of training, never a
silent 0.

The substring-credit family (``datasets.uses_substring_rule``): scorers that give ``len(gold)/len(answer)``
whenever the gold appears anywhere in the answer, so that a hedge such as ``YesNo`` earns about half
marks on every example. Their answers are scored by **exact match** by default: only upstream's full
marks count (the answer equals the gold, as that scorer normalises it), anything less is
``incorrect``, 0, with upstream's value kept in the details. The task option
``lenient_substring = true`` restores upstream's rule.
"""

from __future__ import annotations

import json
import math
import numbers
from functools import cache

from grpo_env import Example, Outcome, Status

from grpo_env_reasoning_gym import datasets
from grpo_env_reasoning_gym.extract import extract_answer
from grpo_env_reasoning_gym.guard import refusal
from grpo_env_reasoning_gym.options import fields_model

NAME = "rg.score"
MAX_ANSWER_CHARS = 20_000  # the longest gold answer of the 105 datasets is about 2,000 characters

@cache
def scorer_for(name: str, options_json: str):
    """The dataset instance whose ``score_answer`` judges entries made with these options (one per
    worker and config: some datasets take a second to build)."""
    opts = fields_model(name).model_validate(json.loads(options_json)).model_dump()
    return datasets.build(name, datasets.config_kwargs(name, opts), seed=0, size=1)


def rg_score(completion: str, example: Example) -> Outcome:
    gold = example.gold
    name, options, entry = gold.get("dataset"), gold.get("options", {}), gold.get("entry")
    if not isinstance(name, str) or not isinstance(entry, dict) or not isinstance(options, dict):
        return Outcome.not_applicable("gold needs 'dataset' (a name), 'options' and 'entry' (objects)")
    if name not in datasets.DATASETS:
        return Outcome.error(f"reasoning-gym has no dataset {name!r}", dataset=name)
    answer = extract_answer(completion)
    if answer is None:
        return Outcome.unparsable(reason="no <answer>...</answer> block", dataset=name)
    if len(answer) > MAX_ANSWER_CHARS:
        return Outcome.of(Status.REJECTED, 0.0, reason=f"answer over {MAX_ANSWER_CHARS} characters", dataset=name)
    refused = refusal(name, answer, entry.get("answer"))
    if refused is not None:
        return Outcome.of(Status.REJECTED, 0.0, reason=refused, dataset=name)
    try:
        dataset = scorer_for(name, json.dumps(options, sort_keys=True))
    except Exception as e:
        return Outcome.error(f"reasoning-gym dataset {name!r}: options rejected: {type(e).__name__}: {e}", dataset=name)
    try:
        value = dataset.score_answer(answer, entry)
    except Exception as e:
        return Outcome.error(f"reasoning-gym scorer of dataset {name!r} raised {type(e).__name__}: {e}", dataset=name)
    out = outcome_of(name, value)
    option = datasets.exact_option(name)
    if out.status is Status.PARTIAL and option is not None and options.get(option) is not True:
        return Outcome.incorrect(dataset=name, upstream_score=out.score,
                                 reason=f"exact match: not the gold answer (upstream's partial credit is off; the "
                                        f"task option {option} = true turns it on)")
    return out


def outcome_of(name: str, value: object) -> Outcome:
    """The typed outcome of a scorer's return value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return Outcome.error(f"reasoning-gym scorer of dataset {name!r} returned {type(value).__name__} "
                             f"{value!r:.80}, not a number", dataset=name)
    score = float(value)
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        return Outcome.error(f"reasoning-gym scorer of dataset {name!r} returned {score!r}, outside [0, 1]",
                             dataset=name)
    if score == 1.0:
        return Outcome.correct(dataset=name)
    if score == 0.0:
        return Outcome.incorrect(dataset=name)
    return Outcome.partial(score, dataset=name)
