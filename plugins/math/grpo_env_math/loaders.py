"""GSM8K- and MATH-format rows to examples, and the data-set task's ``examples``.

A GSM8K row has ``question`` and ``answer`` whose tail is ``#### 18``; a MATH row has ``problem``
and ``solution`` holding a ``\\boxed{}`` answer. Rows scored by ``grpo-env score`` may instead carry
a plain ``answer`` (and a ``prompt``). Gold answers are parsed here, once: an unparsable gold is
marked in ``gold["gold_error"]`` (the reward then says ``not_applicable``) and counted.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grpo_env.types import Example, Message
from grpo_env_math.check import gold_problem
from grpo_env_math.extract import last_boxed
from grpo_env_math.prompts import math_prompt

log = logging.getLogger(__name__)

# the offline sets this project ships, next to the repository's tasks/ (editable install)
DATA_DIR = Path(__file__).resolve().parents[3] / "tasks" / "data" / "math"
BUILTIN = {"gsm8k-mini": DATA_DIR / "gsm8k_mini", "math-mini": DATA_DIR / "math_mini"}


class GoldError(ValueError):
    """A row has no usable gold answer field at all."""


def gold_answer_of(row: dict[str, Any]) -> str:
    """The gold answer text of a GSM8K-, MATH- or plain-format row."""
    answer = row.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return str(answer)
    if isinstance(answer, str) and answer.strip():
        if "####" in answer:
            return answer.rsplit("####", 1)[1].strip()
        boxed = last_boxed(answer) if "\\boxed" in answer or "\\fbox" in answer else None
        return boxed if boxed is not None else answer.strip()
    solution = row.get("solution")
    if isinstance(solution, str):
        boxed = last_boxed(solution)
        if boxed is not None:
            return boxed
        if "####" in solution:
            return solution.rsplit("####", 1)[1].strip()
    raise GoldError("row has no gold answer: expected 'answer' (plain, '#### x' or \\boxed{}) or 'solution' with \\boxed{}")


def _question_of(row: dict[str, Any]) -> str | list[Message] | None:
    for key in ("question", "problem"):
        if isinstance(row.get(key), str):
            return row[key]
    prompt = row.get("prompt")
    return prompt if prompt else None


def example_from_row(row: dict[str, Any], options: dict[str, Any]) -> Example:
    """The example of one row; the gold is parsed now and an unparsable one is marked."""
    answer = gold_answer_of(row)
    question = _question_of(row)
    if question is None:
        question = "(no question given)"
    if isinstance(question, str):
        prompt = math_prompt(question, options.get("answer_format", "boxed"))
    else:
        prompt = question
    ex_id = str(row.get("id") or hashlib.sha256(repr((question, answer)).encode()).hexdigest()[:12])
    gold: dict[str, Any] = {"answer": answer, "last_number_fallback": options.get("last_number_fallback", True)}
    problem = gold_problem(answer)
    if problem is not None:
        gold["gold_error"] = problem
    return Example(id=ex_id, prompt=prompt, gold=gold)


def resolve_source(source: str) -> str:
    """A built-in set's directory, or the source unchanged: a local file or directory (ours, a hub
    repository's files such as ``main/train-00000-of-00001.parquet``, or a ``save_to_disk`` copy; see
    :func:`grpo_env.data.load_rows`) or a hub id."""
    return str(BUILTIN[source]) if source in BUILTIN else source


def dataset_examples(split: str, seed: int, options: dict[str, Any]) -> Iterator[Example]:
    """Examples of a GSM8K- or MATH-format data set, shuffled by ``seed``; unparsable golds counted."""
    from grpo_env.data import load_rows

    rows = load_rows(resolve_source(options["source"]), split, config=options.get("config"))
    examples = []
    skipped = 0
    for row in rows:
        try:
            examples.append(example_from_row(row, options))
        except GoldError:
            skipped += 1
    bad = sum(1 for e in examples if "gold_error" in e.gold)
    if bad or skipped:
        log.warning(
            "%s (%s): %d of %d gold answers do not parse (scored not_applicable), %d rows had none",
            options["source"], split, bad, len(rows), skipped,
        )
    random.Random(seed).shuffle(examples)
    limit = options.get("count")
    yield from examples[:limit] if limit else examples
