"""Code problems as examples: rows in HumanEval, MBPP, function (ours) and stdin/stdout formats.

Every format becomes an :class:`~grpo_env.Example` whose ``gold`` holds what the reward needs:

- ``kind: "function"``: ``prompt_code`` (signature + docstring the body continues), ``entry_point``,
  and either ``tests`` (data: encoded ``args``, ``expected``, ``check``, ``tol``) or, for asserts that
  could not be converted, ``setup`` + ``steps`` (flagged: they run in the child);
- ``kind: "stdio"``: ``cases`` of ``{"stdin", "stdout"}``;

plus the scoring options (``timeout``, ``all_or_nothing`` ...), since a reward sees only the example.
"""

from __future__ import annotations

from typing import Any

from grpo_env.types import Example
from grpo_env_code.convert import convert_humaneval, convert_mbpp

FUNCTION_INSTRUCTION = ("Complete the following Python function. Reply with the complete function in a "
                        "```python code block.\n\n```python\n{code}```")
MBPP_INSTRUCTION = ("{text}\nWrite it as a Python function `{entry_point}`, in a ```python code block. "
                    "It must pass tests like:\n{example}")
STDIO_INSTRUCTION = ("{text}\n\nWrite a complete Python program that reads standard input and writes standard "
                     "output. Reply with the program in a ```python code block.")
SCORING_KEYS = ("timeout", "memory_mb", "all_or_nothing", "float_rel_tol", "strict_bool", "block", "allow_unisolated")


class RowError(ValueError):
    """A row that is not a code problem in any known format."""


def row_format(row: dict[str, Any]) -> str:
    if "test_list" in row:
        return "mbpp"
    if "cases" in row:
        return "stdio"
    if "tests" in row and "entry_point" in row:
        return "functions"
    if "test" in row and "entry_point" in row:
        return "humaneval"
    raise RowError("not a code problem: expected HumanEval fields (prompt, test, entry_point), MBPP fields "
                   f"(text, test_list), function fields (prompt, entry_point, tests) or stdio fields (cases); got {sorted(row)}")


def _scoring(options: dict[str, Any]) -> dict[str, Any]:
    return {k: options[k] for k in SCORING_KEYS if k in options}


def _example(ex_id: str, prompt: str, gold: dict[str, Any]) -> Example:
    return Example(id=ex_id, prompt=prompt, gold=gold)


def from_humaneval(row: dict[str, Any], options: dict[str, Any]) -> Example:
    code, entry = str(row["prompt"]), str(row["entry_point"])
    conv = convert_humaneval(str(row["test"]), entry)
    gold = {"kind": "function", "prompt_code": code, "entry_point": entry, "tests": conv.tests,
            "setup": conv.setup, "steps": conv.steps, "converted": conv.converted, **_scoring(options)}
    return _example(str(row.get("task_id") or row.get("id") or entry), FUNCTION_INSTRUCTION.format(code=code), gold)


def from_mbpp(row: dict[str, Any], options: dict[str, Any]) -> Example:
    tests = list(row["test_list"]) + (list(row.get("challenge_test_list") or []) if options.get("mbpp_challenge") else [])
    conv, entry = convert_mbpp(tests, str(row.get("test_setup_code") or ""), row.get("entry_point"))
    imports = "\n".join(str(i) for i in row.get("test_imports") or [])  # MBPP "sanitized": what the asserts use
    if imports and not conv.converted:
        conv.setup = f"{imports}\n{conv.setup}"
    text = str(row.get("text") or row.get("prompt") or "")
    prompt = MBPP_INSTRUCTION.format(text=text, entry_point=entry, example=row["test_list"][0])
    gold = {"kind": "function", "prompt_code": "", "entry_point": entry, "tests": conv.tests, "setup": conv.setup,
            "steps": conv.steps, "converted": conv.converted, **_scoring(options)}
    return _example(f"mbpp/{row.get('task_id', entry)}", prompt, gold)


def from_functions(row: dict[str, Any], options: dict[str, Any]) -> Example:
    """Our function format: HumanEval's ``prompt``/``entry_point`` with ``tests`` as data
    (``{"args": [...], "expected": ...}``, tuples etc. tagged as in :mod:`grpo_env.sandbox.codec`)."""
    code, entry = str(row["prompt"]), str(row["entry_point"])
    tests = []
    for t in row["tests"]:
        if not isinstance(t, dict) or "args" not in t or not isinstance(t["args"], list):
            raise RowError(f"each test needs an 'args' list, got {t!r}"[:200])
        tests.append({"args": t["args"], "expected": t.get("expected"), "check": t.get("check", "eq"),
                      "tol": float(t.get("tol", 0.0))})
    gold = {"kind": "function", "prompt_code": code, "entry_point": entry, "tests": tests, "setup": "", "steps": [],
            "converted": True, **_scoring(options)}
    return _example(str(row.get("task_id") or row.get("id") or entry), FUNCTION_INSTRUCTION.format(code=code), gold)


def from_stdio(row: dict[str, Any], options: dict[str, Any]) -> Example:
    cases = [{"stdin": str(c.get("stdin", "")), "stdout": str(c["stdout"])} for c in row["cases"]]
    if not cases:
        raise RowError("a stdio problem needs at least one case")
    gold = {"kind": "stdio", "cases": cases, **_scoring(options)}
    text = str(row.get("description") or row.get("text") or row.get("prompt") or "")
    return _example(str(row.get("task_id") or row.get("id") or "stdio"), STDIO_INSTRUCTION.format(text=text), gold)


READERS = {"humaneval": from_humaneval, "mbpp": from_mbpp, "functions": from_functions, "stdio": from_stdio}


def example_from_row(row: dict[str, Any], options: dict[str, Any]) -> Example:
    """An example from a row of any supported format (``options["format"]`` forces one)."""
    fmt = options.get("format") or "auto"
    if fmt == "auto":
        fmt = row_format(row)
    try:
        return READERS[fmt](row, options)
    except KeyError as e:
        raise RowError(f"{fmt} row lacks field {e}") from None
    except SyntaxError as e:
        raise RowError(f"{fmt} row's tests do not parse: {e}") from None
    except RowError:
        raise
    except (ValueError, TypeError, RecursionError, MemoryError) as e:
        raise RowError(f"{fmt} row is malformed: {type(e).__name__}: {e}"[:300]) from None
