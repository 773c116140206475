"""Penalties (best score 0.0): DAPO's soft overlong punishment and word n-gram repetition.

Both read their parameters from ``example.gold["format"]`` so a task can tune them per example;
a parameter of the wrong type or range makes the outcome ``not_applicable`` (the example cannot be
judged), naming the key, rather than a silent default.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grpo_env import Example, Outcome

from grpo_env_format.scan import drop_invisible

DEFAULT_MAX_LEN = 2048
DEFAULT_OVERLONG_BUFFER = 512
DEFAULT_NGRAM = 3

# Odd 64-bit constant (golden ratio) that mixes word hashes into an n-gram hash, wrapping mod 2**64.
_MIX = np.uint64(0x9E3779B97F4A7C15)


class BadParameter(ValueError):
    """A ``gold["format"]`` parameter of the wrong type or out of range."""


def _param(example: Example, key: str, default: int, minimum: int) -> int:
    """The integer ``example.gold["format"][key]`` (or ``default``), at least ``minimum``."""
    cfg: Any = example.gold.get("format", {})
    if not isinstance(cfg, dict):
        raise BadParameter(f'gold["format"] must be a mapping, got {type(cfg).__name__}')
    value = cfg.get(key, default)
    # bool is an int subclass: True must not mean max_len=1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadParameter(f'gold["format"]["{key}"] must be an integer, got {value!r}')
    if value < minimum:
        raise BadParameter(f'gold["format"]["{key}"] must be >= {minimum}, got {value}')
    return value


def overlong_score(length: int, max_len: int, buffer: int) -> float:
    """DAPO soft overlong punishment: 0 up to ``max_len - buffer``, linear to -1 at ``max_len``, -1 beyond."""
    soft_start = max_len - buffer
    if length <= soft_start:
        return 0.0
    if length > max_len:
        return -1.0
    return (soft_start - length) / buffer  # buffer > 0 here: length in (soft_start, max_len]


def overlong_penalty(completion: str, example: Example) -> Outcome:
    """Soft overlong punishment on the completion's length in *characters*.

    Rewards see text, not tokens, so ``max_len`` and ``overlong_buffer`` (from
    ``gold["format"]``, defaults 2048 and 512) are character counts; set them from your token
    budget times roughly 3-4 characters per token.
    """
    try:
        max_len = _param(example, "max_len", DEFAULT_MAX_LEN, 1)
        buffer = _param(example, "overlong_buffer", DEFAULT_OVERLONG_BUFFER, 0)
    except BadParameter as e:
        return Outcome.not_applicable(str(e))
    if buffer > max_len:
        return Outcome.not_applicable(f'gold["format"]["overlong_buffer"] ({buffer}) exceeds max_len ({max_len})')
    length = len(completion)
    score = overlong_score(length, max_len, buffer)
    details = {"length": length, "max_len": max_len, "overlong_buffer": buffer}
    if score == 0.0:
        return Outcome.correct(0.0, **details)
    if score == -1.0:
        return Outcome.incorrect(-1.0, reason="completion reaches max_len", **details)
    return Outcome.partial(score, **details)


def count_ngrams(words: list[str], n: int) -> tuple[int, int]:
    """(total, distinct) word n-grams of ``words``.

    N-grams are compared by a 64-bit hash built from the words' own hashes (vectorised, so 10 MB
    of text takes a fraction of a second); two different n-grams share a hash with probability
    about total**2 / 2**64, i.e. never in practice.
    """
    total = len(words) - n + 1
    if total <= 0:
        return 0, 0
    hashes = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
    keys = hashes[:total].copy()
    for k in range(1, n):
        keys = (keys * _MIX) ^ hashes[k : k + total]
    keys.sort()
    distinct = 1 + int(np.count_nonzero(keys[1:] != keys[:-1]))
    return total, distinct


def repetition_penalty(completion: str, example: Example) -> Outcome:
    """Minus the fraction of word n-grams that repeat an earlier one (n from ``gold["format"]["ngram"]``, default 3).

    Invisible characters (blank but not whitespace: zero-width, combining marks, fillers) are
    dropped first, so they neither split a word nor make a repeat look new; words are then split
    on whitespace and compared exactly (case and punctuation kept). The score is in [-1, 0]: 0
    when no n-gram repeats (or the text has fewer than n words).
    """
    try:
        n = _param(example, "ngram", DEFAULT_NGRAM, 1)
    except BadParameter as e:
        return Outcome.not_applicable(str(e))
    total, distinct = count_ngrams(drop_invisible(completion).split(), n)
    repeated = total - distinct
    details = {"ngram": n, "ngrams": total, "repeated": repeated}
    if repeated == 0:
        return Outcome.correct(0.0, **details)
    return Outcome.partial(-repeated / total, **details)
