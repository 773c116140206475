"""Recipes: one validated object describing a run (model, task mix, scoring, training).

A recipe is a TOML or YAML file; unknown keys and ill-typed values are errors that name the key.
Command-line overrides ``--train.lr=1e-5`` go through the same validation.

Hostile or broken input ends in a :class:`RecipeError` that names the file or key, quickly: NaN and
infinities are refused in every float field and in task options; a value nested deeper than
``MAX_DEPTH``, or an integer longer than Python converts (4300 digits), is refused with its key; a
YAML recipe whose aliases expand past ``MAX_YAML_NODES`` values (a "billion laughs" of 500 bytes)
is refused while it is read, before anything walks the expanded tree.
"""

from __future__ import annotations

import json
import math
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from grpo_env.engine.config import STRICT, GenerationConfig, ModelConfig, TrainConfig
from grpo_env.engine.monitor import MonitorConfig
from grpo_env.types import check_name


MAX_DEPTH = 32  # lists and tables inside one another in an override value or in task options
MAX_YAML_NODES = 10_000  # values a YAML recipe may hold once its aliases are expanded (a recipe has ~100)


class RecipeError(ValueError):
    """A recipe or an override is invalid; the message names the file and the key."""


def _finite_options(options: dict[str, Any]) -> dict[str, Any]:
    """Task options are free-form (the task's own model validates them later): refuse here, for
    every task, numbers that are not finite and nesting deeper than ``MAX_DEPTH``. An infinite
    ``float_rel_tol`` would make every float answer "close"; a NaN passes no bound check. One
    iterative walk, linear in the size of the options."""
    stack: list[tuple[str, Any, int]] = [(k, v, 1) for k, v in options.items()]
    while stack:
        where, value, depth = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} = {value}: not a finite number (NaN and infinities are refused)")
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise ValueError(f"{where}: nested more than {MAX_DEPTH} levels deep")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((f"{where}.{k}", v, depth + 1) for k, v in items)
    return options


class TaskEntry(BaseModel):
    model_config = STRICT

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

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _finite_options(v)


class ScoringConfig(BaseModel):
    model_config = STRICT

    workers: int = Field(default=2, ge=1)  # scoring worker processes (on Ray: per node)
    grace: float = Field(default=1.0, ge=0)  # seconds added to a reward's deadline before the kill
    backend: Literal["local", "ray"] = "local"  # local worker processes, or scoring actors on a Ray cluster's nodes
    address: str = "auto"  # ray: the cluster to join ("auto": the one `ray start` runs here, or host:port)
    max_in_flight: int | None = Field(default=None, ge=1)  # ray: items being scored at once, cluster-wide (default: 2 per worker)
    allow_unisolated: bool = False  # ray: score on nodes whose sandbox cannot isolate (no namespaces) too


class Recipe(BaseModel):
    model_config = STRICT

    name: str = "run"  # the run's name ({name} in train.output_dir)
    seed: int = 0  # seeds the task mix, example streams and torch
    model: ModelConfig = Field(default_factory=ModelConfig)  # the policy model
    tasks: list[TaskEntry] = Field(min_length=1)  # the task mix (at least one)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)  # the reward worker pool
    generation: GenerationConfig = Field(default_factory=GenerationConfig)  # what samples: our decode loop or vLLM
    train: TrainConfig = Field(default_factory=TrainConfig)  # training settings
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)  # reward-hacking signals and alarms


class _YamlRefused(yaml.YAMLError):
    """A YAML recipe too deep, or whose aliases expand too far, to be read."""


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds with every alias expanded, computed on the composed
    graph (where an alias is the node it names, shared): each node once, memoised, so linear in
    the text even when the expansion is exponential. Refuses past ``MAX_YAML_NODES`` and refuses a
    node that contains an alias to itself (an endless expansion)."""
    size: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are still being counted: the current path
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _yaml_children(node))
            if size[key] > MAX_YAML_NODES:
                raise _YamlRefused(f"it holds more than {MAX_YAML_NODES} values once its aliases (*name) are "
                                   "expanded; a recipe needs far fewer: write the repeated part out, or use TOML")
            continue
        if key in size:
            continue
        if key in open_:
            raise _YamlRefused("an alias (*name) refers to a node that contains it: the recipe would be endless")
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _yaml_children(node) if id(c) not in size)
    return size[id(root)]


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.safe_load`` with two bounds, checked while a document is composed, before a Python
    object is built: nesting (``MAX_DEPTH``; PyYAML's scanner is quadratic in flow nesting, so ten
    thousand ``[`` took seconds before its composer hit the recursion limit) and what aliases expand
    to (building shares aliased objects; validation walking them afterwards would take time
    exponential in the number of alias levels)."""

    _depth = 0

    def fetch_flow_collection_start(self, TokenClass: type) -> None:  # the scanner, at each "[" or "{"
        if self.flow_level >= MAX_DEPTH:
            raise _YamlRefused(f"lists or tables nested more than {MAX_DEPTH} levels deep")
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self._depth >= MAX_DEPTH:
            raise _YamlRefused(f"lists or tables nested more than {MAX_DEPTH} levels deep")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _expanded_size(node)
        return node


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text()
    kind = "TOML" if path.suffix == ".toml" else "YAML"
    try:
        data = tomllib.loads(text) if kind == "TOML" else yaml.load(text, Loader=_RecipeLoader)
    except _YamlRefused as e:
        raise RecipeError(f"{path}: refused: {e}") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise RecipeError(f"{path}: not valid {kind}: {e}") from None
    except RecursionError:
        raise RecipeError(f"{path}: refused: lists or tables nested too deeply") from None
    except ValueError as e:  # an integer of more than 4300 digits (Python's int-string limit)
        raise RecipeError(f"{path}: refused: {_why(e)}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a table of keys, got {type(data).__name__}")
    return data


def _why(e: ValueError) -> str:
    """Python's int-string limit in a user's words (its own message suggests changing the limit)."""
    if "integer string conversion" in str(e):
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return f"{type(e).__name__}: {e}"


def _parse_value(text: str, key: str = "") -> Any:
    """An override value: JSON when it parses (numbers, true/false, lists), else the plain string.
    A value nested past the interpreter's recursion limit or an integer past Python's int-string
    limit (4300 digits) is refused with its key, not raised from inside json."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
    except RecursionError:
        raise RecipeError(f"override {key}: value nested too deeply (lists or tables may nest {MAX_DEPTH} "
                          "levels)") from None
    except ValueError as e:  # an integer of more than 4300 digits
        raise RecipeError(f"override {key}: {_why(e)}") from None


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
    node[parts[-1]] = _parse_value(value, key)


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
