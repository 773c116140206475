"""Building sympy numbers and operations whose cost is estimated first.

Only these helpers may create powers, factorials and function values from model text. Each
estimates the size of the result (in bits) from its operands and refuses (``rejected``) anything
that could take long to compute, such as a tower of exponents, before sympy evaluates it.
"""

from __future__ import annotations

import math

import sympy

from grpo_env_math.guards import reject, unparsable

MAX_POW_BITS = 20_000  # ~6,000 decimal digits: a numeric power larger than this is refused
MAX_SYMBOLIC_EXPONENT = 1_000  # x^1000 is fine to keep; expanding x^(10^9) is not
MAX_FACTORIAL = 1_000
MAX_FUNCTION_ARG_BITS = 256  # sin(10^10000) needs 10^4 digits of pi: refuse
MAX_POWER_NESTING = 2  # x^(y^z) is kept; 10^(10^(10^x)) is refused: a value at x=2 has 10^100 digits
PM = sympy.Symbol("PM\u00b1")  # stands for the sign of a \pm until it is expanded into two answers


def literal(text: str) -> sympy.Rational:
    """A number literal (``12``, ``0.25``, ``1.5e3``) as an exact rational."""
    mantissa, _, exp = text.lower().partition("e")
    whole, _, frac = mantissa.partition(".")
    value = sympy.Rational(int((whole or "0") + frac), 10 ** len(frac))
    if exp:
        e = int(exp)
        if abs(e) > 400:
            raise reject(f"scientific exponent {e} is too large")
        value *= sympy.Rational(10) ** e
    return value


def bits(x: sympy.Expr) -> float:
    """An upper estimate of the bits needed to write the numeric value ``x`` (at least 1)."""
    if x.is_Integer:
        return max(int(x).bit_length(), 1)
    if x.is_Rational:
        return max(x.p.bit_length() + x.q.bit_length(), 1)
    try:
        v = complex(x.evalf(15))
    except (TypeError, ValueError, OverflowError):
        return math.inf
    a = abs(v)
    if a == 0:
        return 1.0
    if not math.isfinite(a):
        return math.inf
    return abs(math.log2(a)) + 1


def _exponent_size(e: sympy.Expr) -> float:
    """|e| as a float, refusing exponents too big to even hold in one."""
    if e.is_Rational:
        if e.p.bit_length() - e.q.bit_length() > 40:
            raise reject("exponent is too large")
        return abs(e.p) / e.q
    try:
        v = abs(complex(e.evalf(15)))
    except (TypeError, ValueError, OverflowError):
        raise unparsable("exponent cannot be evaluated") from None
    if not math.isfinite(v) or v > 2**40:
        raise reject("exponent is too large")
    return v


def nesting(e: sympy.Expr) -> int:
    """How deeply powers nest in exponents: 0 for ``x``, 1 for ``x^2``, 2 for ``2^(2^x)`` or ``e^(e^x)``."""
    if e.is_Atom:
        return 0
    if e.is_Pow:
        return max(nesting(e.base), 1 + nesting(e.exp))
    if e.func is sympy.exp:
        return 1 + nesting(e.args[0])
    return max(nesting(a) for a in e.args)


def power(base: sympy.Expr, exp: sympy.Expr) -> sympy.Expr:
    """``base ** exp`` if its estimated size is bounded, else :class:`Refused` (``rejected``).

    A symbolic exponent has no size until a number is put in for its variable, so towers of them
    are refused by their height alone; the numeric check (``numeric``) checks sizes again after
    substitution.
    """
    base_symbolic = bool(base.free_symbols - {PM})
    if exp.free_symbols - {PM}:
        if base.is_number and bits(base) > MAX_FUNCTION_ARG_BITS:
            raise reject("base of a symbolic power is too large")
        if 1 + nesting(exp) > MAX_POWER_NESTING:
            raise reject(f"powers nest more than {MAX_POWER_NESTING} deep in an exponent (a tower)")
        return sympy.Pow(base, exp)
    size = _exponent_size(exp)
    if base_symbolic:
        if size > MAX_SYMBOLIC_EXPONENT:
            raise reject(f"exponent {size:.3g} on a symbolic base is too large")
        return sympy.Pow(base, exp)
    if base in (sympy.Integer(0), sympy.Integer(1), sympy.Integer(-1)):
        return sympy.Pow(base, exp)  # never grows, whatever the exponent
    if max(bits(base), 1.0) * size > MAX_POW_BITS:
        raise reject("power is too large to compute (a tower of exponents?)")
    return sympy.Pow(base, exp)


def factorial(n: sympy.Expr) -> sympy.Expr:
    if not n.is_Integer or n < 0:
        if n.free_symbols:
            return sympy.factorial(n)
        raise unparsable("factorial of a non-integer")
    if n > MAX_FACTORIAL:
        raise reject(f"factorial of a number above {MAX_FACTORIAL}")
    return sympy.factorial(n)


def function(name: str, arg: sympy.Expr, base: sympy.Expr | None = None) -> sympy.Expr:
    """An allow-listed function of ``arg``; numeric arguments must be of modest size."""
    if arg.is_number and bits(arg) > MAX_FUNCTION_ARG_BITS:
        raise reject(f"argument of {name} is too large")
    if name == "sqrt":
        return power(arg, sympy.Rational(1, 2))
    if name in ("log", "ln"):
        if base is not None:
            return sympy.log(arg, base)
        return sympy.log(arg)  # \log without a base: natural, as in most competition answers
    if name == "exp":
        return power(sympy.E, arg)
    if name == "abs":
        return sympy.Abs(arg)
    return _FUNCTIONS[name](arg)


_FUNCTIONS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "sec": sympy.sec, "csc": sympy.csc,
    "cot": sympy.cot, "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
}
FUNCTION_NAMES = set(_FUNCTIONS) | {"sqrt", "log", "ln", "exp", "abs"}
