"""The reward boundary: call a reward safely, and combine component outcomes into one judgement."""

from __future__ import annotations

import math
import traceback
from typing import Mapping

from grpo_env.types import Example, Outcome, Reward, Scored, Status


def call_reward(reward: Reward, completion: str, example: Example) -> Outcome:
    """Run one reward; whatever goes wrong inside becomes an ``error`` outcome naming the reward.

    Exceptions, a wrong return type and a non-finite score are infrastructure failures (the
    reward's fault, not the model's), so they are reported, never turned into a 0 score.
    """
    try:
        out = reward.fn(completion, example)
    except Exception as e:
        tb = traceback.format_exc(limit=-3)
        return Outcome.error(f"reward {reward.name!r} raised {type(e).__name__}: {e}", reward=reward.name, traceback=tb)
    if not isinstance(out, Outcome):
        return Outcome.error(
            f"reward {reward.name!r} returned {type(out).__name__}, expected grpo_env.Outcome", reward=reward.name
        )
    return out


def combine(components: Mapping[str, Outcome], weights: Mapping[str, float]) -> Scored:
    """The weighted total of a completion's component outcomes.

    - any ``error`` component: total NaN, status ``error`` (no signal rather than a wrong one);
    - ``not_applicable`` components are left out of the sum; all of them: total NaN;
    - otherwise ``sum(weight * score)``; the status is that of the first component (the task's
      primary reward), or of the first applicable one when the primary is not applicable.
    """
    outcomes = [(name, components[name]) for name in weights]
    errors = [o for _, o in outcomes if o.status is Status.ERROR]
    if errors:
        return Scored(total=math.nan, status=Status.ERROR, components=dict(outcomes))
    applicable = [(n, o) for n, o in outcomes if o.status is not Status.NOT_APPLICABLE]
    if not applicable:
        return Scored(total=math.nan, status=Status.NOT_APPLICABLE, components=dict(outcomes))
    total = sum(weights[n] * o.score for n, o in applicable)
    return Scored(total=total, status=applicable[0][1].status, components=dict(outcomes))
