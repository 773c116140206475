"""The reasoning-gym plugin through its installed entry point: every dataset a task, its scorer's
floats as typed outcomes, the conformance probes as fixtures, flagged tasks refused in training, and
the docs table as the conformance script writes it."""

import itertools
import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("reasoning_gym")

from reasoning_gym.factory import DATASETS  # noqa: E402
from reasoning_gym.utils import extract_answer as rg_extract  # noqa: E402

from grpo_env import Example, Status  # noqa: E402
from grpo_env.recipe import RecipeError, load_recipe  # noqa: E402
from grpo_env.cli.train import mix_entries  # noqa: E402
from grpo_env_reasoning_gym import conformance  # noqa: E402
from grpo_env_reasoning_gym.extract import extract_answer  # noqa: E402
from grpo_env_reasoning_gym.reward import outcome_of, rg_score  # noqa: E402

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reasoning_gym.md"
# clean, credits any non-empty answer, raises on non-numeric text, no single gold answer
CLEAN, CREDITS_ANY, RAISES, NO_GOLD = "chain_sum", "game_of_life_halting", "prime_factorization", "graph_color"


def cli(*args, cwd=ROOT):
    env = {**os.environ, "COLUMNS": "250"}  # rich tables: task names on one line
    return subprocess.run([sys.executable, "-m", "grpo_env.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def registry():
    from grpo_env import plugins

    plugins.reset()
    yield plugins.get_registry()
    plugins.reset()


def first(registry, name, **options):
    task = registry.task(f"rg.{name}")
    return next(iter(task.examples("test", 0, task.parse_options(options))))


def test_every_dataset_is_a_task_of_the_installed_plugin(registry):
    names = {n for n in registry.tasks if n.startswith("rg.")}
    assert names == {f"rg.{d}" for d in DATASETS if d != "composite"}
    assert len(names) >= 100
    assert {registry.origin[("task", n)] for n in names} == {"reasoning_gym"}
    assert registry.origin[("reward", "rg.score")] == "reasoning_gym"
    assert registry.plugins["reasoning_gym"].distribution == "grpo-env-reasoning-gym"


@pytest.mark.parametrize("text", [
    "<answer>42</answer>", "a <answer> 1 </answer> b <answer>2</answer>", "<answer>x", "</answer><answer>y</answer>",
    "<answer><answer>z</answer></answer>", "<answer>\n multi\nline \n</answer>", "", "no tags", "<answer></answer>",
    "<answer>a</answer><answer>b", "<answer>a</answer>junk</answer>",
])
def test_extract_answer_agrees_with_reasoning_gym(text):
    assert extract_answer(text) == rg_extract(text)


def test_extract_answer_is_linear_on_hostile_text():
    hostile = "<answer>" * 200_000 + "x" * 100_000  # reasoning-gym's regex rescans from every tag
    start = time.perf_counter()
    assert extract_answer(hostile) is None
    assert extract_answer(hostile + "</answer>") == "<answer>" * 199_999 + "x" * 100_000
    assert time.perf_counter() - start < 0.5


def test_scorer_floats_become_typed_outcomes(registry):
    ex = first(registry, CLEAN)
    gold = ex.gold["entry"]["answer"]
    assert rg_score(f"<think>sum</think><answer>{gold}</answer>", ex).status is Status.CORRECT
    wrong = rg_score(f"<answer>{int(gold) + 1}</answer>", ex)
    assert (wrong.status, wrong.score) == (Status.INCORRECT, 0.0)
    assert rg_score(f"the answer is {gold}", ex).status is Status.UNPARSABLE
    geometry = first(registry, "advanced_geometry")
    none = rg_score("<answer></answer>", geometry)  # upstream's 0.01 for any answer: exact match by default
    assert (none.status, none.score, none.details["upstream_score"]) == (Status.INCORRECT, 0.0, 0.01)
    opted = geometry.model_copy(update={"gold": {**geometry.gold, "options": {"partial_credit": True}}})
    some = rg_score("<answer></answer>", opted)
    assert some.status is Status.PARTIAL and 0 < some.score < 1
    raised = rg_score("<answer>x</answer>", first(registry, RAISES))
    assert raised.status is Status.ERROR and f"dataset {RAISES!r} raised ValueError" in raised.details["error"]
    for bad in (float("nan"), 1.5, -0.1, "1", None, True):
        out = outcome_of("some_dataset", bad)
        assert out.status is Status.ERROR and "'some_dataset'" in out.details["error"], bad
    broken = Example(id="b", prompt="q", gold={"dataset": CLEAN})
    assert rg_score("<answer>1</answer>", broken).status is Status.NOT_APPLICABLE


def test_examples_are_deterministic_per_split_and_follow_options(registry):
    task = registry.task(f"rg.{CLEAN}")
    opts = task.parse_options({})
    take = lambda split, seed, o=opts: [e.model_dump_json() for e in itertools.islice(task.examples(split, seed, o), 5)]
    assert take("train", 0) == take("train", 0)
    assert take("train", 0) != take("test", 0) and take("train", 0) != take("train", 1)
    hard = first(registry, CLEAN, difficulty=10, max_terms=2)
    meta = hard.gold["entry"]["metadata"]
    assert meta["num_terms"] == 2 and hard.gold["options"] == {"difficulty": 10, "max_terms": 2}
    assert first(registry, CLEAN, system_prompt=None).prompt[0].role == "user"
    bad_options = [({"nope": 1}, "nope"), ({"difficulty": 99}, "difficulty"), ({"min_terms": 9, "max_terms": 2}, CLEAN),
                   ({"system_prompt": "nope"}, "system_prompt")]
    for bad, key in bad_options:
        with pytest.raises(ValueError, match=key):
            task.parse_options(bad)


@pytest.mark.slow
def test_check_finds_the_broken_scorers():
    """`check` runs the conformance probes as fixtures: the flagged tasks' probes fail and are
    shown with why, as `flagged` (known, refused in training), not as an unexpected failure."""
    names = [f"rg.{n}" for n in (CLEAN, NO_GOLD, CREDITS_ANY, RAISES)]
    res = cli("check", *names)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if line.startswith("│ rg.")}
    assert "ok" in rows[f"rg.{CLEAN}"] and "ok" in rows[f"rg.{NO_GOLD}"]
    assert "flagged" in rows[f"rg.{CREDITS_ANY}"] and "flagged" in rows[f"rg.{RAISES}"]
    assert f"rg.{CREDITS_ANY}: fixture 2 (junk 'x'): expected total = 0, got 1 (correct)" in res.stdout
    assert f"scorer of dataset '{RAISES}' raised ValueError" in res.stdout
    assert f"rg.{CREDITS_ANY}: flagged, refused in training" in res.stdout


def _recipe(tmp_path, allow: str = ""):
    path = tmp_path / "r.toml"
    path.write_text(f'name = "rg"\n[[tasks]]\nname = "rg.{CREDITS_ANY}"\n{allow}\n'
                    f'[[tasks]]\nname = "rg.{CLEAN}"\n')
    return path


@pytest.mark.slow
def test_flagged_task_is_refused_in_training_unless_the_recipe_opts_in(tmp_path, registry):
    res = cli("train", str(_recipe(tmp_path)), cwd=tmp_path)  # refused at recipe load: no model is loaded
    assert res.returncode == 2
    assert f"task 'rg.{CREDITS_ANY}' is flagged" in res.stderr and "allow_flagged = true" in res.stderr
    assert "junk credited" in res.stderr
    entries = mix_entries(load_recipe(_recipe(tmp_path, "allow_flagged = true")), registry)
    assert [e.task.name for e in entries] == [f"rg.{CREDITS_ANY}", f"rg.{CLEAN}"]
    with pytest.raises(RecipeError, match="flagged"):
        mix_entries(load_recipe(_recipe(tmp_path, "options = { difficulty = 1 }")), registry)


def test_score_file_rows_are_judged(tmp_path, registry):
    ex = first(registry, CLEAN)
    rows = [{"id": ex.id, "prompt": ex.prompt[-1].content, "entry": ex.gold["entry"], "completion": c}
            for c in (f"<answer>{ex.gold['entry']['answer']}</answer>", "<answer>-1</answer>", "nothing")]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = cli("score", f"rg.{CLEAN}", "--input", str(src), "--output", str(tmp_path / "out.jsonl"))
    assert res.returncode == 0, res.stdout + res.stderr
    out = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["status"] for r in out] == ["correct", "incorrect", "unparsable"]


def _doc_rows() -> dict[str, str]:
    text = DOC.read_text().split(conformance.START, 1)[1].split(conformance.END, 1)[0]
    return {line.split("`")[1].removeprefix("rg."): line for line in text.splitlines() if line.startswith("| `rg.")}


def test_docs_table_matches_the_committed_record():
    """The table is the committed record rendered, the record is current (made by the installed
    reasoning-gym under the current rules) and covers every dataset; a sample is recomputed live."""
    rows = _doc_rows()
    names = conformance.datasets.dataset_names()
    rerun = "rerun: python -m grpo_env_reasoning_gym.conformance --write docs/reasoning_gym.md"
    assert sorted(rows) == names, rerun
    record = conformance.recorded()
    assert sorted(record) == names, rerun
    for name in names:
        assert rows[name] == conformance.row(record[name]), name
    sample = [CLEAN, CREDITS_ANY, RAISES, NO_GOLD, "coin_flip", "circuit_logic", "arc_agi", "word_sorting"]
    start = time.perf_counter()
    for name in sample:
        assert rows[name] == conformance.row(conformance.compute(name)), name
    assert time.perf_counter() - start < 30
    assert "**yes**" in rows[CREDITS_ANY] and "**yes**" in rows[RAISES] and rows[CLEAN].endswith("| no |")
    from importlib.metadata import version

    flagged = sum(v.flagged for v in record.values())
    assert f"reasoning-gym {version('reasoning-gym')}: {len(names)} datasets, {flagged} flagged" in DOC.read_text()


def test_flags_come_from_the_record_only_when_it_is_current(tmp_path, monkeypatch):
    """A record made by another reasoning-gym version, or under other rules, is ignored: the
    verdict is then computed from the installed scorers."""
    data = json.loads(conformance.RECORD.read_text())
    assert data["rules"] == conformance.rules() and conformance.recorded()
    for stale in ({**data, "reasoning_gym": "0.0.1"}, {**data, "rules": {**data["rules"], "margin": 0.5}}):
        path = tmp_path / "stale.json"
        path.write_text(json.dumps(stale))
        monkeypatch.setattr(conformance, "RECORD", path)
        conformance.recorded.cache_clear()
        assert conformance.recorded() == {}
    conformance.recorded.cache_clear()


@pytest.mark.slow
def test_conformance_script_writes_between_the_markers(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{conformance.START}\nSTALE\n{conformance.END}\noutro\n")
    script = [sys.executable, "-m", "grpo_env_reasoning_gym.conformance"]
    res = subprocess.run([*script, "--write", str(doc), CLEAN, RAISES], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "STALE" not in text
    assert conformance.row(conformance.verdict(RAISES)) in text and "2 datasets, 1 flagged" in text
    assert conformance.main(["no_such_dataset"]) == 2 and "no_such_dataset" in capsys.readouterr().err


def test_an_oversized_answer_is_refused_before_any_scorer_sees_it(tmp_path, registry):
    """Upstream scorers are not linear (sympy parses the answer): 330 KB of junk took 1.2 s in
    `polynomial_multiplication` and five others. Gold answers are at most about 2 KB, so an
    answer over MAX_ANSWER_CHARS is `rejected` (scored 0, counted in training), fast."""
    from grpo_env_reasoning_gym.reward import MAX_ANSWER_CHARS

    ex = first(registry, "polynomial_multiplication")
    big = "<answer>" + "1 2 3 abc, " * 30000 + "</answer>"
    rows = [{"id": ex.id, "prompt": ex.prompt[-1].content, "entry": ex.gold["entry"], "completion": c}
            for c in (big, f"<answer>{'x' * (MAX_ANSWER_CHARS + 1)}</answer>", f"<answer>{ex.gold['entry']['answer']}</answer>")]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    start = time.perf_counter()
    res = cli("score", "rg.polynomial_multiplication", "--input", str(src), "--output", str(tmp_path / "out.jsonl"))
    assert res.returncode == 0, res.stdout + res.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["status"], r["score"]) for r in out] == [("rejected", 0.0), ("rejected", 0.0), ("correct", 1.0)]
    assert time.perf_counter() - start < 30  # the CLI's start-up included; the scorers never ran on the junk
