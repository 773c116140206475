"""Equivalence of two parsed answers: exact, never within a tolerance.

Two expressions are equal when sympy builds the same object, or when their difference is proved
to be 0 (:mod:`.proof`). Before a proof is tried, both are evaluated at a few points drawn at
random on every call (:mod:`.numeric`), which refutes most unequal pairs at once; agreement there
is necessary, never sufficient. Decimals are matched as roundings only under the narrow rules of
:mod:`.rounding`.

The gold decides the shape: an ordered tuple must match in order, a set or a bare list of
solutions in any order, an interval with the same open/closed ends. A hedge ("17 or 18") never
matches. When in doubt the answer is not equal: a false positive teaches a model to cheat.
"""

from __future__ import annotations

from fractions import Fraction

import sympy

from grpo_env_math import numeric, proof, rounding
from grpo_env_math.values import Interval, Matrix, Relation, Scalar, Seq, Union_, Value

SAMPLE_POINTS = 3  # random points for expressions with variables (one evaluation for a number)


def _bad(e: sympy.Expr) -> bool:
    return e.has(sympy.zoo, sympy.nan)


def _fraction(e: sympy.Expr) -> Fraction | None:
    return Fraction(int(e.p), int(e.q)) if e.is_Rational else None


def _refuted(g: sympy.Expr, p: sympy.Expr) -> bool | None:
    """``True`` if the two differ at some sample point, ``False`` if they agree at one or more and
    differ at none, ``None`` if they could not be evaluated at any point."""
    free = sorted(g.free_symbols | p.free_symbols, key=lambda s: s.name)
    batches = [[{}]] if not free else [numeric.random_points(free, SAMPLE_POINTS, scale) for scale in (1.0, 0.1)]
    agreed = False
    for points in batches:
        for point in points:
            vg, vp = numeric.value(g, point), numeric.value(p, point)
            if vg is None or vp is None:
                continue  # too large there, or undefined (a pole): other points decide
            if not numeric.agree(vg, vp):
                return True
            agreed = True
        if agreed:
            break  # smaller points only when no point of the first batch could be evaluated
    return False if agreed else None


def _rounded_equal(g: sympy.Expr, p: sympy.Expr, gold_decimals: int | None) -> bool:
    """The decimal-rounding rules between two numbers that are not the same number."""
    fg, fp = _fraction(g), _fraction(p)
    if fg is not None and fp is not None:
        return rounding.rationals_match(fg, fp, gold_decimals)
    if fg is not None and gold_decimals is not None:
        constants = [Fraction(int(c.p), int(c.q)) for c in p.atoms(sympy.Rational)]
        return rounding.rounded_gold_accepts(fg, gold_decimals, constants, numeric.value(p))  # 3.14 for pi
    if fg is None and fp is not None:
        return rounding.long_decimal_accepts(numeric.value(g), fp)  # 0.70710678118654752 for sqrt(2)/2
    return False


def expr_equal(g: sympy.Expr, p: sympy.Expr, gold_decimals: int | None = None, *, rounding: bool = True) -> bool:
    """Whether two expressions are the same value (gold ``g``, answer ``p``). With ``rounding``
    off, only the exact value counts (no decimal read as a rounding): a symmetric test."""
    if _bad(g) or _bad(p):
        return False
    if g == p:
        return True
    if g.has(sympy.oo, -sympy.oo) or p.has(sympy.oo, -sympy.oo):
        return False  # different infinities, or infinity against a number
    if not (g.free_symbols or p.free_symbols):
        if rounding and _rounded_equal(g, p, gold_decimals):
            return True
        if g.is_Rational and p.is_Rational:
            return False  # two exact numbers that are not the same number
    if _refuted(g, p) is not False:
        return False  # they differ somewhere, or could not be compared anywhere: not equal
    return proof.is_zero(g - p)


def _scalar_equal(g: Scalar, p: Scalar, gold_decimals: int | None) -> bool:
    if expr_equal(g.expr, p.expr, gold_decimals):
        return True
    # a gold written as a percentage (50%) may be answered without the sign (50). Never the other
    # way: 25% is 0.25, not 25, or it would hedge between a count and a rate.
    return g.percent and not p.percent and expr_equal(g.expr * 100, p.expr)


def _relation_value(r: Relation) -> sympy.Expr | None:
    """``x = 3`` names the value 3 (either side may hold the variable). The other side must hold no
    variable at all, the named one least of all: ``x = x + 1`` is an equation, not the value ``x + 1``."""
    if r.op != "=":
        return None
    if r.lhs.is_Symbol and not r.rhs.free_symbols:
        return r.rhs
    if r.rhs.is_Symbol and not r.lhs.free_symbols:
        return r.lhs
    return None


def _relation_interval(r: Relation) -> Interval | None:
    """``x > 3`` as the interval (3, oo), when one side is a variable and the other a number."""
    flip = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
    op, var, bound = r.op, r.lhs, r.rhs
    if not var.is_Symbol:
        op, var, bound = flip.get(op, op), r.rhs, r.lhs
    if not var.is_Symbol or bound.free_symbols or op not in flip:
        return None
    if op in (">", ">="):
        return Interval(bound, sympy.oo, op == ">", True)
    return Interval(-sympy.oo, bound, True, op == "<")


def _relations_equal(g: Relation, p: Relation) -> bool:
    if g.op == "=" and p.op == "=":
        dg, dp = g.lhs - g.rhs, p.lhs - p.rhs
        return expr_equal(dg, dp) or expr_equal(dg, -dp)
    ig, ip = _relation_interval(g), _relation_interval(p)
    if ig is not None and ip is not None:
        return _intervals_equal(ig, ip)
    return g.op == p.op and expr_equal(g.lhs, p.lhs) and expr_equal(g.rhs, p.rhs)


def _intervals_equal(g: Interval, p: Interval) -> bool:
    # an infinite end is open however it is written
    g_lo = g.lo_open or g.lo.is_infinite
    g_hi = g.hi_open or g.hi.is_infinite
    p_lo = p.lo_open or p.lo.is_infinite
    p_hi = p.hi_open or p.hi.is_infinite
    return g_lo == p_lo and g_hi == p_hi and expr_equal(g.lo, p.lo) and expr_equal(g.hi, p.hi)


def _unordered_equal(gs: tuple, ps: tuple) -> bool:
    """Each gold item matched by exactly one answer item (greedy matching: items are distinct)."""
    if len(gs) != len(ps):
        return False
    left = list(ps)
    for g in gs:
        for k, p in enumerate(left):
            if equal(g, p):
                del left[k]
                break
        else:
            return False
    return True


def _as_interval(v: Value) -> Interval | None:
    if isinstance(v, Interval):
        return v
    if isinstance(v, Seq) and v.kind == "tuple" and len(v.items) == 2 and all(isinstance(x, Scalar) for x in v.items):
        return Interval(v.items[0].expr, v.items[1].expr, True, True)  # (a, b) read as an open interval
    if isinstance(v, Relation):
        return _relation_interval(v)
    return None


def _is_ray(v: Seq) -> bool:
    """A pair with an infinite end: an interval, since no point has an infinite coordinate. Any
    other pair ``(1, 2)`` is a point and is never matched by the interval ``1 < x < 2``."""
    return len(v.items) == 2 and all(isinstance(x, Scalar) for x in v.items) \
        and any(x.expr.is_infinite for x in v.items)


def _same_value(a: Value, b: Value) -> bool:
    """Whether two items of one list are exactly the same value, tested symmetrically: no rule that
    widens a gold (a percent gold taking the bare number, a long decimal for an exact gold) applies
    between items, or ``50\\%, 50`` would pass as one answer and hedge between 1/2 and 50."""
    if isinstance(a, Scalar) and isinstance(b, Scalar):
        return expr_equal(a.expr, b.expr, rounding=False)
    return a == b  # other shapes: only the same parse (refuse when in doubt)


def _matrix_items(m: Matrix) -> tuple | None:
    """A one-row or one-column matrix as the vector it is."""
    if len(m.rows) == 1:
        return m.rows[0]
    if all(len(r) == 1 for r in m.rows):
        return tuple(r[0] for r in m.rows)
    return None


def equal(gold: Value, pred: Value, gold_decimals: int | None = None) -> bool:
    """Whether the answer ``pred`` states the gold answer ``gold``."""
    if isinstance(pred, Seq) and pred.kind in ("list", "hedge") and not isinstance(gold, Seq) and pred.items:
        # "18, 18" or \\boxed{18} \\boxed{18} states one answer; two distinct ones never win
        first = pred.items[0]
        if len(pred.items) <= 8 and all(_same_value(first, other) for other in pred.items[1:]):
            return equal(gold, first, gold_decimals)
        return False
    if isinstance(pred, Seq) and pred.kind == "hedge":
        return False
    if isinstance(gold, Scalar):
        if isinstance(pred, Scalar):
            return _scalar_equal(gold, pred, gold_decimals)
        if isinstance(pred, Relation):
            v = _relation_value(pred)
            return v is not None and expr_equal(gold.expr, v, gold_decimals)
        return False  # a list or set of candidates against one value: a hedge
    if isinstance(gold, Relation):
        if isinstance(pred, Relation):
            return _relations_equal(gold, pred)
        v = _relation_value(gold)
        if v is not None and isinstance(pred, Scalar):
            return expr_equal(v, pred.expr, gold_decimals)
        ig, ip = _relation_interval(gold), _as_interval(pred)
        return ig is not None and ip is not None and _intervals_equal(ig, ip)
    if isinstance(gold, Interval):
        ip = _as_interval(pred)
        return ip is not None and _intervals_equal(gold, ip)
    if isinstance(gold, Union_):
        if isinstance(pred, Union_):
            return _unordered_equal(gold.parts, pred.parts)
        return False
    if isinstance(gold, Matrix):
        if isinstance(pred, Matrix):
            return len(gold.rows) == len(pred.rows) and all(
                len(a) == len(b) and all(expr_equal(x, y) for x, y in zip(a, b)) for a, b in zip(gold.rows, pred.rows)
            )
        vec = _matrix_items(gold)
        if vec is not None and isinstance(pred, Seq) and pred.kind == "tuple":
            return len(vec) == len(pred.items) and all(
                isinstance(q, Scalar) and expr_equal(x, q.expr) for x, q in zip(vec, pred.items))
        return False
    if isinstance(gold, Seq):
        if gold.kind == "tuple":
            if isinstance(pred, Seq) and pred.kind == "tuple":
                return len(gold.items) == len(pred.items) and all(equal(a, b) for a, b in zip(gold.items, pred.items))
            if isinstance(pred, (Interval, Relation)) and _is_ray(gold):
                ip = _as_interval(pred)  # (3, oo) against x > 3: only a ray is surely an interval
                return ip is not None and _intervals_equal(_as_interval(gold), ip)
            if isinstance(pred, Matrix):
                vec = _matrix_items(pred)
                return vec is not None and len(vec) == len(gold.items) and all(
                    isinstance(a, Scalar) and expr_equal(a.expr, x) for a, x in zip(gold.items, vec))
            return False
        # a set, a bare list of solutions, or a gold written with \pm: order does not matter
        if isinstance(pred, Seq) and pred.kind in ("set", "list"):
            return _unordered_equal(gold.items, pred.items)
        return False
    return False

