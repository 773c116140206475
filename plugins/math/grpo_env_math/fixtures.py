"""Known completions per task for ``grpo-env check``: gold ones score full, wrong ones zero,
malformed ones get a typed status."""

from __future__ import annotations

from grpo_env.types import Example, Fixture, Status


def standard_fixtures(example: Example, right: str, wrong: str) -> list[Fixture]:
    """The usual set for one example whose gold answer reads ``right`` (``wrong`` is not equal)."""
    return [
        Fixture(example=example, completion=f"Working it out step by step.\n\\boxed{{{right}}}", expect="full",
                note="boxed gold answer"),
        Fixture(example=example, completion=f"<think>compute</think><answer>{right}</answer>", expect="full",
                note="answer block"),
        Fixture(example=example, completion=f"So the final answer is {right}.", expect="full", note="phrase"),
        Fixture(example=example, completion=f"\\boxed{{{wrong}}}", expect="zero", note="wrong value"),
        Fixture(example=example, completion=f"It is either \\boxed{{{right} \\text{{ or }} {wrong}}}", expect="zero",
                note="a hedge between two answers is wrong"),
        Fixture(example=example, completion="I do not know.", expect=Status.UNPARSABLE, reward="math.answer",
                note="no answer at all"),
        Fixture(example=example, completion="\\boxed{" + "9" * 5000 + "}", expect=Status.REJECTED,
                reward="math.answer", note="absurdly long number"),
    ]
