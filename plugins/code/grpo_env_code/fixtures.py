"""Fixtures for ``grpo-env check``: every shipped problem's canonical solution scores full (as a
fenced whole function and as a bare body), a wrong one zero, and hostile ones get typed statuses."""

from __future__ import annotations

import json

from grpo_env.types import Fixture, Status
from grpo_env_code.problems import example_from_row
from grpo_env_code.tasks import DATA_DIR

FAST = {"timeout": 1.5}  # fixtures that hang should not hold `grpo-env check` up for long


def _rows(kind: str) -> list[dict]:
    rows = []
    for split in ("train", "test"):
        path = DATA_DIR / kind / f"{split}.jsonl"
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def function_fixtures() -> list[Fixture]:
    out: list[Fixture] = []
    for row in _rows("functions"):
        ex = example_from_row(row, FAST)
        whole = row["prompt"] + row["canonical_solution"]
        out.append(Fixture(example=ex, completion=f"Here it is:\n```python\n{whole}```\n", expect="full",
                           note="canonical solution, fenced"))
        out.append(Fixture(example=ex, completion=row["canonical_solution"], expect="full",
                           note="canonical body continuing the prompt"))
        out.append(Fixture(example=ex, completion="    return 'wrong answer'\n", expect="zero", note="wrong body"))
    ex = example_from_row(_rows("functions")[0], FAST)
    hostile = [
        ("```python\nimport sys\nsys.exit(0)\n```", Status.RUNTIME_ERROR, "exits 0 before any test"),
        ("```python\ndef sum_of_squares(nums):\n    while True:\n        pass\n```", Status.TIMEOUT, "infinite loop"),
        ("```python\ndef sum_of_squares(nums):\n    return [0] * (1 << 40)\n```", Status.MEMORY_LIMIT, "memory bomb"),
        ("```python\ndef sum_of_squares(nums:\n```", Status.SYNTAX_ERROR, "does not parse"),
        ("```python\nclass E:\n    def __eq__(self, o):\n        return True\n"
         "def sum_of_squares(nums):\n    return E()\n```", Status.RUNTIME_ERROR, "always-equal object"),
        ("```python\nimport sys\ndef sum_of_squares(nums):\n    while True:\n        sys.stdout.write('x' * 99999)\n```",
         Status.OUTPUT_LIMIT, "output flood"),
        ("I cannot write code.", Status.SYNTAX_ERROR, "prose instead of code"),
        ("", Status.UNPARSABLE, "empty completion"),
    ]
    for completion, status, note in hostile:
        out.append(Fixture(example=ex, completion=completion, expect=status, reward="code.tests", note=note))
    return out


def stdio_fixtures() -> list[Fixture]:
    out: list[Fixture] = []
    for row in _rows("stdio"):
        ex = example_from_row(row, FAST)
        out.append(Fixture(example=ex, completion=f"```python\n{row['canonical_solution']}```", expect="full",
                           note="canonical program"))
        out.append(Fixture(example=ex, completion="print('no')\n", expect="zero", note="wrong output"))
    ex = example_from_row(_rows("stdio")[0], FAST)
    out.append(Fixture(example=ex, completion="```python\nimport sys\nprint(sys.stdin.read() and 3)\n"
                       "while True:\n    pass\n```", expect=Status.TIMEOUT, reward="code.tests", note="hangs"))
    return out
