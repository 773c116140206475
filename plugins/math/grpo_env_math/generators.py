"""Procedural, seeded problem generators with difficulty levels.

Each generator is ``make(rng, difficulty) -> (question, answer)``. :func:`generate` turns one into
a deterministic stream for a (split, seed): the random stream is seeded by (task, difficulty,
split, seed), and a problem belongs to ``test`` when a hash of its text falls in the test
bucket, ``train`` otherwise, so the two splits can never share a problem whatever the seeds.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from fractions import Fraction

Make = Callable[[random.Random, int], tuple[str, str]]

TEST_BUCKETS = 5  # one problem in five belongs to the test split


def split_of(question: str) -> str:
    """``test`` or ``train``, fixed by the problem text alone."""
    h = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big")
    return "test" if h % TEST_BUCKETS == 0 else "train"


def problem_id(prefix: str, question: str) -> str:
    return f"{prefix}-{hashlib.sha256(question.encode()).hexdigest()[:12]}"


def generate(name: str, make: Make, difficulty: int, split: str, seed: int, count: int) -> Iterator[tuple[str, str]]:
    """Up to ``count`` distinct (question, answer) pairs of ``split``, deterministic for the arguments.

    Stops early when the problem space of a level is exhausted (too many draws in a row repeat).
    """
    rng = random.Random(f"{name}|{difficulty}|{split}|{seed}")
    seen: set[str] = set()
    misses = 0
    while len(seen) < count and misses < 2000:
        question, answer = make(rng, difficulty)
        if question in seen or split_of(question) != split:
            misses += 1
            continue
        misses = 0
        seen.add(question)
        yield question, answer


def fmt_fraction(q: Fraction) -> str:
    """A fraction the way a gold answer states it: ``3``, ``-7/2``."""
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


# ---- multi-step arithmetic ---------------------------------------------------------------------


def make_arith(rng: random.Random, difficulty: int) -> tuple[str, str]:
    """Levels: 1 ``a + b``; 2 ``a + b - c``; 3 ``a * b + c``; 4 ``(a + b) * c - d``;
    5 ``a * b - c * d + e / f`` (exact division), all with small integers."""
    r = rng.randint
    if difficulty <= 1:
        a, b = r(1, 99), r(1, 99)
        expr, value = f"{a} + {b}", a + b
    elif difficulty == 2:
        a, b = r(1, 99), r(1, 99)
        c = r(1, a + b)
        expr, value = f"{a} + {b} - {c}", a + b - c
    elif difficulty == 3:
        a, b, c = r(2, 12), r(2, 12), r(1, 99)
        expr, value = f"{a} * {b} + {c}", a * b + c
    elif difficulty == 4:
        a, b, c, d = r(1, 50), r(1, 50), r(2, 9), r(1, 99)
        expr, value = f"({a} + {b}) * {c} - {d}", (a + b) * c - d
    else:
        a, b, c, d = r(2, 30), r(2, 30), r(2, 20), r(2, 20)
        f = r(2, 12)
        e = f * r(2, 20)
        expr, value = f"{a} * {b} - {c} * {d} + {e} / {f}", a * b - c * d + e // f
    return f"What is {expr}?", str(value)


# ---- fractions ---------------------------------------------------------------------------------


def _frac(rng: random.Random, lo: int, hi: int) -> Fraction:
    """A positive proper or improper fraction that is not a whole number."""
    while True:
        den = rng.randint(lo, hi)
        q = Fraction(rng.randint(1, 2 * den - 1), den)
        if q.denominator != 1:
            return q


def _show(q: Fraction, mixed: bool = False) -> str:
    if mixed and q > 1 and q.denominator != 1:
        whole = q.numerator // q.denominator
        return f"{whole} {q.numerator - whole * q.denominator}/{q.denominator}"
    return f"{q.numerator}/{q.denominator}"


def make_fractions(rng: random.Random, difficulty: int) -> tuple[str, str]:
    """Levels: 1 same denominators; 2 different denominators; 3 a product or quotient;
    4 ``a + b * c`` (order of operations); 5 mixed numbers."""
    if difficulty <= 1:
        den = rng.randint(2, 9)
        a, b = Fraction(rng.randint(1, den), den), Fraction(rng.randint(1, den), den)
        text, value = f"{_show(a)} + {_show(b)}", a + b
    elif difficulty == 2:
        a, b = _frac(rng, 2, 9), _frac(rng, 2, 9)
        op = rng.choice("+-")
        text, value = f"{_show(a)} {op} {_show(b)}", a + b if op == "+" else a - b
    elif difficulty == 3:
        a, b = _frac(rng, 2, 12), _frac(rng, 2, 12)
        if rng.random() < 0.5:
            text, value = f"{_show(a)} * {_show(b)}", a * b
        else:
            text, value = f"({_show(a)}) / ({_show(b)})", a / b
    elif difficulty == 4:
        a, b, c = _frac(rng, 2, 9), _frac(rng, 2, 9), _frac(rng, 2, 9)
        text, value = f"{_show(a)} + {_show(b)} * {_show(c)}", a + b * c
    else:
        a = rng.randint(1, 5) + _frac(rng, 2, 8) % 1  # never a whole number: _frac is not
        b = rng.randint(1, 4) + _frac(rng, 2, 8) % 1
        op = rng.choice("+-")
        text, value = f"{_show(a, True)} {op} {_show(b, True)}", a + b if op == "+" else a - b
    question = f"Compute {text}. Give the answer as a fraction in lowest terms (or an integer)."
    return question, fmt_fraction(value)


# ---- linear equations --------------------------------------------------------------------------


def _nonzero(rng: random.Random, lo: int, hi: int) -> int:
    while True:
        v = rng.randint(lo, hi)
        if v != 0:
            return v


def _linear(coef: int, const: int) -> str:
    """``3x + 5``, ``-x - 2``, ``x``: a side of an equation the way people write it."""
    lead = "x" if coef == 1 else "-x" if coef == -1 else f"{coef}x"
    if const == 0:
        return lead
    return f"{lead} {'+' if const > 0 else '-'} {abs(const)}"


def make_linear(rng: random.Random, difficulty: int) -> tuple[str, str]:
    """Levels: 1 ``x + a = b``; 2 ``a x = b``; 3 ``a x + b = c``; 4 ``a x + b = c x + d``;
    5 the same with a fractional solution."""
    x = Fraction(rng.randint(-12, 12))
    if difficulty <= 1:
        a = _nonzero(rng, -20, 20)
        eq = f"{_linear(1, a)} = {x + a}"
    elif difficulty == 2:
        a = _nonzero(rng, -9, 9)
        eq = f"{_linear(a, 0)} = {a * x}"
    elif difficulty == 3:
        a, b = _nonzero(rng, -9, 9), _nonzero(rng, -20, 20)
        eq = f"{_linear(a, b)} = {a * x + b}"
    else:
        a, c = _nonzero(rng, -9, 9), _nonzero(rng, -9, 9)
        while c == a:
            c = _nonzero(rng, -9, 9)
        b = rng.randint(-20, 20)
        if difficulty >= 5:
            d = rng.randint(-20, 20)
            x = Fraction(d - b, a - c)  # often not an integer
        else:
            d = (a - c) * int(x) + b
        eq = f"{_linear(a, b)} = {_linear(c, d)}"
    return f"Solve for x: {eq}.", fmt_fraction(x)


# ---- word problems -----------------------------------------------------------------------------

_NAMES = ["Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jamal", "Keiko", "Liam",
          "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq"]
_ITEMS = ["apples", "stickers", "marbles", "pencils", "cookies", "stamps", "shells", "books", "cards", "beads"]


def make_word(rng: random.Random, difficulty: int) -> tuple[str, str]:
    """Word problems; the level is the number of steps (5: a percentage discount on top)."""
    return _word_problem(rng, difficulty)[:2]


def _word_problem(rng: random.Random, difficulty: int) -> tuple[str, str, str]:
    """(question, answer, worked solution) of one word problem."""
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    r = rng.randint
    if difficulty <= 1:
        a, b = r(5, 60), r(2, 40)
        q = f"{name} has {a} {item}. A friend gives {name} {b} more. How many {item} does {name} have now?"
        steps = [f"{a} + {b} = {a + b}"]
        ans = a + b
    elif difficulty == 2:
        a, b = r(10, 80), r(2, 30)
        c = r(1, a + b - 1)
        q = (f"{name} has {a} {item}, buys {b} more, and then gives {c} to a friend. "
             f"How many {item} does {name} have left?")
        steps = [f"{a} + {b} = {a + b}", f"{a + b} - {c} = {a + b - c}"]
        ans = a + b - c
    elif difficulty == 3:
        a, b, c = r(3, 12), r(2, 9), r(1, 20)
        q = (f"A box holds {a} {item}. {name} fills {b} boxes and has {c} {item} that do not fit. "
             f"Then {name} gets {a} more {item}. How many {item} does {name} have in all?")
        steps = [f"{a} * {b} = {a * b}", f"{a * b} + {c} = {a * b + c}", f"{a * b + c} + {a} = {a * b + c + a}"]
        ans = a * b + c + a
    elif difficulty == 4:
        a, b, c, d = r(8, 25), r(2, 8), r(3, 6), r(10, 90)
        q = (f"{name} earns ${a} per hour and works {b} hours a day for {c} days. "
             f"{name} then spends ${d} on a gift. How many dollars does {name} have left from these earnings?")
        steps = [f"{a} * {b} = {a * b}", f"{a * b} * {c} = {a * b * c}", f"{a * b * c} - {d} = {a * b * c - d}"]
        ans = a * b * c - d
    else:
        price, pct, n, fee = 20 * r(2, 15), rng.choice([10, 20, 25, 50]), r(2, 6), r(3, 15)
        unit = price * (100 - pct) // 100
        q = (f"A jacket costs ${price}. During a sale it is {pct}% off. {name} buys {n} jackets and pays a "
             f"${fee} delivery fee. How many dollars does {name} pay in total?")
        steps = [f"{price} * {pct}/100 = {price * pct // 100} off", f"{price} - {price * pct // 100} = {unit}",
                 f"{unit} * {n} = {unit * n}", f"{unit * n} + {fee} = {unit * n + fee}"]
        ans = unit * n + fee
    return q, str(ans), "\n".join(steps)


def word_row(rng: random.Random, difficulty: int) -> dict[str, str]:
    """A GSM8K-format row (``question``, ``answer`` with worked steps and ``#### n``)."""
    q, ans, steps = _word_problem(rng, difficulty)
    return {"question": q, "answer": f"{steps}\n#### {ans}"}
