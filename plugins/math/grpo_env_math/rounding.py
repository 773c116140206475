"""Decimals as roundings: when a decimal gold stands for an exact value, and an exact gold for a
decimal answer.

A gold written ``0.33`` is often 1/3 rounded, and ``3.14`` is often pi. But a gold ``0.5`` is one
half, not every number between 0.45 and 0.55. The rules, narrow on purpose:

- a decimal gold *reads as rounded* only with at least 2 decimals and 2 significant digits, and
  only when the simplest fraction (smallest denominator) inside its rounding interval is not the
  gold itself and has no finite decimal expansion (``0.33`` -> 1/3, ``0.67`` -> 2/3, ``3.14`` ->
  22/7; ``0.5``, ``2.0``, ``0.25`` read as exact);
- such a gold accepts that one simplest fraction, or an irrational closed form strictly inside
  the interval whose rational constants are all at most 10^decimals (``3.14`` accepts pi and
  ``\\frac{22}{7}``; ``\\frac{314}{100} + \\frac{\\sqrt{2}}{10^5}`` is tuned to the interval and is refused),
  and nothing else exact;
- an exact gold with no finite decimal form (1/3, sqrt(2)/2) accepts a decimal answer only with
  at least 15 significant digits, correctly rounded (``0.70710678118654752``, not ``0.7071``).
"""

from __future__ import annotations

from fractions import Fraction

import mpmath

from grpo_env_math.numeric import PRECISION_BITS

MAX_GOLD_DIGITS = 40  # precision of the comparison (256 bits is ~77 digits) leaves room
MIN_ANSWER_DIGITS = 15
_MAX_STEPS = 200


def simplest_between(lo: Fraction, hi: Fraction) -> Fraction | None:
    """The fraction with the smallest denominator strictly between ``lo < hi`` (``None`` past the step cap)."""
    if lo < 0 < hi:
        return Fraction(0)
    if hi <= 0:
        s = simplest_between(-hi, -lo)
        return None if s is None else -s
    # 0 <= lo < hi: continued-fraction expansion, shared integer parts first
    parts: list[int] = []
    upper: Fraction | None = hi
    for _ in range(_MAX_STEPS):
        whole = lo.numerator // lo.denominator
        if upper is None or whole + 1 < upper:
            value = Fraction(whole + 1)
            for p in reversed(parts):
                value = p + 1 / value
            return value
        # lo and upper lie in [whole, whole + 1]: recurse on 1 / (x - whole)
        parts.append(whole)
        lo, upper = 1 / (upper - whole), (None if lo == whole else 1 / (lo - whole))
    return None


def terminates(q: Fraction) -> bool:
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _digits(q: Fraction, decimals: int) -> int:
    """Significant digits of ``q`` written with ``decimals`` decimals (``0.07`` -> 1)."""
    return len(str(abs(q.numerator * 10**decimals // q.denominator)).lstrip("0"))


def rounded_from(gold: Fraction, decimals: int) -> Fraction | None:
    """The simplest fraction a decimal gold is the rounding of, or ``None`` when it reads as exact."""
    if decimals < 2 or not 2 <= _digits(gold, decimals) <= MAX_GOLD_DIGITS:
        return None
    half = Fraction(1, 2 * 10**decimals)
    s = simplest_between(gold - half, gold + half)
    return None if s is None or s == gold or terminates(s) else s


def _inside(v, center: Fraction, half: Fraction) -> bool:
    """Whether the real mpmath value ``v`` is strictly within ``half`` of ``center``, with margin."""
    if v is None or mpmath.im(v) != 0:
        return False
    with mpmath.workprec(PRECISION_BITS):
        gap = abs(mpmath.re(v) - mpmath.mpf(center.numerator) / center.denominator)
        bound = mpmath.mpf(half.numerator) / half.denominator
        return gap < bound * (1 - mpmath.mpf(2) ** -64)


def rounded_gold_accepts(gold: Fraction, decimals: int, answer_constants, answer_value) -> bool:
    """Whether an irrational answer (its rational constants, its mpmath value) is what a decimal
    gold is the rounding of."""
    if rounded_from(gold, decimals) is None:
        return False
    if any(max(abs(c.numerator), c.denominator) > 10**decimals for c in answer_constants):
        return False
    return _inside(answer_value, gold, Fraction(1, 2 * 10**decimals))


def rationals_match(gold: Fraction, answer: Fraction, gold_decimals: int | None) -> bool:
    """The rounding rules between two different exact numbers (``gold_decimals``: the gold is a decimal)."""
    if gold_decimals is not None:
        return rounded_from(gold, gold_decimals) == answer
    if terminates(gold):
        return False
    with mpmath.workprec(PRECISION_BITS):
        return long_decimal_accepts(mpmath.mpf(gold.numerator) / gold.denominator, answer)


def long_decimal_accepts(gold_value, answer: Fraction) -> bool:
    """Whether a decimal answer is the gold (its value ``gold_value``) correctly rounded to >= 15 digits."""
    if not terminates(answer):
        return False
    decimals = 0
    while (answer * 10**decimals).denominator != 1:
        decimals += 1
    if not MIN_ANSWER_DIGITS <= _digits(answer, decimals) <= MAX_GOLD_DIGITS:
        return False
    return _inside(gold_value, answer, Fraction(1, 2 * 10**decimals))
