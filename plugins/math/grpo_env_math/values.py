"""The shapes a parsed answer can take; leaves are sympy expressions built by the parser."""

from __future__ import annotations

from dataclasses import dataclass

import sympy


@dataclass(frozen=True)
class Scalar:
    """One value; ``percent`` when it was written with ``%`` (``expr`` is then already /100)."""

    expr: sympy.Expr
    percent: bool = False


@dataclass(frozen=True)
class Seq:
    """Several values: ``tuple`` (ordered, ``(1, 2)``), ``set`` (``\\{1, 2\\}``), ``list`` (a bare
    ``1, 2``: an unordered solution list) or ``hedge`` (``17 or 18``: never a valid answer)."""

    kind: str
    items: tuple[Value, ...]


@dataclass(frozen=True)
class Interval:
    lo: sympy.Expr
    hi: sympy.Expr
    lo_open: bool
    hi_open: bool


@dataclass(frozen=True)
class Union_:
    """A union of intervals (``\\cup``), order irrelevant."""

    parts: tuple[Interval, ...]


@dataclass(frozen=True)
class Matrix:
    rows: tuple[tuple[sympy.Expr, ...], ...]


@dataclass(frozen=True)
class Relation:
    """``lhs op rhs`` with op one of ``= < > <= >= !=``."""

    op: str
    lhs: sympy.Expr
    rhs: sympy.Expr


Value = Scalar | Seq | Interval | Union_ | Matrix | Relation
