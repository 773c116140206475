"""The ``math.answer`` reward: 1.0 when the completion's final answer equals the gold, else 0.0; and
``math.answer_strict``, its strict variant for re-verification: only an answer in ``\boxed{}`` or an
``<answer>`` block counts (no ``####``, no "the answer is", no last number).

The gold lives in ``example.gold``: ``answer`` (the gold answer text, plain or LaTeX) and the
options the task put there (``last_number_fallback``). Runs inside a scoring worker, under the
service's hard deadline; nothing here uses signals.
"""

from __future__ import annotations

from grpo_env.types import Example, Outcome
from grpo_env_math.check import STRICT_METHODS, check_answer


def answer_reward(completion: str, example: Example) -> Outcome:
    """Score one completion against the example's gold answer."""
    gold = example.gold
    answer = gold.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        return Outcome.not_applicable("the example has no gold 'answer'")
    fallback = bool(gold.get("last_number_fallback", True))
    return check_answer(completion, answer, last_number_fallback=fallback)


def strict_answer_reward(completion: str, example: Example) -> Outcome:
    """``math.answer`` with strict extraction only: an answer found any other way is ``unparsable``."""
    out = answer_reward(completion, example.model_copy(update={"gold": {**example.gold, "last_number_fallback": False}}))
    if out.details.get("method") not in (None, *STRICT_METHODS) and not out.status.excluded:
        return Outcome.unparsable(reason="no answer in \\boxed{} or <answer> (strict extraction)", **out.details)
    return out
