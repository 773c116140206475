"""Issue 19: a plugin scaffolded with `grpo-env init NAME --environment`, edited into a working game by
following docs/environments.md alone ("Starting from `grpo-env init NAME --environment`", in its walkthrough),
installs as a distribution of its own and passes its tests, `grpo-env check`, `grpo-env play` and a
two-step training run mixed with math_arith.

The game, `hotcold`, is not the scaffold's (write a word backwards) nor the games plugin's
(higher/lower): a hidden number from 1 to `high`; after each wrong guess the environment says "warm" or
"cold" (the first) and then "hotter" or "colder" (closer or farther than the guess before); a tool
`check_parity` says whether the number is even, once per episode; credit falls by 1/guesses per guess
after the first. Its files below are what an author writes from the docs: the episode, its scripted
episodes with `score` and `observations_contain`, its tests, the recipe's options.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

NAME = "hotcold"
PKG = f"grpo_env_{NAME}"
DIST = "grpo-env-hotcold"

ENVIRONMENT = '''\
"""The `hotcold` environment: find a hidden number from 1 to `high`. After a wrong guess the model hears
"warm" or "cold" (the first guess) or "hotter" / "colder" (closer to the number or farther from it than
its guess before); the tool check_parity says whether the number is even, once per episode."""

import random

from pydantic import BaseModel, ConfigDict, Field

from grpo_env import Example, Outcome, Status
from grpo_env.environment import Environment, Episode, Step, Tool, ToolError

from grpo_env_hotcold.fixtures import fixtures

MAX_DIGITS = 4  # a guess longer than this is no number of the game (and never converted)

CHECK_PARITY = Tool(
    name="check_parity",
    description="whether the hidden number is even or odd (once per episode)",
    # no arguments: additionalProperties false makes any argument an error the model sees
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
)


class Options(BaseModel):
    """What a recipe may set under `options` (an unknown key is an error)."""

    model_config = ConfigDict(extra="forbid")

    high: int = Field(default=50, ge=2, le=1000)  # the number is from 1 to high
    guesses: int = Field(default=5, ge=1, le=7)  # answers per episode (the tool call is not one)


def in_test_split(secret: int) -> bool:
    """Every fifth number is held out: train and test never hide the same number."""
    return secret % 5 == 0


def examples(split: str, seed: int, options: dict):
    """Endless and deterministic for (split, seed, options)."""
    rng = random.Random(f"hotcold-{split}-{seed}")
    high, guesses = options["high"], options["guesses"]
    pool = [n for n in range(1, high + 1) if in_test_split(n) == (split == "test")]
    i = 0
    while True:
        yield Example(
            id=f"{split}-{seed}-{i}",
            prompt=f"I am thinking of a whole number from 1 to {high}. Guess it: answer with the number only. "
                   f"After a wrong guess I say hotter or colder (closer or farther than your guess before). "
                   f"You have {guesses} guesses; the tool check_parity says whether the number is even.",
            # the episode sees only its example: the options it needs travel in gold
            gold={"secret": rng.choice(pool), "high": high, "guesses": guesses},
        )
        i += 1


def guess_of(text: str) -> int | None:
    """The last non-empty line as a whole number (a trailing full stop allowed), else None; linear."""
    for line in reversed(text.splitlines()):
        line = line.strip().removesuffix(".").strip()
        if line:
            ok = line.isascii() and line.isdigit() and len(line) <= MAX_DIGITS
            return int(line) if ok else None
    return None


class HotCold(Episode):
    def __init__(self, example: Example):
        super().__init__(example)
        self.secret = int(example.gold["secret"])
        self.high = int(example.gold.get("high", 50))
        self.guesses = int(example.gold.get("guesses", 5))
        self.tries = 0
        self.last: int | None = None  # the distance of the guess before
        self.parity_told = False

    def call_tool(self, call):
        if self.parity_told:
            raise ToolError("you already know the parity: guess")
        self.parity_told = True
        return "even" if self.secret % 2 == 0 else "odd"

    def step(self, turn):
        self.tries += 1
        left = self.guesses - self.tries
        guess = guess_of(turn.text)
        if guess == self.secret:
            if self.tries == 1:
                return Step.end(Outcome.correct(guesses=1))
            return Step.end(Outcome.partial(1.0 - (self.tries - 1) / self.guesses, guesses=self.tries))
        if left == 0:
            return Step.end(Outcome.incorrect(guesses=self.tries))
        if guess is None or not 1 <= guess <= self.high:
            return Step.reply(f"That is not a whole number from 1 to {self.high}. {left} guess(es) left.")
        distance = abs(guess - self.secret)
        if self.last is None:
            word = "warm" if distance <= self.high // 4 else "cold"
        else:
            word = "hotter" if distance < self.last else "colder" if distance > self.last else "just as far"
        self.last = distance
        return Step.reply(f"{guess} is not it: {word}. {left} guess(es) left.")


ENVIRONMENT = Environment(
    name="hotcold",
    description="find a hidden number with hotter/colder feedback and a parity tool",
    rewards={"hotcold": 1.0},
    examples=examples,
    options=Options,
    make=HotCold,
    tools=[CHECK_PARITY],
    max_turns=8,  # guesses and tool calls together
    turn_limit=lambda ex: ex.gold.get("guesses", 5) + 1,  # each guess, and one turn for the tool
    step_timeout=2.0,
    episode_timeout=20.0,
    fixtures=fixtures,
    outcome_range=(0.0, 1.0),
    outcome_statuses=(Status.CORRECT, Status.PARTIAL, Status.INCORRECT),
)
'''

# secret 36 of 1..50, 5 guesses: a first guess within 12 of it is "warm"
FIXTURES = '''\
from grpo_env import Example
from grpo_env.environment import EpisodeFixture

PARITY = '<tool_call>{"name": "check_parity", "arguments": {}}</tool_call>'


def fixtures() -> list[EpisodeFixture]:
    ex = Example(id="fixture", prompt="Guess my number from 1 to 50.", gold={"secret": 36, "high": 50, "guesses": 5})
    return [
        EpisodeFixture(example=ex, turns=["36"], expect="full", score=1.0, turns_played=1, note="right at once"),
        EpisodeFixture(example=ex, turns=["10", "30", "36"], expect="partial", score=0.6,
                       observations_contain=["10 is not it: cold", "30 is not it: hotter", "3 guess(es) left"],
                       turns_played=3, note="found at the third guess: 1 - 2/5"),
        EpisodeFixture(example=ex, turns=["40", "20", "36."], expect="partial", score=0.6,
                       observations_contain=["40 is not it: warm", "20 is not it: colder"],
                       note="farther is colder"),
        EpisodeFixture(example=ex, turns=[PARITY, "36"], expect="full", score=1.0, observations_contain=["even"],
                       tool_errors=0, turns_played=2, note="the tool is no guess"),
        EpisodeFixture(example=ex, turns=[PARITY, PARITY, "36"], expect="full", score=1.0,
                       observations_contain=["already know the parity"], tool_errors=1, turns_played=3,
                       note="a second parity check is a ToolError the model reads"),
        EpisodeFixture(example=ex, turns=[PARITY.replace("{}", '{"n": 3}'), "36"], expect="full",
                       observations_contain=["unknown argument"], tool_errors=1,
                       note="an argument the tool does not take"),
        EpisodeFixture(example=ex, turns=["fifty", "36"], expect="partial", score=0.8,
                       observations_contain=["not a whole number from 1 to 50"], note="no number costs a guess"),
        EpisodeFixture(example=ex, turns=["1", "2", "3", "4", "5", "36"], expect="zero", score=0.0, turns_played=5,
                       note="five wrong guesses: no sixth"),
    ]
'''

PLUGIN_TESTS = '''\
from importlib import metadata
from pathlib import Path

import pytest

import grpo_env_hotcold
from grpo_env.cli.check import check_environment
from grpo_env.episodes import EpisodeHost
from grpo_env.plugins import get_registry
from grpo_env.recipe import load_recipe
from grpo_env.scoring import ScoringService
from grpo_env.testing import play_episode
from grpo_env.types import Example
from grpo_env_hotcold.environment import ENVIRONMENT, examples, guess_of, in_test_split

ROOT = Path(__file__).resolve().parent.parent
PARITY = '<tool_call>{"name": "check_parity", "arguments": {}}</tool_call>'


def secret(n: int, guesses: int = 5) -> Example:
    return Example(id=f"test-{n}", prompt="Guess my number from 1 to 50.",
                   gold={"secret": n, "high": 50, "guesses": guesses})


@pytest.fixture
def registry(register_plugin):
    return register_plugin(grpo_env_hotcold, name="hotcold")


def test_registers_its_environment(registry):
    env = registry.task("hotcold")
    assert env.rewards == {"hotcold": 1.0} and [t.name for t in env.tools] == ["check_parity"]
    assert registry.origin[("task", "hotcold")] == "hotcold"


def test_scripted_episodes_pass_as_grpo_env_check_plays_them(registry):
    env = registry.task("hotcold")
    with ScoringService({}, workers=1) as service, \\
            EpisodeHost({env.name: (env, env.rewards)}, service, workers=1) as host:
        result = check_environment(env, registry, host)
    assert result.ok and result.passed == len(env.get_fixtures()), result.problems


def test_parity_then_hotter_then_found():
    played = play_episode(ENVIRONMENT, [PARITY, "3", "11", "7"], example=secret(7))
    assert [m.content for m in played.observations[0]] == ["odd"]
    assert "3 is not it: warm" in played.observations[1][0].content
    assert "11 is not it: just as far" in played.observations[2][0].content
    assert played.scored.total == pytest.approx(0.6) and played.scored.status.value == "partial"
    assert played.stats["tool_calls"] == 1 and played.stats["turns"] == 4


def test_the_guesses_run_out():
    played = play_episode(ENVIRONMENT, ["1", "2", "7"], example=secret(7, guesses=2))
    assert played.stats["turns"] == 2 and played.scored.total == 0.0


@pytest.mark.parametrize("text, expected", [("36", 36), ("so:\\n 36. \\n", 36), ("thirty", None), ("", None),
                                            ("\\u0663\\u0666", None), ("9" * 5000, None)])
def test_guess_of(text, expected):
    assert guess_of(text) == expected


def test_examples_are_deterministic_and_splits_disjoint():
    opts = ENVIRONMENT.parse_options({"high": 30, "guesses": 3})

    def take(split, seed):
        stream = examples(split, seed, opts)
        return [next(stream) for _ in range(40)]

    assert take("train", 1) == take("train", 1)
    for split in ("train", "test"):
        for ex in take(split, 2):
            assert 1 <= ex.gold["secret"] <= 30 and in_test_split(ex.gold["secret"]) == (split == "test")
            assert ex.gold["guesses"] == 3 and ENVIRONMENT.turns_for(ex) == 4


def test_installed_entry_point_is_discovered():
    try:
        metadata.distribution("grpo-env-hotcold")
    except metadata.PackageNotFoundError:
        pytest.skip("grpo-env-hotcold is not installed: pip install -e .")
    registry = get_registry()
    assert registry.origin[("task", "hotcold")] == "hotcold"
    assert registry.plugins["hotcold"].distribution == "grpo-env-hotcold"


def test_the_mix_recipe_resolves_as_training_resolves_it(registry):
    from grpo_env.cli.train import mix_entries

    entries = mix_entries(load_recipe(ROOT / "recipes" / "hotcold.toml"), registry)
    assert [e.task.name for e in entries] == ["hotcold", "math_arith"]
    assert entries[0].is_environment and entries[0].reward_weights == {"hotcold": 1.0}
'''


def test_the_walkthrough_says_every_edit_this_game_makes():
    """What the game below needed beyond the capitals walkthrough is on the page: the files to edit,
    partial credit, options reaching the episode through gold, a tool that takes no arguments."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "environments.md").read_text()
    section = doc[doc.index("### Starting from `grpo-env init NAME --environment`"):]
    section = section[:section.index("\n## ")]
    for needed in ("grpo_env_NAME/environment.py", "grpo_env_NAME/fixtures.py", "tests/test_NAME.py",
                   "recipes/NAME.toml", "options = { attempts = 3 }", "tests/test_env_from_docs.py"):
        assert needed in section, needed
    for needed in ("Outcome.partial(0.6)", "must travel in the example's `gold`", '"additionalProperties": false',
                   "outcome_statuses", 'stats["turns"]'):
        assert needed in doc, needed


def cli(*args, env=None, cwd=None, stdin=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "grpo_env.cli", *args], env=env or {**os.environ, "COLUMNS": "250"},
                          cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """`grpo-env init hotcold --environment`, edited as the walkthrough says, installed into a private site
    directory (never the venv): the folder, the site directory and the environment that sees it."""
    tmp = tmp_path_factory.mktemp("hotcold")
    root = tmp / DIST
    r = cli("init", NAME, "--environment", "--dir", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    # the walkthrough's edits: the episode, its scripted episodes, the game's tests, the recipe's options
    (root / PKG / "environment.py").write_text(ENVIRONMENT)
    (root / PKG / "fixtures.py").write_text(FIXTURES)
    (root / "tests" / f"test_{NAME}.py").write_text(PLUGIN_TESTS)
    recipe = root / "recipes" / f"{NAME}.toml"
    text = recipe.read_text()
    assert "options = { attempts = 3 }" in text
    recipe.write_text(text.replace("options = { attempts = 3 }", "options = { high = 50, guesses = 5 }"))
    site = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(site), str(root)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (site / PKG / "environment.py").read_text() == ENVIRONMENT  # the game was installed, not the scaffold
    return root, site, {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}


# `grpo-env check`, `play` and `train` run outside the plugin's folder, whose source package would
# shadow the installed one (`python -m` puts the working directory first on sys.path)


@pytest.mark.slow
def test_the_games_own_tests_pass_none_skipped(plugin):
    root, _, env = plugin
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], env=env,
                           cwd=root, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert re.search(r"\b13 passed\b", tests.stdout) and "skipped" not in tests.stdout, tests.stdout


@pytest.mark.slow
def test_check_passes_the_games_scripted_episodes_and_play_shows_the_game(plugin):
    root, _, env = plugin
    check = cli("check", NAME, env=env, cwd=root.parent)
    assert check.returncode == 0, check.stdout + check.stderr
    line = next(l for l in check.stdout.splitlines() if f" {NAME} " in l)
    assert "8 " in line and "ok" in line, line  # its 8 scripted episodes
    parity = '<tool_call>{"name": "check_parity", "arguments": {}}</tool_call>'
    play = cli("play", NAME, "--reveal", env=env, stdin=f"{parity}\n25\n", cwd=root.parent)
    assert play.returncode == 0, play.stdout + play.stderr
    out = play.stdout
    assert "tool check_parity" in out and "I am thinking of a whole number from 1 to 50" in out, out
    gold = json.loads(out[out.index("gold: ") + len("gold: "):].splitlines()[0])
    assert f"tool: {'even' if gold['secret'] % 2 == 0 else 'odd'}" in out, out
    if gold["secret"] != 25:
        assert "25 is not it:" in out and "episode stopped (input ended) after 2 turn(s), 1 tool call(s)" in out, out


@pytest.mark.slow
def test_check_fails_a_wrong_fixture_score_by_name(plugin, tmp_path):
    """The check judges the game: one fixture's score off (0.5 for the 0.6 the game pays) fails it, named."""
    root, _, env = plugin
    site = tmp_path / "site"
    shutil.copytree(plugin[1], site)
    shutil.rmtree(site / PKG / "__pycache__", ignore_errors=True)  # no byte code of the right fixtures
    fixtures = site / PKG / "fixtures.py"
    wrong = FIXTURES.replace('score=0.6,\n                       observations_contain=["10 is',
                             'score=0.5,\n                       observations_contain=["10 is')
    assert wrong != FIXTURES
    fixtures.write_text(wrong)
    check = cli("check", NAME, env={**env, "PYTHONPATH": str(site)}, cwd=tmp_path)
    assert check.returncode != 0, check.stdout + check.stderr
    said = check.stdout + check.stderr
    assert "fixture 1 (found at the third guess: 1 - 2/5): expected reward 0.5, got 0.6" in said, said


@pytest.mark.slow
def test_the_game_trains_two_steps_mixed_with_math_arith(plugin, tmp_path):
    from grpo_env.engine.tiny import write_tiny

    root, _, env = plugin
    tiny = write_tiny(tmp_path / "tiny")
    out = tmp_path / "run"
    train = cli("train", str(root / "recipes" / f"{NAME}.toml"), f"--model.name={tiny}", "--train.steps=2",
                "--train.prompts_per_step=4", "--train.group_size=2", "--train.max_new_tokens=8",
                f"--train.output_dir={out}", "--train.progress=false", "--scoring.workers=1",
                env=env, cwd=tmp_path, timeout=600)
    assert train.returncode == 0, train.stdout + train.stderr
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "step" in r][-1] == 2
    tasks = {t for r in records for t in r.get("reward_by_task", {})}
    assert tasks == {NAME, "math_arith"}, tasks
    assert any(NAME in r.get("episodes_by_env", {}) for r in records)
