"""The ``math.answer`` reward: 1.0 when the completion's final answer equals the gold, else 0.0.

The gold lives in ``example.gold``: ``answer`` (the gold answer text, plain or LaTeX) and the
options the task put there (``last_number_fallback``). Runs inside a scoring worker, under the
service's hard deadline; nothing here uses signals.
"""

from __future__ import annotations

from grpo_env.types import Example, Outcome
from grpo_env_math.check import check_answer


def answer_reward(completion: str, example: Example) -> Outcome:
    """Score one completion against the example's gold answer."""
    gold = example.gold
    answer = gold.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        return Outcome.not_applicable("the example has no gold 'answer'")
    fallback = bool(gold.get("last_number_fallback", True))
    return check_answer(completion, answer, last_number_fallback=fallback)
