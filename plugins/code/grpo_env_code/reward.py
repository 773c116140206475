"""The ``code.tests`` reward: extract the program, run it in the core sandbox, judge in the parent."""

from __future__ import annotations

from grpo_env.sandbox import (
    Compare,
    FunctionTest,
    IsolationRefused,
    Limits,
    codec,
    default_sandbox,
    judge_asserts,
    judge_function,
    judge_program,
)
from grpo_env.types import Example, Outcome, Status
from grpo_env_code.extract import MAX_CODE_CHARS, extract_program

REWARD_TIMEOUT = 30.0  # the scoring service's hard deadline; every sandbox deadline stays well below it
DEFAULT_WALL = 4.0
STDIO_BUDGET = 16.0  # seconds for all cases of one stdin/stdout problem


def _limits(gold: dict) -> Limits:
    wall = min(float(gold.get("timeout", DEFAULT_WALL)), 10.0)
    return Limits(wall=wall, cpu=wall, memory_mb=int(gold.get("memory_mb", 1024)))


def _compare(gold: dict) -> Compare:
    return Compare(rel_tol=float(gold.get("float_rel_tol", 1e-9)), strict_bool=bool(gold.get("strict_bool", True)),
                   all_or_nothing=bool(gold.get("all_or_nothing", False)))


def code_tests(completion: str, example: Example) -> Outcome:
    """Fraction of the example's tests the completion's code passes (all-or-nothing as an option)."""
    gold = example.gold
    kind = gold.get("kind")
    if kind not in ("function", "stdio"):
        return Outcome.not_applicable(f"not a code example (gold kind {kind!r})")
    if len(completion) > MAX_CODE_CHARS:
        return Outcome.of(Status.REJECTED, 0.0, detail=f"completion over {MAX_CODE_CHARS} characters")
    prog = extract_program(completion, prompt=gold.get("prompt_code", ""), entry_point=gold.get("entry_point"),
                           which=gold.get("block", "last"))
    if not prog.code.strip():
        return Outcome.unparsable(detail="no code in the completion", extraction=prog.how)
    try:
        box = default_sandbox(allow_unisolated=bool(gold.get("allow_unisolated", False)) or None)
    except IsolationRefused as e:
        return Outcome.error(str(e))
    limits, compare = _limits(gold), _compare(gold)
    if kind == "stdio":
        cases = [(c["stdin"], c["stdout"]) for c in gold["cases"]]
        out = judge_program(prog.code, cases, compare=compare, sandbox=box, limits=limits, budget=STDIO_BUDGET)
    elif gold.get("tests"):
        tests = [FunctionTest(args=codec.decode(t["args"]), expected=codec.decode(t.get("expected")),
                              check=t.get("check", "eq"), tol=float(t.get("tol", 0.0)), strict=bool(t.get("strict")))
                 for t in gold["tests"]]
        out = judge_function(prog.code, gold["entry_point"], tests, compare=compare, sandbox=box, limits=limits)
    elif gold.get("steps"):
        out = judge_asserts(prog.code, gold["entry_point"], gold.get("setup", ""), gold["steps"],
                            prelude=gold.get("prompt_code", ""), compare=compare, sandbox=box, limits=limits)
    else:
        return Outcome.not_applicable("the example has no tests")
    return out.model_copy(update={"details": {**out.details, "extraction": prog.how}})
