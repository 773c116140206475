"""docs/plugins.md documents every hook with its exact signature, and its walkthrough works verbatim."""

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grpo_env import hookspecs

DOC = Path(__file__).parent.parent / "docs" / "plugins.md"


def hook_names():
    return [n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "grpo_env_spec")]


def test_hookspecs_are_found():
    assert set(hook_names()) >= {"register_tasks", "register_rewards"}


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_documented_with_exact_signature(name):
    fn = getattr(hookspecs, name)
    heading = f"### {name}({', '.join(inspect.signature(fn).parameters)})"
    assert heading in DOC.read_text().splitlines(), f"docs/plugins.md lacks the heading {heading!r}"


def walkthrough_files(doc: Path = DOC):
    text = doc.read_text()
    return dict(re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.S))


def install_walkthrough(tmp_path: Path, doc: Path, package: str):
    """Write a page's walkthrough files under ``tmp_path``, pip-install ``package`` from them into a
    private site directory, and return a function running the CLI with that site on the path."""
    for rel, body in walkthrough_files(doc).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(body)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
         str(tmp_path / package)],
        check=True, capture_output=True, text=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}

    def cli(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "grpo_env.cli", *args], env=env, cwd=tmp_path, input=stdin,
                              capture_output=True, text=True, timeout=300)

    return cli


@pytest.mark.slow
def test_walkthrough_plugin_installs_and_works_verbatim(tmp_path):
    assert "grpo-env-reverse/pyproject.toml" in walkthrough_files()
    cli = install_walkthrough(tmp_path, DOC, "grpo-env-reverse")
    listing = cli("plugins")
    assert listing.returncode == 0, listing.stderr
    line = next(l for l in listing.stdout.splitlines() if " reverse " in l)
    assert "grpo-env-reverse" in line and "0.1.0" in line and "reverse.exact" in line
    check = cli("check", "reverse")
    assert check.returncode == 0, check.stdout + check.stderr
    score = cli("score", "reverse", "--input", "grpo-env-reverse/rows.jsonl", "--output", "scored.jsonl")
    assert score.returncode == 0, score.stdout + score.stderr
    rows = [json.loads(l) for l in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [(r["id"], r["status"], r["score"]) for r in rows] == [("a", "correct", 1.0), ("b", "incorrect", 0.0)]
    shown = cli("tasks", "reverse")
    assert shown.returncode == 0 and "Reverse the word" in shown.stdout


ENV_DOC = DOC.parent / "environments.md"


@pytest.mark.slow
def test_environment_walkthrough_installs_checks_plays_and_trains_verbatim(tmp_path):
    from grpo_env.engine.tiny import write_tiny

    assert "grpo-env-capitals/grpo_env_capitals/__init__.py" in walkthrough_files(ENV_DOC)
    cli = install_walkthrough(tmp_path, ENV_DOC, "grpo-env-capitals")
    listing = cli("tasks")
    assert listing.returncode == 0, listing.stderr
    line = next(l for l in listing.stdout.splitlines() if " capitals " in l)
    assert "up to 3 turns; tools: lookup" in line
    check = cli("check", "capitals")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "3 " in next(l for l in check.stdout.splitlines() if " capitals " in l)  # 3 scripted episodes passed
    call = '<tool_call>{"name": "lookup", "arguments": {"country": "peru"}}</tool_call>'
    played = cli("play", "capitals", "--split", "test", stdin=f"{call}\nlima\n")
    assert played.returncode == 0, played.stdout + played.stderr
    assert "tool: lima" in played.stdout
    assert "episode ended by env after 2 turn(s), 1 tool call(s), 0 tool error(s)" in played.stdout
    assert "reward " in played.stdout
    # one training step on it, through the real CLI, with a tiny model
    tiny = write_tiny(tmp_path / "tiny")
    run = cli("train", "grpo-env-capitals/capitals.toml", f"--model.name={tiny}", "--train.steps=1",
              "--train.max_new_tokens=8", f"--train.output_dir={tmp_path / 'run'}", "--train.progress=false",
              "--scoring.workers=1")
    assert run.returncode == 0, run.stdout + run.stderr
    rec = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["step"] == 1 and rec["episodes_by_env"]["capitals"]["episodes"] == 16


THREAT_MODELS = ["code.md", "math.md", "environments.md", "integrations.md", "reasoning_gym.md"]
SHORT = {"S": "tests/test_sandbox.py", "A": "tests/test_sandbox_attacks.py", "C": "tests/test_code_tasks.py"}


@pytest.mark.parametrize("doc", THREAT_MODELS)
def test_threat_models_cite_tests_that_exist(doc):
    """Each test a threat-model table names (`tests/test_x.py::test_y`, or `S::test_y` with the
    page's abbreviations) exists, so the table cannot claim a proof that was renamed or removed."""
    root = DOC.parent.parent
    text = (DOC.parent / doc).read_text()
    cited = [(path, name) for path, name in re.findall(r"(tests/test_\w+\.py)::(test_\w+)", text)]
    cited += [(SHORT[k], name) for k, name in re.findall(r"`([SAC])::(test_\w+)", text)]
    assert cited, f"docs/{doc} cites no test"
    missing = [f"{p}::{n}" for p, n in cited if not re.search(rf"^(async )?def {n}\(", (root / p).read_text(), re.M)]
    assert not missing, f"docs/{doc} cites tests that do not exist: {missing}"


def test_every_reward_field_is_documented():
    """The 'Reward fields' table of docs/plugins.md names every field of grpo_env.Reward."""
    from grpo_env.types import Reward

    text = DOC.read_text()
    table = text[text.index("Reward fields:"):].split("\n\n")[1]
    missing = [f for f in Reward.model_fields if not re.search(rf"`{f}[`(]", table)]
    assert not missing, f"docs/plugins.md 'Reward fields' lacks {missing}"


def test_plugins_page_documents_rejected_outcomes_fixture_notes_and_optional_components():
    text = DOC.read_text()
    assert "| `rejected` |" in text
    assert 'note=""' in text and "`note`" in text
    assert "optional=(" in text and "## Using another plugin's reward" in text
