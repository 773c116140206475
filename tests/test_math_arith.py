"""The procedural math tasks and the math.answer reward through the installed plugin."""

from __future__ import annotations

import importlib.metadata

import pytest
from grpo_env_math import register_rewards, register_tasks

from grpo_env.testing import collect
from grpo_env.types import Status


TASKS = collect(register_tasks)
REWARDS = collect(register_rewards)


def test_entry_point_is_installed():
    eps = {e.name: e for e in importlib.metadata.entry_points(group="grpo_env")}
    assert eps["math"].value == "grpo_env_math"
    assert eps["math"].load().register_rewards is register_rewards


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_arith_deterministic_and_disjoint(difficulty):
    task = TASKS["math_arith"]
    opts = task.parse_options({"difficulty": difficulty, "count": 200})
    a = [e.model_dump() for e in task.examples("train", 3, opts)]
    b = [e.model_dump() for e in task.examples("train", 3, opts)]
    assert a == b and len(a) > 50
    other = {e["id"] for e in (x.model_dump() for x in task.examples("train", 4, opts))}
    assert other != {e["id"] for e in a}
    test = {e.prompt[0].content for e in task.examples("test", 3, opts)}
    assert test and not test & {e["prompt"][0]["content"] for e in a}


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_arith_gold_answers_score_full(difficulty):
    # the golds themselves are recomputed independently in test_math_tasks.py
    task, reward = TASKS["math_arith"], REWARDS["math.answer"]
    for ex in task.examples("test", 0, task.parse_options({"difficulty": difficulty, "count": 30})):
        value = int(ex.gold["answer"])
        assert reward.fn(f"... so \\boxed{{{value}}}", ex).status is Status.CORRECT
        assert reward.fn(f"The answer is {value}.", ex).status is Status.CORRECT
        assert reward.fn(f"\\boxed{{{value + 1}}}", ex).status is Status.INCORRECT


def test_arith_options_are_validated():
    with pytest.raises(ValueError):
        TASKS["math_arith"].parse_options({"difficulty": 9})
    with pytest.raises(ValueError):
        TASKS["math_arith"].parse_options({"level": 1})
