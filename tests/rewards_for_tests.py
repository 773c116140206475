"""Module-level reward functions used by the core's tests (scoring workers are forked, so any
function importable here works)."""

import math
import os
import time

from grpo_env import Outcome, Status


def exact(completion, example):
    if not completion.strip():
        return Outcome.unparsable(reason="empty")
    return Outcome.correct() if completion.strip() == example.gold["answer"] else Outcome.incorrect()


def hang(completion, example):
    while True:
        pass


def sleep_then_answer(completion, example):
    time.sleep(float(completion))
    return Outcome.correct()


def raises(completion, example):
    raise KeyError("gold field missing")


def returns_float(completion, example):
    return 1.0


def nan_score(completion, example):
    return Outcome(score=math.nan, status=Status.CORRECT)


def exits(completion, example):
    os._exit(7)


def length_penalty(completion, example):
    return Outcome.partial(-min(1.0, len(completion) / 100)) if completion else Outcome.correct(0.0)


def unpicklable_details(completion, example):
    return Outcome.correct(handle=open(os.devnull))


# a score_fn and prompt stream for engine runs without the scoring service (generator tests)


def vowel_mixture():
    """A one-task mix of 50 short prompts per pass."""
    from grpo_env.mixture import MixEntry, TaskMixture
    from grpo_env.types import Example, Task

    def examples(split, seed, options):
        for i in range(50):
            yield Example(id=f"{seed}-{i}", prompt=f"say {(seed + i) % 10}")

    return TaskMixture([MixEntry(Task(name="vowels", rewards={"vowels": 1.0}, examples=examples))], seed=7)


def vowel_score(exs, comps):
    """score_fn: a quarter per vowel, up to 1."""
    from grpo_env.types import Scored

    outs = [Outcome.partial(min(sum(ch in "aeiou" for ch in c) / 4, 1.0)) for c in comps]
    return [Scored(total=o.score, status=o.status, components={"vowels": o}) for o in outs]
