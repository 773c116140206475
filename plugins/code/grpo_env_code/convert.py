"""Assert-style tests (HumanEval ``check(candidate)``, MBPP ``test_list``) turned into data.

Each ``assert candidate(<literals>) == <literal>`` becomes a (call, expected) pair, so the expected
value never enters the sandbox and the comparison happens in the trusted parent. Also converted:
``assert candidate(...)`` (truthy), ``assert not candidate(...)`` (falsy), ``... is True/False/None``,
``abs(candidate(...) - x) < tol`` (close) and no-op statements (``assert True``, docstrings, ``pass``,
literal assignments such as ``METADATA``). When any statement falls outside these shapes (loops,
helpers, random inputs) the whole test runs as statements in the child instead: the flagged
fallback: they run in a tester process of their own that calls the candidate over a socket
(``tests_from: tester``, see grpo_env.sandbox.verdict.judge_asserts).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from grpo_env.sandbox import codec


class NotConvertible(ValueError):
    """A statement that is not a (call, expected) pair."""


@dataclass
class Converted:
    tests: list[dict[str, Any]] = field(default_factory=list)  # FunctionTest fields, args/expected encoded
    setup: str = ""  # fallback only
    steps: list[str] = field(default_factory=list)  # fallback only

    @property
    def converted(self) -> bool:
        return not self.steps


MAX_FOLDED = 10_000  # largest str/list/tuple a folded constant expression may build (items or characters)
_FOLD = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
         ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b}


def _fold(node: ast.AST) -> Any:
    """A constant expression of a data set's test (``2.0 / 3.0``, ``3 + 5 + 7``, ``'ab' + 'cd'``,
    ``[1] * 3``) evaluated without eval: literals, containers of them, unary +/- and + - * / // %,
    with every result capped in size. Anything else is not convertible."""
    if isinstance(node, ast.Constant) or not isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Tuple, ast.List)):
        return ast.literal_eval(node)
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_fold(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _fold(node.operand)
        if type(value) not in (int, float):
            raise ValueError("unary minus on a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLD:
        a, b = _fold(node.left), _fold(node.right)
        numbers = type(a) in (int, float) and type(b) in (int, float)
        sequence = type(a) in (str, list, tuple) and (type(b) is type(a) or (type(b) is int and isinstance(node.op, ast.Mult)))
        if isinstance(node.op, ast.Mult) and type(a) is int and type(b) in (str, list, tuple):
            a, b = b, a  # 3 * 'ab'
            sequence = True
        if not numbers and not (sequence and isinstance(node.op, (ast.Add, ast.Mult))):
            raise ValueError("not a constant expression")
        if sequence and (len(a) if type(b) is int else len(a) + len(b)) * (b if type(b) is int else 1) > MAX_FOLDED:
            raise ValueError("folded value too large")
        if numbers and max(abs(a), abs(b)) > 10 ** 100:
            raise ValueError("number too large to fold")
        return _FOLD[type(node.op)](a, b)
    raise ValueError("not a constant expression")


def _literal(node: ast.AST) -> Any:
    try:
        value = _fold(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, ZeroDivisionError, OverflowError):
        raise NotConvertible(ast.unparse(node)) from None
    try:
        codec.encode(value)
    except codec.NotPlainData:
        raise NotConvertible(ast.unparse(node)) from None
    return value


def _call_args(node: ast.AST, names: set[str]) -> list[Any] | None:
    """The literal arguments of ``candidate(...)``, or None when ``node`` is not such a call."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise NotConvertible(ast.unparse(node))
        return [_literal(a) for a in node.args]
    return None


def _test(args: list[Any], expected: Any = None, check: str = "eq", tol: float = 0.0, strict: bool = False) -> dict[str, Any]:
    out = {"args": codec.encode(args), "expected": codec.encode(expected), "check": check, "tol": tol}
    return {**out, "strict": True} if strict else out


def convert_assert(node: ast.Assert, names: set[str]) -> dict[str, Any] | None:
    """One assert as a test dict; None for a no-op (``assert True``); NotConvertible otherwise."""
    t = node.test
    if isinstance(t, ast.Constant) and t.value is True:
        return None
    args = _call_args(t, names)
    if args is not None:
        return _test(args, check="truthy")
    if isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.Not):
        args = _call_args(t.operand, names)
        if args is not None:
            return _test(args, check="falsy")
    if isinstance(t, ast.Compare) and len(t.ops) == 1:
        op, left, right = t.ops[0], t.left, t.comparators[0]
        if isinstance(op, (ast.Eq, ast.Is)):
            for call, other in ((left, right), (right, left)):
                args = _call_args(call, names)
                if args is not None:
                    expected = _literal(other)
                    if isinstance(op, ast.Is) and expected not in (True, False, None):
                        raise NotConvertible(ast.unparse(t))
                    return _test(args, expected)
        if isinstance(op, (ast.Lt, ast.LtE)) and isinstance(left, ast.Call) and isinstance(left.func, ast.Name) \
                and left.func.id == "abs" and len(left.args) == 1 and isinstance(left.args[0], ast.BinOp) \
                and isinstance(left.args[0].op, ast.Sub):
            diff = left.args[0]
            for call, other in ((diff.left, diff.right), (diff.right, diff.left)):
                args = _call_args(call, names)
                if args is not None:
                    expected, tol = _literal(other), _literal(right)
                    if type(expected) in (int, float) and type(tol) in (int, float):
                        return _test(args, expected, "close", float(tol), strict=isinstance(op, ast.Lt))
    raise NotConvertible(ast.unparse(t))


def _noop(stmt: ast.stmt) -> bool:
    """A statement that tests nothing: ``pass``, a docstring or bare literal, a bare name
    (HumanEval/129's ``print``), ``assert <true constant>``. It is never a test step."""
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Constant, ast.Name)):
        return True
    if isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Constant) and stmt.test.value:
        return True
    return False


def _convert_body(body: list[ast.stmt], names: set[str]) -> list[dict[str, Any]]:
    tests = []
    for stmt in body:
        if _noop(stmt):
            continue
        if not isinstance(stmt, ast.Assert):
            raise NotConvertible(ast.unparse(stmt)[:80])
        t = convert_assert(stmt, names)
        if t is not None:
            tests.append(t)
    return tests


def _steps(body: list[ast.stmt]) -> list[str]:
    """Statements grouped so each step holds one assert-bearing statement (with what precedes it)."""
    steps, pending = [], []
    for stmt in body:
        if _noop(stmt):
            continue
        pending.append(ast.unparse(stmt))
        if any(isinstance(n, ast.Assert) for n in ast.walk(stmt)):
            steps.append("\n".join(pending))
            pending = []
    if pending:
        if steps:
            steps[-1] += "\n" + "\n".join(pending)
        else:
            steps.append("\n".join(pending))
    return steps


def convert_humaneval(test: str, entry_point: str) -> Converted:
    """HumanEval ``test`` source (a ``check(candidate)`` function plus literals) to data, or the
    flagged fallback when some statement is not a plain (call, expected) assert."""
    tree = ast.parse(test)
    check = None
    other: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "check":
            check = stmt
        else:
            other.append(stmt)
    if check is None:
        raise ValueError("HumanEval test has no `def check(candidate)`")
    names = {check.args.args[0].arg if check.args.args else "candidate"}
    literal_only = all(_noop(s) or (isinstance(s, ast.Assign) and _is_literal(s.value)) for s in other)
    if literal_only:
        try:
            return Converted(tests=_convert_body(check.body, names))
        except NotConvertible:
            pass
    setup = "\n".join(ast.unparse(s) for s in other)
    if names != {"candidate"}:
        setup += f"\n{next(iter(names))} = candidate"
    return Converted(setup=setup, steps=_steps(check.body))


def convert_mbpp(test_list: list[str], setup_code: str = "", entry_point: str | None = None) -> tuple[Converted, str]:
    """MBPP ``test_list`` (assert strings calling the function by name) to data; returns the
    conversion and the entry point (the function the asserts call)."""
    body: list[ast.stmt] = []
    for src in test_list:
        body += ast.parse(src).body
    entry_point = entry_point or _called_name(body)
    if entry_point is None:
        raise ValueError("MBPP tests call no function")
    if not setup_code.strip():
        try:
            return Converted(tests=_convert_body(body, {entry_point})), entry_point
        except NotConvertible:
            pass
    return Converted(setup=setup_code, steps=_steps(body)), entry_point


def _called_name(body: list[ast.stmt]) -> str | None:
    builtins = set(dir(__import__("builtins")))
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in builtins:
                return node.func.id
    return None


def _is_literal(node: ast.AST) -> bool:
    try:
        _fold(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, ZeroDivisionError, OverflowError):
        return False
    return True
