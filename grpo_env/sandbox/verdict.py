"""Verdicts computed in the trusted parent from data: run the code in a sandbox, compare there.

The child only ever receives code and call arguments. It sends back each test's result as tagged
JSON; here it is decoded into built-in values and compared with :func:`codec.equal`, so no
model-defined ``__eq__`` runs in the grader, a result that is not plain data fails, the exit code
never means pass, and a test whose record is missing (or duplicated) fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from grpo_env.sandbox import codec
from grpo_env.sandbox.supervisor import EXIT_SETUP, IsolationRefused, Limits, RunResult, Sandbox, default_sandbox
from grpo_env.text import plain
from grpo_env.types import Outcome, Status

Check = Literal["eq", "truthy", "falsy", "close"]


@dataclass(frozen=True)
class FunctionTest:
    """Call the entry point with ``args``; ``check`` says how to judge the result:
    ``eq`` (type-strict equality with ``expected``), ``truthy``/``falsy``, or ``close``
    (``abs(result - expected) <= tol``, or ``< tol`` when ``strict``)."""

    args: Sequence[Any]
    expected: Any = None
    check: Check = "eq"
    tol: float = 0.0
    strict: bool = False  # close: the distance must be below tol (``<``), not at most (``<=``)


@dataclass(frozen=True)
class Compare:
    """How results are compared: float tolerances, whether ``True`` may equal ``1``, and whether
    the score is the fraction of tests passed or all-or-nothing."""

    rel_tol: float = 1e-9
    abs_tol: float = 0.0
    strict_bool: bool = True
    all_or_nothing: bool = False


@dataclass
class Tally:
    passed: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _sandbox(sandbox: Sandbox | None) -> Sandbox:
    return sandbox if sandbox is not None else default_sandbox()


def judge_test(rec: dict | None, test: FunctionTest, cmp: Compare) -> tuple[bool, str]:
    """Whether one function test passed, from its record (None when it never reported). A record
    that cannot be judged (nested to exhaust the recursion limit, ...) fails its test."""
    try:
        return _judge(rec, test, cmp)
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as e:
        return False, f"result could not be judged: {type(e).__name__}"


def _judge(rec: dict | None, test: FunctionTest, cmp: Compare) -> tuple[bool, str]:
    if rec is None:
        return False, "no result reported"
    if "e" in rec:
        return False, f"raised {plain(str(rec['e'])[:200])}"  # the model's message: escaped here, where it is made
    try:
        value = codec.decode(rec.get("v"))
    except (codec.NotPlainData, ValueError, TypeError) as e:
        return False, f"result not plain data: {e}"
    if test.check == "truthy":
        return bool(value), "" if value else f"result is falsy: {_short(value)}"
    if test.check == "falsy":
        return not value, "" if not value else f"result is truthy: {_short(value)}"
    if test.check == "close":
        ok = type(value) in (int, float) and type(test.expected) in (int, float) and (
            abs(value - test.expected) < test.tol if test.strict else abs(value - test.expected) <= test.tol)
        return ok, "" if ok else "result not within tolerance"
    ok = codec.equal(value, test.expected, rel_tol=cmp.rel_tol, abs_tol=cmp.abs_tol, strict_bool=cmp.strict_bool)
    return ok, "" if ok else f"wrong result: got {_short(value)}, expected {_short(test.expected)}"


def _short(v: Any) -> str:
    text = repr(v)  # decoded values are built-ins only: repr runs no model code
    return text if len(text) <= 80 else text[:77] + "..."


def _outcome(run: RunResult, tally: Tally, cmp: Compare, **extra: Any) -> Outcome:
    """Score = fraction passed (or all-or-nothing); status from the run's own evidence first."""
    total = len(tally.passed)
    n = sum(tally.passed)
    score = (n / total if total else 0.0)
    if cmp.all_or_nothing:
        score = 1.0 if total and n == total else 0.0
    details = {"passed": n, "total": total, "isolation": run.mode, **extra}  # no timings: check wants determinism
    if run.detail:
        details["detail"] = run.detail
    if run.forged:
        details["ignored_records"] = run.forged
    if run.duplicates:
        details["duplicate_records"] = sorted(run.duplicates)
    failures = [f"test {i}: {why}" for i, why in enumerate(tally.notes) if why][:5]
    if failures:
        details["failures"] = failures
    if run.stderr:
        details["stderr"] = run.stderr[-600:].decode(errors="replace")
    if run.status == "error":
        return Outcome.error(f"sandbox: {run.detail}", **details)
    if run.status == "syntax_error":
        return Outcome.of(Status.SYNTAX_ERROR, 0.0, **details)
    if run.status in ("timeout", "memory_limit", "output_limit"):
        return Outcome.of(Status(run.status), score, **details)
    if total and n == total and run.status == "ok":
        return Outcome.correct(score, **details)
    if run.status == "ok" and len(run.records) < total:
        details["detail"] = f"exited before reporting {total - len(run.records)} of {total} tests"
        return Outcome.of(Status.RUNTIME_ERROR, score, **details)
    if run.status == "runtime_error":
        return Outcome.of(Status.RUNTIME_ERROR, score, **details)
    if n:
        return Outcome.partial(score, **details)
    if total and all(why.startswith("raised") for why in tally.notes):
        return Outcome.of(Status.RUNTIME_ERROR, 0.0, **details)
    return Outcome.incorrect(0.0, **details)


def judge_function(code: str, entry_point: str, tests: Sequence[FunctionTest], *, compare: Compare = Compare(),
                   sandbox: Sandbox | None = None, limits: Limits | None = None) -> Outcome:
    """Run ``entry_point`` of ``code`` on each test's arguments in the sandbox; judge here."""
    calls = [codec.encode(list(t.args)) for t in tests]
    run = _sandbox(sandbox).run("function", {"code": code, "entry_point": entry_point, "calls": calls,
                                             "module_name": "solution"}, limits=limits)
    tally = Tally()
    for i, t in enumerate(tests):
        rec = None if i in run.duplicates else run.records.get(i)
        ok, why = judge_test(rec, t, compare) if i not in run.duplicates else (False, "reported twice")
        tally.passed.append(ok)
        tally.notes.append(why)
    return _outcome(run, tally, compare, tests_from="data")


def judge_asserts(code: str, entry_point: str, setup: str, steps: Sequence[str], *, prelude: str = "",
                  compare: Compare = Compare(), sandbox: Sandbox | None = None, limits: Limits | None = None) -> Outcome:
    """Assert-style tests that could not be turned into data: the data set's test code runs in a
    tester run of its own (``prelude``, the prompt's own definitions, then ``setup``, then each
    step), calling the candidate's entry point in the candidate's run over a socket, plain data
    both ways (:meth:`Sandbox.run_tested`). The candidate's code never shares an interpreter with
    the tests. A suite that hands the candidate anything but plain data is ``not_applicable``."""
    tests = {"prelude": prelude, "setup": setup, "steps": list(steps), "entry_point": entry_point}
    tester, run = _sandbox(sandbox).run_tested({"code": code, "entry_point": entry_point, "module_name": "solution"},
                                               tests, limits=limits)
    if tester.not_applicable:
        return Outcome.not_applicable(tester.not_applicable, tests_from="tester")
    if tester.status == "error" or not tester.started or tester.exit_code == EXIT_SETUP:
        why = tester.detail or tester.stderr.decode(errors="replace")[-300:] or tester.status
        return Outcome.error(f"the tests could not run: {why}", tests_from="tester")
    tally = Tally()
    for i in range(len(steps)):
        rec = None if i in tester.duplicates else tester.records.get(i)
        if rec is None:
            ok, why = False, "no result reported" if i not in tester.duplicates else "reported twice"
        elif rec.get("ok") is True:
            ok, why = True, ""
        elif str(rec.get("e")).startswith("AssertionError"):
            ok, why = False, "assertion failed"
        else:
            ok, why = False, f"raised {str(rec.get('e'))[:200]}"
        tally.passed.append(ok)
        tally.notes.append(why)
    # the run-level status is the candidate's (its clock, limits, exit); the tester's own limits
    # only matter when the candidate's run was clean
    final = run if run.status != "ok" or tester.status in ("ok", "runtime_error") else tester
    final = replace(final, records={i: {} for i in tester.records}, stderr=run.stderr)
    return _outcome(final, tally, compare, tests_from="tester")


def output_matches(got: str, expected: str) -> bool:
    """stdout check: same number of lines, each equal after trimming trailing whitespace."""
    a = [line.rstrip() for line in got.rstrip("\n").split("\n")] if got.strip() else []
    b = [line.rstrip() for line in expected.rstrip("\n").split("\n")] if expected.strip() else []
    return a == b


def judge_program(code: str, cases: Sequence[tuple[str, str]], *, compare: Compare = Compare(),
                  sandbox: Sandbox | None = None, limits: Limits | None = None,
                  budget: float | None = None) -> Outcome:
    """Run ``code`` as a script once per (stdin, expected stdout) case; compare lines here.
    Stops at the first run-level failure (timeout, limits, sandbox error); ``budget`` caps the
    total wall time of all cases."""
    import time
    from dataclasses import replace

    box = _sandbox(sandbox)
    lim = limits or box.limits
    start = time.monotonic()
    tally = Tally()
    worst: RunResult | None = None
    for stdin, expected in cases:
        left = lim.wall if budget is None else min(lim.wall, budget - (time.monotonic() - start))
        if left <= 0.05:
            worst = worst or RunResult(status="timeout", mode=box.mode, detail="time budget for all cases used up")
            break
        run = box.run("program", {"code": code}, stdin=stdin.encode(), limits=replace(lim, wall=left))
        if run.status == "syntax_error":
            worst = run
            break
        ok = run.status == "ok" and output_matches(run.stdout.decode(errors="replace"), expected)
        tally.passed.append(ok)
        tally.notes.append("" if ok else ("wrong output" if run.status == "ok" else run.status))
        if run.status != "ok" and (worst is None or worst.status in ("ok", "runtime_error")):
            worst = run
        if run.status in ("timeout", "memory_limit", "output_limit", "error"):
            break
    tally.passed += [False] * (len(cases) - len(tally.passed))
    tally.notes += ["not run"] * (len(cases) - len(tally.notes))
    final = worst or RunResult(status="ok", mode=box.mode, wall=time.monotonic() - start)
    final.records = {i: {} for i in range(len(cases))}  # every case ran or is counted as failed
    return _outcome(final, tally, compare, tests_from="stdio")


def self_test() -> list[tuple[str, bool, str]]:
    """Start a sandbox exactly as ``code.tests`` does and score an honest submission in it:
    ``(check, passed, detail)`` rows for ``grpo-env doctor``, the first saying whether it started."""
    try:
        box = Sandbox()
    except IsolationRefused as e:
        return [("sandbox start", False, str(e))]
    try:
        out = judge_function("def add(a, b):\n    return a + b\n", "add", [FunctionTest([2, 3], 5)], sandbox=box)
        started = out.status is Status.CORRECT
        rows = [("sandbox start", started, f"{box.mode} mode: an honest submission scored {out.score:g}" if started
                 else f"{out.details.get('reason') or out.details.get('detail') or out.status.value}; runs are "
                      "scored `error` until this is fixed (or set GRPO_ENV_ALLOW_UNISOLATED=1 to accept the fallback)")]
        if started and box.mode == "namespaces":
            seccomp = box.features.get("seccomp", "off")
            rows += [("seccomp filter", not seccomp.startswith("off"), seccomp),
                     ("read-only view", bool(box.features.get("read_only")),
                      f"every bind read-only, nosuid, nodev ({box.features.get('read_only')}); package directories masked"),
                     ("IPC namespace", True, "a SysV IPC and POSIX message-queue namespace per run")]
        rows.append(("memory", started, box.memory_mode()))
        return rows
    finally:
        box.close()
