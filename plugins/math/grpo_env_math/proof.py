"""Proving that an expression is exactly zero, with a few rewritings whose cost is bounded first.

This is how two answers are decided equal when they are not already the same sympy object:
their difference must rewrite to 0 by expansion, by cancelling a rational function, by expanding
logarithms, by writing trigonometric functions as exponentials, or by denesting square roots.
Numeric agreement alone never proves anything here (``numeric`` only refutes).

``sympy.simplify`` is not used: it ran past 20 s (and was stopped) on the 5-operation
``(sin x + cos x)^24 - 1``. Each rewriting below runs only when estimates of its cost (terms after
expansion, degrees, denominators, operation count) are small, so a proof attempt takes bounded
time on any input; what cannot be proved within them is not equal (a false negative, never a
false positive).
"""

from __future__ import annotations

import math

import sympy

MAX_OPS = 200
MAX_DEGREE = 24  # of one power
MAX_TERMS = 300  # estimated terms after expansion
MAX_DENOMINATOR_DEGREE = 24  # summed over every denominator: bounds the polynomial of together()
MAX_DENEST_OPS = 40
_TRIG = (sympy.sin, sympy.cos, sympy.tan, sympy.sec, sympy.csc, sympy.cot, sympy.sinh, sympy.cosh, sympy.tanh)


def _terms(e: sympy.Expr) -> float:
    """An upper estimate of the number of terms ``expand(e)`` produces (it can be astronomic)."""
    if e.is_Add:
        return sum(_terms(a) for a in e.args)
    if e.is_Mul:
        return math.prod(_terms(a) for a in e.args)
    if e.is_Pow and e.exp.is_Integer:
        k, n = _terms(e.base), abs(int(e.exp))
        return math.comb(n + int(min(k, 10**6)) - 1, n) if k > 1 else 1
    return 1


def _degree(e: sympy.Expr) -> float:
    """An upper estimate of the total degree of ``e`` in its symbols and function values."""
    if e.is_Number or e.is_NumberSymbol or e is sympy.I:
        return 0
    if e.is_Add:
        return max(_degree(a) for a in e.args)
    if e.is_Mul:
        return sum(_degree(a) for a in e.args)
    if e.is_Pow and e.exp.is_Number:
        return _degree(e.base) * abs(float(e.exp))
    return 1


def _denominator_degree(e: sympy.Expr) -> float:
    return sum(_degree(p.base) * abs(float(p.exp)) for p in e.atoms(sympy.Pow) if p.exp.is_Number and p.exp < 0)


def _small(e: sympy.Expr) -> bool:
    """Whether ``expand`` and ``cancel(together(...))`` on ``e`` are cheap."""
    if sympy.count_ops(e) > MAX_OPS:
        return False
    if any(p.exp.is_Number and abs(p.exp) > MAX_DEGREE for p in e.atoms(sympy.Pow)):
        return False
    return _terms(e) <= MAX_TERMS and _denominator_degree(e) <= MAX_DENOMINATOR_DEGREE


def _vanishes(e: sympy.Expr) -> bool:
    if not _small(e):
        return False
    return sympy.expand(e) == 0 or sympy.cancel(sympy.together(e)) == 0


def is_zero(d: sympy.Expr) -> bool:
    """Whether ``d`` is provably 0 (``False`` when it is not, or when no bounded rewriting shows it)."""
    if d == 0:
        return True
    if not _small(d):
        return False
    try:
        if _vanishes(d):
            return True
        if d.has(sympy.log) and _vanishes(sympy.expand_log(d, force=True)):
            return True
        if d.has(*_TRIG) and _vanishes(d.rewrite(sympy.exp)):
            return True
        if not d.free_symbols and d.has(sympy.Pow) and sympy.count_ops(d) <= MAX_DENEST_OPS:
            return _vanishes(sympy.sqrtdenest(d))
    except (TypeError, ValueError, ArithmeticError, NotImplementedError, RecursionError, sympy.PolynomialError):
        return False
    return False
