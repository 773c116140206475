"""Code extraction from completions and conversion of assert-style tests into data (no sandbox)."""

from __future__ import annotations

import re
import time

import pytest
from grpo_env_code import extract
from grpo_env_code.convert import convert_humaneval, convert_mbpp
from grpo_env_code.extract import MAX_CODE_CHARS, extract_program, pick_block
from hypothesis import given, settings
from hypothesis import strategies as st
from grpo_env_code.problems import RowError, example_from_row

from grpo_env.sandbox import codec

PROMPT = "from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    \"\"\"Add.\"\"\"\n"


def test_last_python_block_wins_over_others():
    text = ("First try:\n```python\ndef add(a, b):\n    return 0\n```\nShell:\n```bash\nls\n```\n"
            "Fixed:\n```python\ndef add(a, b):\n    return a + b\n```\nDone.")
    assert "return a + b" in pick_block(text)
    assert "return 0" in pick_block(text, "first")
    prog = extract_program(text, prompt=PROMPT, entry_point="add")
    assert prog.how == "fenced"
    assert prog.code.startswith("from typing import List\n") and "return a + b" in prog.code


def test_unlabeled_block_used_when_no_python_block():
    prog = extract_program("```\ndef add(a, b):\n    return a + b\n```", prompt=PROMPT, entry_point="add")
    assert prog.how == "fenced" and "return a + b" in prog.code


def test_fenced_body_continues_the_prompt():
    prog = extract_program("```python\n    return a + b\n```", prompt=PROMPT, entry_point="add")
    assert prog.how == "fenced_body" and prog.code == PROMPT + "    return a + b\n"


def test_raw_body_and_reindented_body():
    assert extract_program("    return a + b\n", prompt=PROMPT, entry_point="add").code == PROMPT + "    return a + b\n"
    prog = extract_program("s = a + b\nreturn s\n", prompt=PROMPT, entry_point="add")
    assert prog.how == "body_reindented" and prog.code.endswith("    s = a + b\n    return s\n")


def test_raw_whole_function():
    prog = extract_program("def add(a, b):\n    return a + b\n", prompt=PROMPT, entry_point="add")
    assert prog.how == "raw" and "def add(a, b)" in prog.code


def test_empty_and_huge_completions():
    assert extract_program("   \n", prompt=PROMPT, entry_point="add").how == "empty"
    assert extract_program("x" * 200_000, prompt=PROMPT, entry_point="add").how == "too_long"


def test_humaneval_asserts_become_data():
    test = ("METADATA = {'author': 'x'}\n\n"
            "def check(candidate):\n"
            "    assert candidate([1, 2], 3) == (1, 2)\n"
            "    assert 5 == candidate(2, 3)\n"
            "    assert candidate('a') is True\n"
            "    assert not candidate(0)\n"
            "    assert candidate(1)\n"
            "    assert abs(candidate(2.0) - 1.5) < 1e-6\n"
            "    assert True, 'debug'\n")
    conv = convert_humaneval(test, "f")
    assert conv.converted
    decoded = [(codec.decode(t["args"]), codec.decode(t["expected"]), t["check"], t["tol"]) for t in conv.tests]
    assert decoded == [([[1, 2], 3], (1, 2), "eq", 0.0), ([2, 3], 5, "eq", 0.0), (["a"], True, "eq", 0.0),
                       ([0], None, "falsy", 0.0), ([1], None, "truthy", 0.0), ([2.0], 1.5, "close", 1e-6)]


def test_humaneval_loops_fall_back_to_flagged_statements():
    test = ("import math\n\ndef check(candidate):\n    assert candidate(1) == 1\n"
            "    for x in range(3):\n        assert candidate(x) == x\n    y = 2\n    assert candidate(y) == 2\n")
    conv = convert_humaneval(test, "f")
    assert not conv.converted
    assert conv.setup == "import math"
    assert conv.steps == ["assert candidate(1) == 1", "for x in range(3):\n    assert candidate(x) == x",
                          "y = 2\nassert candidate(y) == 2"]


def test_mbpp_conversion_and_entry_point():
    conv, entry = convert_mbpp(["assert remove_Occ('hello','l') == 'heo'", "assert remove_Occ('abcda','a') == 'bcd'"])
    assert entry == "remove_Occ" and conv.converted and len(conv.tests) == 2
    conv, entry = convert_mbpp(["assert set(similar((3, 4), (5, 4))) == set((4,))"])
    assert entry == "similar" and not conv.converted and conv.steps


def test_rows_of_every_format():
    he = {"task_id": "HumanEval/x", "prompt": PROMPT, "entry_point": "add",
          "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}
    ex = example_from_row(he, {})
    assert ex.id == "HumanEval/x" and ex.gold["kind"] == "function" and ex.gold["converted"]
    assert "3" not in ex.prompt[0].content.split("```python")[1].split("def add")[0]  # no test leaks into the prompt
    mb = {"task_id": 7, "text": "Add two numbers.", "test_list": ["assert add(1, 2) == 3"], "test_setup_code": ""}
    assert example_from_row(mb, {}).gold["entry_point"] == "add"
    fn = {"task_id": "t", "prompt": PROMPT, "entry_point": "add", "tests": [{"args": [1, 2], "expected": 3}]}
    assert example_from_row(fn, {"timeout": 2.0}).gold["timeout"] == 2.0
    st = {"task_id": "s", "description": "Echo.", "cases": [{"stdin": "a\n", "stdout": "a\n"}]}
    assert example_from_row(st, {}).gold["kind"] == "stdio"
    with pytest.raises(RowError, match="not a code problem"):
        example_from_row({"question": "What?"}, {})


def test_codec_is_type_strict():
    eq = codec.equal
    assert eq(1, 1.0) and eq(0.1 + 0.2, 0.3) and not eq(1, 1.5)
    assert not eq(True, 1) and not eq(1, True) and eq(True, 1, strict_bool=False)
    assert not eq([1, 2], (1, 2)) and eq((1, [2]), (1, [2]))
    assert eq({"a": 1}, {"a": 1.0}) and not eq({"a": 1}, {"b": 1})
    assert eq(float("nan"), float("nan"))
    for value in [(1, "a"), {1, 2}, frozenset([3]), {1: "x"}, {"$t": 1}, b"\x00", 10**5000, float("inf"), [None]]:
        assert codec.loads(codec.dumps(value)) == value
    class Rigged(int):
        def __eq__(self, other):
            return True
    with pytest.raises(codec.NotPlainData):
        codec.encode(Rigged(3))


# -- linear-time extraction (security review #10, item 11) ---------------------------------------


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


FLOOD_UNITS = {
    "unclosed openers": "```\n``",
    "python openers": "```python\n",
    "alternating opener and text": "```py\nx\n",
    "backtick runs": "`" * 61 + "\n",
    "indented openers": " \t" * 40 + "```python y\n",
    "long label": "```" + "p" * 5000 + "\n",
    "empty blocks": "```\n",
    "python blocks": "```python\npass\n```\n",
    "no newline": "```",
    "spaces": " " * 999 + "\n",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", FLOOD_UNITS)
def test_fence_floods_extract_in_linear_time(name):
    """100 KB (the reward's cap) of each flood through extract_program, 1 MB through the fence scan:
    the regex this replaced took 3 to 90 s on 100 KB of most of these."""
    unit = FLOOD_UNITS[name]
    text = _fill(unit, MAX_CODE_CHARS)
    start = time.monotonic()
    prog = extract_program(text, prompt=PROMPT, entry_point="add")
    took = time.monotonic() - start
    assert took < 1.0, f"{name}: {took:.2f}s"
    assert prog.how in ("fenced", "fenced_body", "raw", "body", "body_reindented", "empty", "too_many_fences")
    start = time.monotonic()
    try:
        pick_block(_fill(unit, 1_000_000))
    except extract.TooManyFences:
        pass
    took = time.monotonic() - start
    assert took < 1.0, f"{name} (1 MB): {took:.2f}s"


def test_too_many_fences_is_no_code():
    block = "```python\ndef add(a, b):\n    return a + b\n```\n"
    assert extract_program(block * extract.MAX_FENCES, prompt=PROMPT, entry_point="add").how == "fenced"
    prog = extract_program(block * (extract.MAX_FENCES + 1), prompt=PROMPT, entry_point="add")
    assert prog == extract.Program("", "too_many_fences")
    with pytest.raises(extract.TooManyFences):
        pick_block(block * (extract.MAX_FENCES + 1))


# The regular expression the line scan replaced: its behaviour on small inputs is the specification.
OLD_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.DOTALL | re.MULTILINE)
FENCE_LINES = ["```", "```python", "```py", "``` Python3 {.x}", "  ```  ", "\t```\t", "````", "````py", "```bash",
               "```c++", "``` `", "```\r", "x", "", " ", "def add(a, b):", "    return a + b", "`", "``", "a```",
               "```py\u2028```"]


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from(FENCE_LINES), max_size=12).map("\n".join), st.sampled_from(["", "\n", " ", "`"]))
def test_fence_scan_matches_the_regex_it_replaced(lines, end):
    text = lines + end
    old = [(m.group(1).lower(), m.group(2)) for m in OLD_FENCE.finditer(text)]
    assert extract.fenced_blocks(text) == old


def _old_defines(code: str, name: str) -> bool:
    n = re.escape(name)
    return re.search(rf"^(?:async\s+)?def\s+{n}\s*\(|^class\s+{n}\b|^{n}\s*=", code, re.MULTILINE) is not None


_PARTS = [["", "", "async ", "async\t", "x"], ["def", "def", "class", "", " def"], ["", " ", "\t", "  "],
          ["add", "add", "adder", "add_", "add\u00e9", "ad"], ["", " ", "\t"], ["(", "(", "=", "==", ":", "", "\u00e9"]]
_line = st.tuples(*(st.sampled_from(p) for p in _PARTS)).map("".join)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.lists(_line | st.sampled_from(["", "def", "async", "add", " "]), max_size=4).map("\n".join))
def test_defines_matches_the_regex_it_replaced(code):
    """Line by line: the regex's whitespace could run across lines, and "def\\nadd(" defines nothing."""
    assert extract.defines(code, "add") == any(_old_defines(line, "add") for line in code.split("\n"))
    assert not extract.defines("def\nadd(a, b):", "add") and not extract.defines("add\n= 1", "add")


def test_constant_expressions_of_the_tests_are_folded_into_data():
    """`2.0 / 3.0`, `3 + 5 + 7`, `'ab' + 'cd'`, `3 * 19` in a HumanEval assert are the data set's
    constants: folded (no eval), so the test is data and its expectation never enters the child."""
    from grpo_env_code.convert import convert_humaneval

    test = ("def check(candidate):\n    assert abs(candidate([1.0, 2.0, 3.0]) - 2.0 / 3.0) < 1e-06\n"
            "    assert candidate('abcde' + 'cade') == (3 + 5 + 7, 3 * 5 * 7)\n    assert candidate(3 * 19) == [3, 19]\n"
            "    assert candidate(-(2 * 4)) == 'x' * 3\n")
    conv = convert_humaneval(test, "f")
    assert conv.converted and [t["check"] for t in conv.tests] == ["close", "eq", "eq", "eq"]
    assert conv.tests[0]["expected"] == 2.0 / 3.0 and conv.tests[0]["strict"] is True
    assert conv.tests[1]["args"] == ["abcdecade"] and conv.tests[1]["expected"] == {"$t": [15, 105]}
    assert conv.tests[2]["args"] == [57] and conv.tests[3]["args"] == [-8] and conv.tests[3]["expected"] == "xxx"
    for unfoldable in ("'x' * 10 ** 9", "1 / 0", "len('abc')", "[0] * 100000"):
        assert not convert_humaneval(f"def check(candidate):\n    assert candidate({unfoldable}) == 1\n", "f").converted
