"""grpo-env reasoning-gym plugin: every reasoning-gym dataset as a task ``rg.<dataset>``.

One reward, ``rg.score``: the dataset's own scorer on the completion's last ``<answer>`` block,
as a typed outcome; by exact match (only upstream's full marks count) for the datasets whose
partial credit answers that commit to nothing can earn, and never on an answer the scorer would
run as code. Datasets whose scorer fails the conformance check (docs/reasoning_gym.md) are
refused in training unless the recipe's task entry sets ``allow_flagged = true`` (``Task.flagged``).
"""

from __future__ import annotations

from grpo_env import Reward, Status, hookimpl

from grpo_env_reasoning_gym.datasets import dataset_names
from grpo_env_reasoning_gym.reward import NAME, rg_score

REWARD = Reward(
    name=NAME,
    fn=rg_score,
    # docs/rewards.md is generated from this text (tests/test_rewards_docs.py): the exact-match
    # default and the code guard are described in docs/reasoning_gym.md
    description="reasoning-gym's own scorer for the example's dataset, on the last <answer> block: 1 correct, "
    "0 incorrect, in between partial; a scorer that raises or returns a non-number is error, naming the dataset",
    timeout=10.0,
    min_score=0.0,
    gold_keys={
        "dataset": "the reasoning-gym dataset's name (missing: not_applicable)",
        "options": "the options the example was generated with (the scorer's dataset is rebuilt from them)",
        "entry": "reasoning-gym's entry: question, answer, metadata (what score_answer reads)",
    },
    statuses=(Status.CORRECT, Status.PARTIAL, Status.INCORRECT, Status.UNPARSABLE, Status.REJECTED, Status.ERROR,
              Status.NOT_APPLICABLE),
)


@hookimpl
def register_rewards(register):
    register(REWARD)


@hookimpl
def register_tasks(register):
    from grpo_env_reasoning_gym.tasks import make_task

    for name in dataset_names():
        register(make_task(name))
