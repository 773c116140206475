"""Judging one completion against one gold answer: guard, extract, parse, compare.

Every path ends in a typed outcome: ``correct``/``incorrect``, ``unparsable`` (no answer, or one
the grammar does not read), ``rejected`` (refused by a guard before any work), or
``not_applicable`` (the gold itself does not parse: never full reward).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from grpo_env.types import EXTRACTION, Outcome, Status
from grpo_env_math.compare import equal
from grpo_env_math.extract import extract_answer
from grpo_env_math.guards import Refused, check_completion, sanitize_answer
from grpo_env_math.parser import parse
from grpo_env_math.quick import quick_number
from grpo_env_math.rounding import rationals_match
from grpo_env_math.values import Scalar, Value

_GOLD_DECIMAL_RE = re.compile(r"[-+]?\d*\.(\d+)")
_DECIMAL_IN_TEXT_RE = re.compile(r"\d\.\d")
_DETAIL_CHARS = 200


_TEXT_MARKUP_RE = re.compile(r"\\(?:textbf|textrm|textit|text|mathrm|mathbf|mbox)\s*")
_WORDS_RE = re.compile(r"[a-z]+(?: [a-z]+)*")


def plain_words(text: str) -> str | None:
    """A word answer normalised (``\\text{(C)}`` -> ``c``, ``Even.`` -> ``even``), or ``None`` if not words."""
    s = _TEXT_MARKUP_RE.sub("", text)
    s = re.sub(r"[{}()$.*]", " ", s).strip().lower()
    s = " ".join(s.split())
    return s if _WORDS_RE.fullmatch(s) and len(s) <= 60 else None


@dataclass(frozen=True)
class Words:
    """A gold that is words, not a value: a multiple-choice letter ``(C)`` or a word like ``even``."""

    text: str


@lru_cache(maxsize=8192)
def parse_gold(gold: str) -> Value | Words:
    """The parsed gold answer (cached: every completion of an example shares it); may raise Refused."""
    try:
        return parse(sanitize_answer(gold))
    except Refused:
        words = plain_words(gold)
        if words is None:
            raise
        return Words(words)


def gold_problem(gold: str) -> str | None:
    """Why the gold answer text cannot be used (``None``: it parses)."""
    try:
        parse_gold(gold)
    except Refused as r:
        return f"gold answer is {r.status}: {r.reason}"
    return None


def _gold_decimals(gold: str) -> int | None:
    """Decimal places of a gold written as one decimal number (``0.33`` -> 2), else ``None``."""
    m = _GOLD_DECIMAL_RE.fullmatch(gold.strip().strip("$").replace(",", "").strip())
    return len(m.group(1)) if m else None


def _refused(r: Refused, **details) -> Outcome:
    return Outcome.of(Status(r.status), 0.0, reason=r.reason, **details)


STRICT_METHODS = ("boxed", "answer_tag")  # the answer forms a prompt asks for; the others are fallbacks


def check_answer(completion: str, gold: str, *, last_number_fallback: bool = True) -> Outcome:
    """The outcome of ``completion`` against the gold answer text ``gold``."""
    try:
        gold_value = parse_gold(gold)
    except Refused as r:
        return Outcome.not_applicable(f"gold answer does not parse ({r.reason})", gold=gold[:_DETAIL_CHARS])
    if not isinstance(completion, str):
        return Outcome.unparsable(reason="completion is not text")
    try:
        check_completion(completion)
    except Refused as r:
        return _refused(r)
    found = extract_answer(completion, fallback_last_number=last_number_fallback)
    if found.method == "rejected":
        return Outcome.of(Status.REJECTED, 0.0, reason="the final boxes are too long to be one answer")
    if found.text is None:
        return Outcome.unparsable(reason="no final answer found")
    details = {"answer": found.text[:_DETAIL_CHARS], "method": found.method,
               EXTRACTION: "strict" if found.method in STRICT_METHODS else "fallback"}  # for the format-drift monitor
    try:
        text = sanitize_answer(found.text)
    except Refused as r:
        return _refused(r, **details)
    if isinstance(gold_value, Words):
        # a word gold is matched as normalised words; a hedge ("C or D") is other words
        ok = plain_words(text) == gold_value.text
        return Outcome.correct(**details) if ok else Outcome.incorrect(**details)
    decimals = _gold_decimals(gold)
    if decimals is not None and _DECIMAL_IN_TEXT_RE.search(text):
        decimals = None  # rounding to the gold's precision is for exact answers only

    # fast path: two plain rationals compare exactly, with no sympy at all
    g, p = quick_number(gold), quick_number(text)
    if g is not None and p is not None:
        ok = g == p or rationals_match(g, p, decimals)
        return Outcome.correct(**details) if ok else Outcome.incorrect(**details)

    try:
        # "1,234" is one number when the gold is one value, two answers when it is a list
        pred_value = parse(text, thousands=isinstance(gold_value, Scalar))
    except Refused as r:
        return _refused(r, **details)
    except Exception as e:  # noqa: BLE001 - hostile text must end in a typed outcome, not a traceback
        return Outcome.unparsable(reason=f"parse failed: {type(e).__name__}", **details)
    try:
        ok = equal(gold_value, pred_value, decimals)
    except Exception as e:  # noqa: BLE001 - sympy refusing an operation on a hostile answer
        return Outcome.unparsable(reason=f"comparison failed: {type(e).__name__}", **details)
    return Outcome.correct(**details) if ok else Outcome.incorrect(**details)
