"""Attacks on the code verdict through the real entry points (security review #10): answers that are
close but not equal (item 10), and completions built to make the trusted extractor slow (item 11).

Each asserts the score and status, a generous time bound, and that nothing is left behind: no
process outlives the scoring service or the `grpo-env score` command, and no temporary file remains.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from grpo_env_code import register_rewards
from grpo_env_code.extract import MAX_CODE_CHARS
from grpo_env_code.problems import example_from_row

from grpo_env.sandbox import detect
from grpo_env.scoring import ScoringService
from grpo_env.testing import collect
from grpo_env.types import Status

pytestmark = pytest.mark.skipif(not detect().full, reason="code tasks need namespaces isolation (see grpo-env doctor)")

REWARDS = collect(register_rewards)
GRPO_ENV = Path(sys.executable).with_name("grpo-env")

# A subreaper around the command: anything the command leaves running is re-parented to it, found,
# killed and reported in the JSON file named by the first argument.
_REAPER = """
import ctypes, json, os, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
rc = subprocess.call(sys.argv[2:])
deadline, left = time.monotonic() + 5, []
while True:
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if pid == 0 and time.monotonic() > deadline:
        left = open(f"/proc/self/task/{os.getpid()}/children").read().split()
        for p in left:
            os.kill(int(p), 9)
        break
    time.sleep(0.02 if pid == 0 else 0)
json.dump({"rc": rc, "left": left}, open(sys.argv[1], "w"))
"""


def run_score_cli(task: str, rows: list[dict], tmp_path: Path, timeout: float = 300) -> tuple[list[dict], float]:
    """`grpo-env score TASK` on ``rows``: (output rows, seconds). Asserts it succeeded and left no
    process running, no temporary file in its TMPDIR and nothing but the output next to the input."""
    work, tmp = tmp_path / "score", tmp_path / "tmpdir"
    work.mkdir()
    tmp.mkdir()
    src, dst, report = work / "rows.jsonl", work / "out.jsonl", tmp_path / "reaper.json"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-c", _REAPER, str(report), str(GRPO_ENV), "score", task, "--input", str(src),
           "--output", str(dst)]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "TMPDIR": str(tmp)})
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(report.read_text())
    assert result["rc"] == 0, proc.stdout + proc.stderr
    assert result["left"] == [], f"processes survived grpo-env score: {result['left']}"
    assert os.listdir(tmp) == [], "temporary files left behind"
    assert sorted(os.listdir(work)) == ["out.jsonl", "rows.jsonl"]
    return [json.loads(line) for line in dst.read_text().splitlines()], took


def _children() -> set[int]:
    pid = os.getpid()
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def score_in_service(items, tmp_path: Path, monkeypatch) -> tuple[list, float]:
    """Score ``items`` with a 2-worker ScoringService: (outcomes, seconds). Asserts that no process
    the service started is left once it is closed, and no temporary file."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # the forked workers inherit it
    before = _children()
    start = time.monotonic()
    with ScoringService(REWARDS, workers=2) as service:
        outs = service.score(items)
    took = time.monotonic() - start
    deadline = time.monotonic() + 5
    while _children() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _children() - before, f"processes left by the scoring service: {_children() - before}"
    assert os.listdir(tmp) == [], "temporary files left behind"
    return outs, took


def _row(name: str, doc: str, tests: list[dict]) -> dict:
    return {"task_id": f"attack/{name}", "prompt": f'def {name}(x):\n    """{doc}"""\n', "entry_point": name,
            "tests": tests}


def _example(row: dict):
    return example_from_row(row, {"timeout": 2.0}).model_copy(update={"task": "code"})


# -- item 10: an int expectation accepts only an equal int --------------------------------------

SUCCESSOR = _row("successor", "x + 1.", [{"args": [1000000005], "expected": 1000000006}])
HALF = _row("half", "x / 2.", [{"args": [3], "expected": 1.5}, {"args": [4], "expected": 2.0}])
UPTO = _row("upto", "[1, 2, ..., x].", [{"args": [3], "expected": [1, 2, 3]}])
COUNT = _row("count_true", "How many items of x are true.", [{"args": [[True, False]], "expected": 1}])
INDEX = _row("index", "dict(enumerate(x)).", [{"args": [["a", "b"]], "expected": {"$d": [[0, "a"], [1, "b"]]}}])
UNIQUE = _row("unique", "set(x).", [{"args": [[1, 2, 2]], "expected": {"$s": [1, 2]}}])

# (row, candidate body, status): every "incorrect" one passed before the fix, except count_true's
# True (bool is not int was already enforced, kept here as a guard).
CASES = [
    (SUCCESSOR, "return x + 1", Status.CORRECT),
    (SUCCESSOR, "return float(x)", Status.INCORRECT),  # 1000000005.0: within rel 1e-9 of 1000000006
    (SUCCESSOR, "return float(x + 1)", Status.INCORRECT),  # the right value, the wrong type
    (SUCCESSOR, "return x + 1.0", Status.INCORRECT),
    (HALF, "return x / 2", Status.CORRECT),  # a float expectation keeps its tolerance ...
    (HALF, "return x // 2 if x % 2 == 0 else x / 2", Status.CORRECT),  # ... and accepts an equal int
    (UPTO, "return list(range(1, x + 1))", Status.CORRECT),
    (UPTO, "return [float(i) for i in range(1, x + 1)]", Status.INCORRECT),
    (COUNT, "return sum(1 for v in x if v)", Status.CORRECT),
    (COUNT, "return True", Status.INCORRECT),
    (COUNT, "return 1.0", Status.INCORRECT),
    (INDEX, "return dict(enumerate(x))", Status.CORRECT),
    (INDEX, "return {float(i): v for i, v in enumerate(x)}", Status.INCORRECT),  # 0.0 is not the key 0
    (INDEX, "return {True if i == 1 else i: v for i, v in enumerate(x)}", Status.INCORRECT),  # nor True the key 1
    (UNIQUE, "return set(x)", Status.CORRECT),
    (UNIQUE, "return {float(v) for v in x}", Status.INCORRECT),
]


def test_near_misses_are_not_correct_through_the_scoring_service(tmp_path, monkeypatch):
    items = [("code.tests", _example(row), f"```python\ndef {row['entry_point']}(x):\n    {body}\n```")
             for row, body, _ in CASES]
    outs, took = score_in_service(items, tmp_path, monkeypatch)
    assert took < 120, f"took {took:.1f}s"
    for (row, body, want), out in zip(CASES, outs):
        assert out.status is want, (row["entry_point"], body, out)
        assert out.score == (1.0 if want is Status.CORRECT else 0.0), (row["entry_point"], body, out)


def test_near_miss_through_the_cli(tmp_path):
    rows = [{**SUCCESSOR, "completion": "    return float(x)\n"}, {**SUCCESSOR, "completion": "    return x + 1\n"}]
    out, took = run_score_cli("code", rows, tmp_path)
    assert took < 120, f"took {took:.1f}s"
    assert [(r["status"], r["score"]) for r in out] == [("incorrect", 0.0), ("correct", 1.0)], out


# -- item 11: completions built to make the fence scan slow --------------------------------------


def _fill(unit: str, size: int = MAX_CODE_CHARS) -> str:
    return (unit * (size // len(unit) + 1))[:size]


FLOODS = {
    "unclosed openers": _fill("```\n``"),  # every line opens, none closes
    "python openers": _fill("```python\n"),
    "opener then lines": "```python\n" + _fill("```x\n", MAX_CODE_CHARS - 10),
    "alternating opener and text": _fill("```py\nx\n"),
    "backtick runs": _fill("`" * 61 + "\n"),
    "indented openers": _fill(" \t" * 40 + "```python y\n"),
    "empty blocks": _fill("```\n"),
    "python blocks": _fill("```python\npass\n```\n"),
}


def test_fence_floods_get_a_typed_status_fast_through_the_cli(tmp_path):
    honest = "```python\ndef successor(x):\n    return x + 1\n```"
    rows = [{**SUCCESSOR, "task_id": name, "completion": text} for name, text in FLOODS.items()]
    rows.append({**SUCCESSOR, "task_id": "1 MB", "completion": _fill("```python\n", 1_000_000)})
    rows.append({**SUCCESSOR, "task_id": "honest", "completion": honest})
    out, took = run_score_cli("code", rows, tmp_path)
    statuses = {r["task_id"]: r["status"] for r in out}
    # before the fix each flood held a worker until the reward's 30 s deadline (status timeout)
    assert took < 30, f"took {took:.1f}s: {statuses}"
    assert statuses.pop("honest") == "correct"
    assert statuses.pop("1 MB") == "rejected"  # over MAX_CODE_CHARS: never extracted
    assert set(statuses.values()) <= {"syntax_error", "unparsable"}, statuses
    assert all(r["score"] == 0.0 for r in out if r["task_id"] != "honest")
