"""Equivalence of two parsed answers: exact first, numeric with a relative tolerance second, a
size-bounded symbolic check last.

The gold decides the shape: an ordered tuple must match in order, a set or a bare list of
solutions in any order, an interval with the same open/closed ends. A hedge ("17 or 18") never
matches. When in doubt the answer is not equal: a false positive teaches a model to cheat.
"""

from __future__ import annotations

import math

import sympy

from grpo_env_math.values import Interval, Matrix, Relation, Scalar, Seq, Union_, Value

REL_TOL = 1e-9
ABS_TOL = 1e-12
PRECISION = 30  # digits for numeric evaluation
MAX_EXPAND_OPS = 200  # larger differences are not expanded symbolically
MAX_EXPAND_DEGREE = 24
MAX_SIMPLIFY_OPS = 40
MAX_EXPANDED_TERMS = 2_000
# evaluation points for expressions with free variables: mixed signs, no special values
_POINTS = (0.7314, -1.3862, 2.2117, -0.4421, 1.6093)


def _bad(e: sympy.Expr) -> bool:
    return e.has(sympy.zoo, sympy.nan)


def _num(e: sympy.Expr, subs: dict | None = None) -> complex | None:
    try:
        v = complex(e.evalf(PRECISION, subs=subs) if subs else e.evalf(PRECISION))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        return None
    return v if math.isfinite(v.real) and math.isfinite(v.imag) else None


def _close(a: complex, b: complex) -> bool:
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


def _expanded_terms(e: sympy.Expr) -> float:
    """An upper estimate of the number of terms ``expand(e)`` produces (it can be astronomic)."""
    if e.is_Add:
        return sum(_expanded_terms(a) for a in e.args)
    if e.is_Mul:
        return math.prod(_expanded_terms(a) for a in e.args)
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        k = _expanded_terms(e.base)
        n = int(e.exp)
        return math.comb(n + int(min(k, 10**6)) - 1, n) if k > 1 else 1
    return 1


def _symbolic_zero(d: sympy.Expr) -> bool:
    """Whether ``d`` simplifies to 0, trying only what its size allows."""
    if sympy.count_ops(d) > MAX_EXPAND_OPS:
        return False
    for p in d.atoms(sympy.Pow):
        if p.exp.is_Number and abs(p.exp) > MAX_EXPAND_DEGREE:
            return False
    try:
        if _expanded_terms(d) <= MAX_EXPANDED_TERMS and (sympy.expand(d) == 0 or sympy.cancel(sympy.together(d)) == 0):
            return True
        if sympy.count_ops(d) <= MAX_SIMPLIFY_OPS:
            return sympy.simplify(d) == 0
    except (TypeError, ValueError, ArithmeticError, NotImplementedError, RecursionError):
        return False
    return False


def expr_equal(g: sympy.Expr, p: sympy.Expr, gold_decimals: int | None = None) -> bool:
    """Whether two expressions are the same value (gold ``g``, answer ``p``)."""
    if _bad(g) or _bad(p):
        return False
    if g == p:
        return True
    free = sorted(g.free_symbols | p.free_symbols, key=lambda s: s.name)
    if not free:
        if g.is_infinite or p.is_infinite:
            return False  # different infinities, or infinity against a number
        if g.is_Integer and p.is_Rational and gold_decimals is None:
            return False  # an integer gold is matched exactly (10**10 + 1 is not 10**10)
        vg, vp = _num(g), _num(p)
        if vg is None or vp is None:
            return False
        if _close(vg, vp):
            return True
        if gold_decimals is not None and vp.imag == 0 and vg.imag == 0:
            # a gold written as 0.33 asks for that precision: 1/3 rounds to it
            return abs(vg.real - vp.real) <= 0.5 * 10.0 ** (-gold_decimals) * (1 + 1e-12)
        return False
    # with variables: numbers at several points refute fast; agreement at every point is accepted
    # (distinct expressions of this grammar differ at some of these mixed-sign points)
    agreed = 0
    for k in range(len(_POINTS)):
        subs = {s: sympy.Float(_POINTS[(k + j) % len(_POINTS)] * (1 + 0.1 * j), PRECISION) for j, s in enumerate(free)}
        vg, vp = _num(g, subs), _num(p, subs)
        if vg is None and vp is None:
            continue
        if vg is None or vp is None or not _close(vg, vp):
            return False
        agreed += 1
    if agreed == len(_POINTS):
        return True
    # some points could not be evaluated (a pole, a log of a negative): decide symbolically
    return agreed > 0 and _symbolic_zero(g - p)


def _scalar_equal(g: Scalar, p: Scalar, gold_decimals: int | None) -> bool:
    if expr_equal(g.expr, p.expr, gold_decimals):
        return True
    # 50% against 50, and 50 against 50%: a percentage may be stated without its sign
    if g.percent and not p.percent and expr_equal(g.expr * 100, p.expr):
        return True
    return p.percent and not g.percent and expr_equal(g.expr, p.expr * 100, gold_decimals)


def _relation_value(r: Relation) -> sympy.Expr | None:
    """``x = 3`` names the value 3 (either side may hold the variable)."""
    if r.op != "=":
        return None
    if r.lhs.is_Symbol and not r.rhs.free_symbols - {r.lhs}:
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
        if len(pred.items) <= 8 and all(equal(first, other) for other in pred.items[1:]):
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
            if isinstance(pred, (Interval, Relation)) and len(gold.items) == 2:
                ip = _as_interval(pred)  # (a, b) against [a, b) or a < x < b: the open interval
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

