"""Every reward is described (issue 11, item 3): the registry's descriptions, `grpo-env rewards`
and docs/rewards.md, which is generated from the registry and must not go stale."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGE = ROOT / "docs" / "rewards.md"


def builtin_plugins(registry):
    """The plugins under plugins/ (grpo-env's own), as installed and loaded."""
    here = {p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists()}
    return sorted(n for n, i in registry.plugins.items() if n in here and i.status == "loaded")


def undescribed(registry, builtin=()):
    """Rewards lacking what a reader needs: a description (any reward), and for built-in ones also
    the statuses they report and their worst score."""
    bad = []
    for name, reward in sorted(registry.rewards.items()):
        if not reward.description.strip():
            bad.append(f"{name}: no description")
        if registry.origin[("reward", name)] in builtin and (not reward.statuses or reward.min_score is None):
            bad.append(f"{name}: built-in reward without statuses or min_score")
    return bad


def cli(*args, **env):
    env = {**os.environ, "COLUMNS": "250", **env}
    return subprocess.run([sys.executable, "-m", "grpo_env.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_every_registered_reward_is_described(fresh_plugins):
    registry = fresh_plugins.get_registry()
    builtin = builtin_plugins(registry)
    assert {"code", "format", "math"} <= set(builtin)
    assert undescribed(registry, builtin) == []


def test_an_undescribed_reward_is_caught(make_dist, fresh_plugins):
    make_dist("tp-bare-dist", "bare", "tp_bare", """
from grpo_env import Outcome, Reward, hookimpl

def fn(completion, example):
    return Outcome.correct()

@hookimpl
def register_rewards(register):
    register(Reward(name="bare.fn", fn=fn))
""")
    registry = fresh_plugins.get_registry()
    assert undescribed(registry, ["bare"]) == ["bare.fn: no description",
                                               "bare.fn: built-in reward without statuses or min_score"]


def test_docs_rewards_page_is_generated_from_the_registry(fresh_plugins):
    builtin = builtin_plugins(fresh_plugins.get_registry())
    run = cli("rewards", "--markdown", GRPO_ENV_PLUGINS=",".join(builtin))
    assert run.returncode == 0, run.stderr
    assert run.stdout == PAGE.read_text(), (
        f"docs/rewards.md is stale: run GRPO_ENV_PLUGINS={','.join(builtin)} grpo-env rewards --markdown > docs/rewards.md")
    for name in fresh_plugins.get_registry().rewards:
        if fresh_plugins.get_registry().origin[("reward", name)] in builtin:
            assert f"## `{name}`" in run.stdout


def test_rewards_command_describes_one_reward_with_its_tasks():
    only = {"GRPO_ENV_PLUGINS": "format,math"}  # the plugins these lines read (faster start)
    run = cli("rewards", "math.answer", **only)
    assert run.returncode == 0, run.stderr
    assert "- `answer`: the gold answer text" in run.stdout and "score: 0 to 1" in run.stdout
    assert "`rejected`" in run.stdout and "`not_applicable`" in run.stdout
    used = next(l for l in run.stdout.splitlines() if l.startswith("used by tasks:"))
    assert "math_arith" in used
    listing = cli("rewards", **only)
    assert listing.returncode == 0 and "format.repetition_penalty" in listing.stdout and "-1 to 0" in listing.stdout
    wrong = cli("rewards", "math.answr", **only)
    assert wrong.returncode == 2 and "did you mean 'math.answer'" in wrong.stderr


@pytest.mark.parametrize("tag", ["<think>", "<answer>"])
def test_docs_page_shows_tags_instead_of_swallowing_them_as_html(tag):
    text = PAGE.read_text()
    assert tag not in text and tag.replace("<", "&lt;").replace(">", "&gt;") in text
