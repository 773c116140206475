"""Answers refused before a scorer that would run them as code sees them, in linear time.

Some upstream scorers evaluate the model's answer: four with Python's ``eval`` in the scorer's own
frame (the answer can read ``entry``, import modules, patch other scorers in the worker), five
with sympy's ``parse_expr``, which ends in ``eval`` with Python's builtins in scope. ``rg.score``
gives those datasets' answers to their scorer only when running them cannot do anything but build
a value:

- ``PYTHON_EVAL``: an answer that parses as a Python expression must be a literal
  (``ast.literal_eval`` accepts it: numbers, strings, lists, tuples, dicts, sets); one that does not
  parse makes ``eval`` raise ``SyntaxError`` and is harmless.
- ``SYMPY_PARSE``: the answer may hold only ASCII letters, digits, whitespace and ``+ - * / ^ ( ) ,``,
  a ``.`` only right before a digit (a decimal point, never an attribute), and every name must be
  a single letter or one of ``MATH_NAMES``: no quotes, brackets, underscores or builtins, so no
  string can be built and nothing but sympy's math functions can be called.

The gold answer itself is always given to the scorer (each compares with it first). Anything else
is ``rejected`` (score 0) with the reason. ``conformance`` probes every scorer with
answers that would set a marker if run, and flags a dataset whose scorer runs one through
``rg.score``.
"""

from __future__ import annotations

import ast

PYTHON_EVAL = frozenset({"binary_matrix", "n_queens", "spiral_matrix", "string_insertion"})
SYMPY_PARSE = frozenset({"countdown", "intermediate_integration", "polynomial_multiplication", "puzzle24",
                         "simple_integration"})
MATH_NAMES = frozenset({
    "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "acot", "asec", "acsc",
    "sinh", "cosh", "tanh", "coth", "asinh", "acosh", "atanh", "exp", "log", "ln", "sqrt", "pi", "oo",
    "Abs", "Integral",
})
_SYMPY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \t\n+-*/^(),.")


def runs_answer(name: str) -> bool:
    """Whether the dataset's scorer evaluates the answer text as code."""
    return name in PYTHON_EVAL or name in SYMPY_PARSE


def refusal(name: str, answer: str, gold: object = None) -> str | None:
    """Why this answer must not reach the dataset's scorer, or None when it may. The gold answer
    itself always may (the scorers compare with it before running anything, and some golds, such as
    string_insertion's ``DDDED``, read as Python names)."""
    if isinstance(gold, str) and answer.strip() == gold.strip():
        return None
    if name in PYTHON_EVAL:
        return _python_refusal(answer)
    if name in SYMPY_PARSE:
        return _sympy_refusal(answer)
    return None


def _python_refusal(answer: str) -> str | None:
    try:
        ast.parse(answer.lstrip(" \t"), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None  # eval raises the same on it: nothing runs
    try:
        ast.literal_eval(answer.lstrip(" \t"))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return "the answer is Python code and this dataset's scorer runs it with eval: only literals are given to it"
    return None


def _sympy_refusal(answer: str) -> str | None:
    n = len(answer)
    i = 0
    while i < n:
        c = answer[i]
        if c not in _SYMPY_CHARS:
            return f"character {c!r} in an answer this dataset's scorer parses with sympy (which runs it with eval)"
        if c == "." and not (i + 1 < n and answer[i + 1].isascii() and answer[i + 1].isdigit()):
            return "a '.' not followed by a digit (attribute access) in an answer sympy would run with eval"
        if c.isalpha():
            j = i
            while j < n and answer[j].isascii() and answer[j].isalnum():
                j += 1
            word = answer[i:j]
            if len(word) > 1 and word not in MATH_NAMES:
                return f"name {word[:40]!r} in an answer sympy would run with eval (allowed: single letters, " \
                       f"{', '.join(sorted(MATH_NAMES))})"
            i = j
            continue
        i += 1
    return None
