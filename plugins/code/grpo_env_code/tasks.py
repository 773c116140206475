"""The code tasks: ``code`` (function problems: ours, HumanEval or MBPP files / hub sets, and any of
those formats in ``grpo-env score code`` rows) and ``code_stdio`` (stdin/stdout programs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from grpo_env.data import load_rows
from grpo_env.types import Example, Task
from grpo_env_code.canaries import function_canaries, stdio_canaries
from grpo_env_code.probes import probe_completions
from grpo_env_code.problems import example_from_row

DATA_DIR = Path(__file__).resolve().parents[3] / "tasks" / "data" / "code"
BUILTIN_SOURCES = {"functions": DATA_DIR / "functions", "stdio": DATA_DIR / "stdio"}
REWARDS = {"code.tests": 1.0}


class CodeOptions(BaseModel):
    """Options of the code tasks (the scoring ones travel in each example's gold)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field("functions", description="'functions' (ours), 'stdio' (ours), a local JSONL/JSON/parquet "
                        "file or directory (also a hub repository's files or a save_to_disk copy), or a hub id "
                        "such as 'openai_humaneval' or 'mbpp'")
    config: str | None = Field(None, description="hub configuration, e.g. 'sanitized' for mbpp")
    format: Literal["auto", "humaneval", "mbpp", "functions", "stdio"] = Field(
        "auto", description="row format; auto-detected from the fields by default")
    count: int | None = Field(None, ge=1, description="at most this many examples per split")
    timeout: float = Field(4.0, gt=0, le=10, description="wall seconds per sandboxed run (whole tree killed after)")
    memory_mb: int = Field(1024, ge=64, le=16384, description="address-space limit per run")
    all_or_nothing: bool = Field(False, description="score 1 only when every test passes (default: fraction)")
    float_rel_tol: float = Field(1e-9, ge=0, description="relative tolerance when floats are compared")
    strict_bool: bool = Field(True, description="True never equals 1 (Python says it does)")
    block: Literal["last", "first"] = Field("last", description="which fenced python block is the answer")
    allow_unisolated: bool = Field(False, description="run code even when this machine grants no pid/network "
                                   "namespaces (subreaper sweep + rlimits only); see `grpo-env doctor`")
    mbpp_challenge: bool = Field(False, description="add MBPP's challenge_test_list to its tests")


class StdioOptions(CodeOptions):
    source: str = Field("stdio", description="'stdio' (ours), or a local file / directory of stdio rows")


def _rows(options: dict[str, Any], split: str) -> list[dict[str, Any]]:
    source = options.get("source", "functions")
    path = BUILTIN_SOURCES.get(source, source)
    return load_rows(path, split, config=options.get("config"))


def dataset_examples(split: str, seed: int, options: dict[str, Any]) -> Iterator[Example]:
    """The examples of ``options['source']`` in file order (``seed`` does not matter: a fixed set)."""
    rows = _rows(options, split)
    if options.get("count"):
        rows = rows[: options["count"]]
    for row in rows:
        yield example_from_row(row, options)


def code_task(fixtures) -> Task:
    return Task(
        name="code",
        description="Python function problems scored by running their tests in the sandbox: ours (34, offline), "
        "HumanEval or MBPP (local file or hub id); rows of any of these formats work with `grpo-env score code`",
        rewards=dict(REWARDS),
        examples=dataset_examples,
        from_row=example_from_row,
        fixtures=fixtures,
        options=CodeOptions,
        canaries=function_canaries,
        probes=probe_completions,
    )


def stdio_task(fixtures) -> Task:
    return Task(
        name="code_stdio",
        description="Python programs reading stdin, scored by comparing their stdout line by line in the sandbox",
        rewards=dict(REWARDS),
        examples=dataset_examples,
        from_row=example_from_row,
        fixtures=fixtures,
        options=StdioOptions,
        canaries=stdio_canaries,
        probes=probe_completions,
    )
