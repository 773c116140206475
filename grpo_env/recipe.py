"""Recipes: one validated object describing a run (model, task mix, scoring, training).

A recipe is a TOML or YAML file; unknown keys and ill-typed values are errors that name the key.
Command-line overrides ``--train.lr=1e-5`` go through the same validation.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from grpo_env.engine.config import ModelConfig, TrainConfig
from grpo_env.types import check_name


class RecipeError(ValueError):
    """A recipe or an override is invalid; the message names the file and the key."""


class TaskEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str  # a registered task
    weight: float = Field(default=1.0, gt=0)  # sampling weight in the mix (normalised over tasks)
    options: dict[str, Any] = Field(default_factory=dict)  # validated by the task's options model
    rewards: dict[str, float] | None = None  # replaces the task's reward components and weights (the first decides eval accuracy)
    prefill: str = ""  # text the assistant's turn starts with (e.g. "<think>"): part of the prompt, seen by rewards
    allow_flagged: bool = False  # train on a task its plugin flags (a conformance check found its reward untrustworthy)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name("task", v)


class ScoringConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(default=2, ge=1)  # scoring worker processes
    grace: float = Field(default=1.0, ge=0)  # seconds added to a reward's deadline before the kill


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "run"  # the run's name ({name} in train.output_dir)
    seed: int = 0  # seeds the task mix, example streams and torch
    model: ModelConfig = Field(default_factory=ModelConfig)  # the policy model
    tasks: list[TaskEntry] = Field(min_length=1)  # the task mix (at least one)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)  # the reward worker pool
    train: TrainConfig = Field(default_factory=TrainConfig)  # training settings


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise RecipeError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a table of keys, got {type(data).__name__}")
    return data


def _parse_value(text: str) -> Any:
    """An override value: JSON when it parses (numbers, true/false, lists), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split_key(key: str) -> list[str]:
    """``a.b."c.d"`` -> ``["a", "b", "c.d"]``: dots separate parts, and a part in double or single
    quotes is taken whole, dots included, as in a TOML dotted key (reward names contain dots).
    One left-to-right pass: linear in the length of the key."""
    parts: list[str] = []
    i, n = 0, len(key)
    while True:
        if i < n and key[i] in "\"'":
            end = key.find(key[i], i + 1)
            if end < 0:
                raise RecipeError(f"override key {key!r}: unterminated {key[i]} quote")
            part, i = key[i + 1 : end], end + 1
            if i < n and key[i] != ".":
                raise RecipeError(f"override key {key!r}: expected '.' after the quoted part {part!r}")
        else:
            end = key.find(".", i)
            end = n if end < 0 else end
            part, i = key[i:end], end
            if any(q in part for q in "\"'"):
                raise RecipeError(f"override key {key!r}: quote a whole part, e.g. tasks.0.rewards.\"math.answer\"")
        if not part:
            raise RecipeError(f"override key {key!r}: empty part")
        parts.append(part)
        if i >= n:
            return parts
        i += 1  # past the '.'
        if i >= n:
            raise RecipeError(f"override key {key!r}: empty part")


def _split_override(body: str) -> tuple[str, str]:
    """``key=value`` split at the first ``=`` outside quotes."""
    quote = None
    for i, c in enumerate(body):
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == "=":
            return body[:i], body[i + 1 :]
    if quote:
        raise RecipeError(f"override {body!r}: unterminated {quote} quote")
    raise RecipeError(f"override {body!r} must look like --section.key=value")


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``key.sub=value`` (a leading ``--`` is allowed) to the raw recipe dict. A part of the key
    that holds dots is quoted: ``--tasks.0.rewards."math.answer"=2``."""
    body = override[2:] if override.startswith("--") else override
    key, value = _split_override(body)
    parts = split_key(key)
    if len(parts) > 4 and parts[0] == "tasks" and parts[2] == "rewards" and not any(q in key for q in "\"'"):
        raise RecipeError(f"override {key!r}: reward names contain dots, so quote the name: "
                          f"--tasks.{parts[1]}.rewards.\"{'.'.join(parts[3:])}\"={value}")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise RecipeError(f"override {key!r}: no list item {part!r}") from None
            continue
        if node.get(part) is None:  # absent, or null in YAML: a new table
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise RecipeError(f"override {key!r}: {'.'.join(parts[: i + 1])} is not a table")
    if isinstance(node, list):
        raise RecipeError(f"override {key!r}: name a list item by index, e.g. tasks.0.weight")
    node[parts[-1]] = _parse_value(value)


def _explain(e: ValidationError, where: str) -> RecipeError:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {loc}: {msg}")
    return RecipeError(f"{where}: invalid recipe\n" + "\n".join(lines))


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"{path}: no such recipe file")
    data = _read(path)
    for o in overrides:
        apply_override(data, o)
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise _explain(e, str(path)) from None
