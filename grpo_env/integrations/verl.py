"""Our tasks' rewards as verl's custom reward function.

verl's reward managers call ``compute_score(data_source, solution_str, ground_truth, extra_info)``
once per response (the batch manager calls ``compute_score(data_sources=..., solution_strs=...,
ground_truths=..., extra_infos=...)`` once per batch). Point verl at this module::

    custom_reward_function.path=<site-packages>/grpo_env/integrations/verl.py
    custom_reward_function.name=compute_score

``data_source`` names a registered task (``math``, ``code`` ...), or one of the hub ids verl's own
preprocessing writes (``openai/gsm8k`` -> ``math``). ``ground_truth`` is the gold data as JSON (what
:func:`verl_rows` writes), or a plain answer string (verl's GSM8K/MATH rows), read by the task's
``from_row``. Scoring goes through the scoring service: hard deadlines, the code sandbox, typed
outcomes. The result is a dict: ``score`` (the weighted total), ``status``, and ``excluded``.
verl cannot drop a sample, so an ``error`` or ``not_applicable`` judgement scores 0.0 there, marked
``excluded: True`` in verl's reward extra info and counted in :data:`COUNTS`, never silently.

Environments (multi-turn episodes) are refused, naming them (:class:`EnvironmentRefused`): by
:func:`verl_rows`, and by ``compute_score`` for a ``data_source`` that names one. verl samples one
response per prompt and plays no episodes; an environment's row would have nothing to judge and,
since verl cannot drop it, would train on 0. Train environments with ``grpo-env train``.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import threading
from collections import Counter
from typing import Any

from grpo_env.integrations._common import EnvironmentRefused, refuse_environments  # noqa: F401 (EnvironmentRefused: what it raises)
from grpo_env.types import Example, Outcome, Scored, Status, Task

# the data_source values verl's example preprocessing scripts write, and the task that reads their rows
ALIASES = {
    "openai/gsm8k": "math",
    "lighteval/MATH": "math_competition",
    "DigitalLearningGmbH/MATH-lighteval": "math_competition",
    "HuggingFaceH4/MATH-500": "math_competition",
    "openai/openai_humaneval": "code",
    "openai_humaneval": "code",
    "mbpp": "code",
    "google-research-datasets/mbpp": "code",
}
WORKERS_ENV = "GRPO_ENV_VERL_WORKERS"  # scoring processes per verl reward process (default 2)

COUNTS: Counter[str] = Counter()  # judgements by status in this process
_service = None  # this process's scoring service (a forked child's is its own, never the parent's)
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child drops the parent's service (its workers answer the parent; the copy, closed
    or collected, leaves them alone) and the lock, which another thread may have held at the fork."""
    global _service, _lock
    _service, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def task_of(data_source: str) -> Task:
    """The task a verl ``data_source`` routes to; an unknown one is an error naming it, and so is an
    environment (:class:`EnvironmentRefused`: verl plays no episodes)."""
    from grpo_env.plugins import get_registry

    task = get_registry().task(ALIASES.get(data_source, data_source))
    refuse_environments([task], "verl")
    return task


def _service_for_all_rewards():
    """One scoring service per process, over every registered reward, closed at exit."""
    global _service
    with _lock:
        if _service is None or _service.pid != os.getpid():  # none yet, or inherited by a fork
            from grpo_env.plugins import get_registry
            from grpo_env.scoring import ScoringService

            _service = ScoringService(get_registry().rewards, workers=int(os.environ.get(WORKERS_ENV, "2")))
            atexit.register(_service.close)
        return _service


def example_of(task: Task, ground_truth: Any, extra_info: dict | None) -> Example:
    """The example a verl row stands for: JSON gold as is, a plain answer through the task's ``from_row``."""
    info = dict(extra_info or {})
    ex_id = str(info.get("id", info.get("index", "")))
    gold = ground_truth
    if isinstance(ground_truth, str) and ground_truth.lstrip().startswith("{"):
        try:
            gold = json.loads(ground_truth)
        except json.JSONDecodeError:
            gold = ground_truth
    if isinstance(gold, dict):
        ex = Example(id=ex_id, prompt=[{"role": "user", "content": "(scored for verl)"}], gold=gold)
        return ex.model_copy(update={"task": task.name})
    return task.example_from_row({"id": ex_id, "answer": gold})


def _result(scored: Scored) -> dict[str, Any]:
    COUNTS[str(scored.status)] += 1
    excluded = math.isnan(scored.total)
    return {"score": 0.0 if excluded else float(scored.total), "status": str(scored.status), "excluded": excluded}


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos=None, **_: Any) -> list[dict[str, Any]]:
    """verl's batch reward manager signature: every response of a batch scored in one pass."""
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    tasks = [task_of(s) for s in data_sources]
    built = [_built(t, g, i) for t, g, i in zip(tasks, ground_truths, infos)]
    ok = [k for k, b in enumerate(built) if isinstance(b, Example)]
    scored = _service_for_all_rewards().score_examples(
        [tasks[k].rewards for k in ok], [built[k] for k in ok], [solution_strs[k] for k in ok])
    results: list[Scored] = list(built)  # type: ignore[arg-type]
    for k, s in zip(ok, scored):
        results[k] = s
    return [_result(s) for s in results]


def _built(task: Task, ground_truth: Any, extra_info: dict | None) -> Example | Scored:
    """The example, or an ``error`` judgement naming why the row cannot be one (verl goes on)."""
    try:
        return example_of(task, ground_truth, extra_info)
    except (ValueError, TypeError) as e:
        outcome = Outcome.error(f"task {task.name!r}: ground_truth {str(ground_truth)[:80]!r} is not usable: {e}")
        return Scored(total=math.nan, status=Status.ERROR, components={name: outcome for name in task.rewards})


def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None, *, data_sources=None,
                  solution_strs=None, ground_truths=None, extra_infos=None, **_: Any):
    """verl's custom reward function (both the per-response and the batch calling conventions)."""
    if data_sources is not None:
        return compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos)
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info])[0]


def verl_rows(task: Task | str, split: str, n: int, seed: int = 0, options: dict | None = None) -> list[dict[str, Any]]:
    """``n`` examples of ``task`` (a task, or a registered task's name: ``verl_rows("math_arith", "train",
    100)``) as rows of verl's RL parquet format (prompt, data_source, reward_model ...)."""
    import itertools

    if isinstance(task, str):
        task = task_of(task)  # an unknown name is an error naming it (and a close one); an environment too
    refuse_environments([task], "verl")
    opts = task.parse_options(options)
    rows = []
    for i, ex in enumerate(itertools.islice(task.examples(split, seed, opts), n)):
        rows.append({
            "data_source": task.name,
            "prompt": [{"role": m.role, "content": m.content} for m in ex.prompt],
            "ability": task.name.split("_")[0],
            "reward_model": {"style": "rule", "ground_truth": json.dumps(ex.gold)},
            "extra_info": {"split": split, "index": i, "id": ex.id},
        })
    return rows
