"""`grpo-env score`: score a JSONL file of (example fields + completion) rows with a task's rewards.

An environment's rows carry ``turns`` instead, a list of the assistant's turns (strings): each row is
played as one episode through the real episode processes and deadlines (:func:`grpo_env.episodes.play`)
and judged as in training.

A bad row (not JSON, no string ``completion`` / no list of string ``turns``, fields the task cannot
turn into an example) gets an output row with ``status: "invalid_row"`` and an ``error`` naming the
row; every other row is scored. The output file is written to a temporary name and renamed into
place when complete.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from grpo_env.environment import is_environment
from grpo_env.scoring import ScoringService
from grpo_env.types import Example, Scored, Task

INVALID = "invalid_row"


def _row_error(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(map(str, er['loc'])) or 'row'}: {er['msg']}" for er in e.errors())
    return f"{type(e).__name__}: {e}"


def read_rows(path: Path, task: Task, options: dict[str, Any]) -> list[tuple[dict, Example | None, Any]]:
    """Each line as (row, example or None, completion (an environment's: its turns) or error message)."""
    out = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                out.append(({"line": n}, None, f"line {n}: not valid JSON ({e.msg})"))
                continue
            if not isinstance(row, dict):
                out.append(({"line": n}, None, f"line {n}: a row must be a JSON object"))
                continue
            if is_environment(task):  # an episode: the assistant's turns
                completion = row.get("turns")
                if not (isinstance(completion, list) and completion and all(isinstance(t, str) for t in completion)):
                    out.append((row, None, f"line {n}: {task.name!r} is an environment: a row needs 'turns', a "
                                           "non-empty list of the assistant's turns (strings), played as one episode"))
                    continue
            else:
                completion = row.get("completion")
                if not isinstance(completion, str):
                    out.append((row, None, f"line {n}: needs a string field 'completion'"))
                    continue
            try:
                example = task.example_from_row(row, options)
            except Exception as e:  # the task could not use this row: say why, keep going
                out.append((row, None, f"line {n}: {_row_error(e)}"))
                continue
            if not example.id:
                example = example.model_copy(update={"id": f"line{n}"})
            if is_environment(task):
                example = example.model_copy(update={"task": task.name, "tools": task.tool_specs()})
            out.append((row, example, completion))
    return out


def result_fields(scored: Scored) -> dict[str, Any]:
    return {
        "score": None if math.isnan(scored.total) else scored.total,
        "status": scored.status.value,
        "rewards": {n: o.model_dump(mode="json") for n, o in scored.components.items()},
    }


def score_file(
    task: Task,
    weights: dict[str, float],
    src: Path,
    dst: Path,
    service: ScoringService,
    options: dict[str, Any] | None = None,
) -> Counter[str]:
    """Score ``src`` into ``dst``; return the count of rows by status."""
    rows = read_rows(src, task, options or {})
    valid = [(row, ex, c) for row, ex, c in rows if ex is not None]
    if is_environment(task):  # each row one episode, in its own process, judged by the environment
        from grpo_env.episodes import EpisodeHost, play

        with EpisodeHost({task.name: (task, weights)}, service) as host:
            scored = iter([play(host, ex, turns).scored for _, ex, turns in valid])
    else:
        scored = iter(service.score_examples([weights] * len(valid), [ex for _, ex, _ in valid], [c for *_, c in valid]))
    counts: Counter[str] = Counter()
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    try:
        # backslashreplace: a lone surrogate in a completion (valid in JSON, not in UTF-8) is written
        # as the JSON escape it came in as, so the row round-trips instead of ending the command
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            for row, example, completion_or_error in rows:
                if example is None:
                    fields = {"status": INVALID, "error": completion_or_error}
                else:
                    fields = result_fields(next(scored))
                counts[fields["status"]] += 1
                f.write(json.dumps({**row, **fields}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return counts
