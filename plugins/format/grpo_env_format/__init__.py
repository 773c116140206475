"""grpo-env format plugin: rewards for the layout of a completion, not its content.

Rewards (all under the ``format.`` prefix): ``think_answer_strict``, ``think_answer_soft``,
``answer_tag``, ``tag_count``, ``overlong_penalty``, ``repetition_penalty``; and one demo task,
``format_demo``. Every reward scans the text in linear time (``str.find``/``str.count``, no regex).
"""

from __future__ import annotations

from grpo_env import Reward, Status, hookimpl

from grpo_env_format import penalties, structure
from grpo_env_format.demo import TASK

REWARDS = [
    Reward(
        name="format.think_answer_strict",
        fn=structure.think_answer_strict,
        description="exactly one non-empty <think> block then one non-empty <answer> block, only whitespace around",
        statuses=(Status.CORRECT, Status.INCORRECT),
        min_score=0.0,
    ),
    Reward(
        name="format.think_answer_soft",
        fn=structure.think_answer_soft,
        description="a non-empty <think> block followed somewhere by a non-empty <answer> block",
        statuses=(Status.CORRECT, Status.INCORRECT),
        min_score=0.0,
    ),
    Reward(
        name="format.answer_tag",
        fn=structure.answer_tag,
        description="exactly one non-empty <answer> block, text around allowed",
        statuses=(Status.CORRECT, Status.INCORRECT),
        min_score=0.0,
    ),
    Reward(
        name="format.boxed",
        fn=structure.boxed_once,
        description="exactly one \\boxed{} with closed braces and a non-blank content, text around allowed (the "
        "form math prompts ask for; a format component, not a check of the answer)",
        statuses=(Status.CORRECT, Status.INCORRECT),
        min_score=0.0,
    ),
    Reward(
        name="format.tag_count",
        fn=structure.tag_count,
        description="0.25 for each of <think>, </think>, <answer>, </answer> occurring exactly once",
        statuses=(Status.CORRECT, Status.PARTIAL, Status.INCORRECT),
        min_score=0.0,
    ),
    Reward(
        name="format.overlong_penalty",
        fn=penalties.overlong_penalty,
        description="DAPO soft overlong punishment on length in characters (gold.format.max_len, overlong_buffer)",
        max_score=0.0,
        min_score=-1.0,
        gold_keys={
            "format.max_len": "length limit in characters, at least 1 (default 2048); -1 at and beyond it",
            "format.overlong_buffer": "characters before max_len over which the penalty falls from 0 to -1 (default 512)",
        },
        statuses=(Status.CORRECT, Status.PARTIAL, Status.INCORRECT, Status.NOT_APPLICABLE),
    ),
    Reward(
        name="format.repetition_penalty",
        fn=penalties.repetition_penalty,
        description="minus the fraction of repeated word n-grams (gold.format.ngram, default 3)",
        max_score=0.0,
        min_score=-1.0,
        gold_keys={"format.ngram": "n of the word n-grams compared, at least 1 (default 3)"},
        statuses=(Status.CORRECT, Status.PARTIAL, Status.NOT_APPLICABLE),
    ),
]


@hookimpl
def register_rewards(register):
    for reward in REWARDS:
        register(reward)


@hookimpl
def register_tasks(register):
    register(TASK)
