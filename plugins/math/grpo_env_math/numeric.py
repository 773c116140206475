"""The value of a parsed expression at a point, computed with sizes checked at every step.

sympy's ``evalf`` will happily work on ``sin(10^(10^(10^0.7)))``: the parser's guards only see
the expression before a number is put in for its variable. This evaluator walks the expression
itself, with mpmath at a fixed precision, and gives up (``None``) as soon as an intermediate
value, a power's estimated size or a function's argument is too large, so evaluating any
expression the parser can build at any point takes bounded time, whoever calls it.

Points for expressions with variables are drawn at random on every call (unpredictable to the
model); they are only used to refute an equality, never to accept one (see :mod:`.proof`).
"""

from __future__ import annotations

import math
import random

import mpmath
import sympy

PRECISION_BITS = 256
MAX_BITS = 20_000  # |value| < 2**20000 (and > 2**-20000 unless 0) at every step
MAX_ARG_BITS = 256  # trigonometric arguments: reducing sin(2**k) needs k bits of pi
MAX_FACTORIAL = 1_000
_rng = random.SystemRandom()


class _Stop(Exception):
    """The value is too large, undefined or not something this evaluator computes."""


_MP = {
    sympy.sin: mpmath.sin, sympy.cos: mpmath.cos, sympy.tan: mpmath.tan, sympy.sec: mpmath.sec,
    sympy.csc: mpmath.csc, sympy.cot: mpmath.cot, sympy.asin: mpmath.asin, sympy.acos: mpmath.acos,
    sympy.atan: mpmath.atan, sympy.sinh: mpmath.sinh, sympy.cosh: mpmath.cosh, sympy.tanh: mpmath.tanh,
}
_HYPERBOLIC = {sympy.sinh, sympy.cosh, sympy.tanh}


def _checked(v):
    if not mpmath.isfinite(v):
        raise _Stop("not finite")
    if v != 0 and abs(mpmath.mag(v)) > MAX_BITS:  # mag: the binary exponent, about log2|v|
        raise _Stop("too large or too small")
    return v


def _pow(base, exp):
    if base == 0:
        if mpmath.re(exp) > 0:
            return mpmath.mpf(0)
        raise _Stop("0 to a non-positive power")
    size = mpmath.re(exp * mpmath.log(base)) / mpmath.log(2)  # log2 of |base ** exp|
    if abs(size) > MAX_BITS or abs(mpmath.im(exp * mpmath.log(base))) > 2**MAX_ARG_BITS:
        raise _Stop("power too large")
    return mpmath.power(base, exp)


def _eval(e: sympy.Expr, point: dict):
    if e.is_Rational:
        return _checked(mpmath.mpf(e.p) / e.q)
    if e.is_Symbol:
        if e not in point:
            raise _Stop(f"no value for {e}")
        return point[e]
    if e is sympy.pi:
        return +mpmath.pi
    if e is sympy.E:
        return +mpmath.e
    if e is sympy.I:
        return mpmath.mpc(0, 1)
    if e.is_Add:
        return _checked(mpmath.fsum(_eval(a, point) for a in e.args))
    if e.is_Mul:
        v = mpmath.mpf(1)
        for a in e.args:
            v = _checked(v * _eval(a, point))
        return v
    if e.is_Pow:
        return _checked(_pow(_eval(e.base, point), _eval(e.exp, point)))
    f = e.func
    if f is sympy.exp:
        return _checked(_pow(mpmath.e, _eval(e.args[0], point)))
    if f is sympy.log and len(e.args) == 1:
        arg = _eval(e.args[0], point)
        if arg == 0:
            raise _Stop("log of 0")
        return mpmath.log(arg)
    if f is sympy.Abs:
        return abs(_eval(e.args[0], point))
    if f is sympy.factorial:
        arg = _eval(e.args[0], point)
        if abs(arg) > MAX_FACTORIAL:
            raise _Stop("factorial too large")
        return _checked(mpmath.factorial(arg))
    if f in _MP:
        arg = _eval(e.args[0], point)
        if abs(arg) > 2**MAX_ARG_BITS or (f in _HYPERBOLIC and abs(mpmath.re(arg)) > MAX_BITS * math.log(2)):
            raise _Stop("argument too large")
        return _checked(_MP[f](arg))
    raise _Stop(f"cannot evaluate {f}")


def value(e: sympy.Expr, point: dict | None = None):
    """``e`` at ``point`` (symbol -> mpmath number) as an mpmath number, or ``None`` if it cannot
    be computed within the size limits (too large, undefined there, or an unknown function)."""
    try:
        with mpmath.workprec(PRECISION_BITS):
            return +_eval(e, point or {})
    except (_Stop, ZeroDivisionError, ValueError, OverflowError, TypeError, RecursionError):
        return None


def agree(a, b) -> bool:
    """Whether two values computed by :func:`value` are equal to within rounding error (2**-128 relative)."""
    with mpmath.workprec(PRECISION_BITS):
        return abs(a - b) <= mpmath.mpf(2) ** (-PRECISION_BITS // 2) * max(1, abs(a), abs(b))


def random_points(symbols, count: int, scale: float = 1.0) -> list[dict]:
    """``count`` points for ``symbols``, drawn afresh on every call: magnitudes in
    [0.5, 2.5] * ``scale`` with alternating signs, so every variable is sampled on both sides of 0."""
    return [{s: mpmath.mpf((-1) ** (k + j) * scale * _rng.uniform(0.5, 2.5)) for j, s in enumerate(symbols)}
            for k in range(count)]
