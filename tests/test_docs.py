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


def walkthrough_files():
    text = DOC.read_text()
    return dict(re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.S))


@pytest.mark.slow
def test_walkthrough_plugin_installs_and_works_verbatim(tmp_path):
    files = walkthrough_files()
    assert "grpo-env-reverse/pyproject.toml" in files
    for rel, body in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(body)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
         str(tmp_path / "grpo-env-reverse")],
        check=True, capture_output=True, text=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "grpo_env.cli", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

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


THREAT_MODELS = ["code.md", "math.md"]
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
