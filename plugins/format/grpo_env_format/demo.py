"""``format_demo``: a tiny task whose prompts ask for the think/answer format, so that
``grpo-env check format_demo`` runs every format reward against known completions."""

from __future__ import annotations

import random
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field

from grpo_env import Example, Fixture, Status, Task

TASK_NAME = "format_demo"

INSTRUCTIONS = (
    "Think step by step inside <think>...</think>, then give only the final answer inside "
    "<answer>...</answer>, with nothing after it."
)

# Every format reward, so the check command exercises all of them; strict structure is primary.
REWARDS = {
    "format.think_answer_strict": 1.0,
    "format.think_answer_soft": 0.25,
    "format.answer_tag": 0.25,
    "format.tag_count": 0.25,
    "format.overlong_penalty": 1.0,
    "format.repetition_penalty": 0.5,
}


class DemoOptions(BaseModel):
    """Options a recipe may pass to ``format_demo``."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=64, ge=1, le=100_000, description="examples per split")
    max_len: int = Field(default=2048, ge=1, description="overlong penalty: length limit in characters")
    overlong_buffer: int = Field(default=512, ge=0, description="overlong penalty: soft zone before max_len")


def make_example(split: str, index: int, a: int, b: int, fmt: dict[str, Any] | None = None) -> Example:
    """One 'what is a + b?' prompt; the gold holds the sum and the overlong parameters."""
    return Example(
        id=f"{TASK_NAME}/{split}/{index}",
        prompt=f"What is {a} + {b}? {INSTRUCTIONS}",
        gold={"answer": str(a + b), "format": fmt or {}},
        task=TASK_NAME,
    )


def examples(split: str, seed: int, options: dict[str, Any]) -> Iterator[Example]:
    """``count`` deterministic addition prompts for ``split`` and ``seed``."""
    if split not in ("train", "test"):
        raise ValueError(f"task {TASK_NAME!r} has splits 'train' and 'test', not {split!r}")
    opts = DemoOptions.model_validate(options or {})
    fmt = {"max_len": opts.max_len, "overlong_buffer": opts.overlong_buffer}
    rng = random.Random(f"{TASK_NAME}:{split}:{seed}")
    for i in range(opts.count):
        yield make_example(split, i, rng.randint(1, 99), rng.randint(1, 99), fmt)


def fixtures() -> list[Fixture]:
    """Known completions for 3 + 4: well-formed ones score full marks, malformed ones their status."""
    ex = make_example("fixture", 0, 3, 4)
    tight = make_example("fixture", 1, 3, 4, {"max_len": 100, "overlong_buffer": 50})
    bad_cfg = make_example("fixture", 2, 3, 4, {"max_len": "long"})
    good = "<think>3 plus 4 is 7.</think>\n<answer>7</answer>"

    def fx(completion: str, expect: Any, reward: str | None = None, note: str = "", example: Example = ex) -> Fixture:
        return Fixture(example=example, completion=completion, expect=expect, reward=reward, note=note)

    strict, soft = "format.think_answer_strict", "format.think_answer_soft"
    return [
        fx(good, "full", note="canonical layout"),
        fx(f"\n  {good}\n", "full", note="whitespace around the blocks is fine"),
        fx("The answer is 7.", "zero", note="no tags at all"),
        fx(good + " Hope this helps!", Status.INCORRECT, strict, "text after </answer>"),
        fx("Sure! " + good, Status.CORRECT, soft, "soft allows text around the blocks"),
        fx("<think><think>3 plus 4</think></think><answer>7</answer>", Status.INCORRECT, strict, "nested think"),
        fx("<think>3 plus 4</think><answer>7</answer><answer>7</answer>", Status.INCORRECT, strict, "two answers"),
        fx("<think> </think><answer>7</answer>", Status.INCORRECT, strict, "empty think block"),
        fx("<think>3 plus 4 is 7.</think><answer>\u200b</answer>", "zero", "format.answer_tag", "zero-width answer"),
        fx("<think>\u3164</think><answer>\u2800\ufe0f</answer>", Status.INCORRECT, strict, "blank: Hangul, Braille"),
        fx("<th\u0456nk>3 plus 4</th\u0456nk><answer>7</answer>", Status.INCORRECT, strict, "Cyrillic i in think"),
        fx("<think>3 plus 4 is 7.<answer>7</answer>", Status.PARTIAL, "format.tag_count", "unterminated think"),
        fx(good + " " * 40, Status.PARTIAL, "format.overlong_penalty", "in the soft zone", tight),
        fx(good + " " * 80, Status.INCORRECT, "format.overlong_penalty", "past max_len", tight),
        fx(good, Status.NOT_APPLICABLE, "format.overlong_penalty", "bad max_len in gold", bad_cfg),
        fx(
            "<think>add them add them add them add them</think><answer>7</answer>",
            Status.PARTIAL,
            "format.repetition_penalty",
            "repeated trigrams",
        ),
    ]


TASK = Task(
    name=TASK_NAME,
    description="Addition prompts that ask for <think>...</think><answer>...</answer>; scores format only.",
    rewards=REWARDS,
    examples=examples,
    fixtures=fixtures,
    options=DemoOptions,
)
