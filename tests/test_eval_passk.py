"""`grpo-env eval` with K samples per prompt: pass@1, pass@k (unbiased estimator), mean reward; in
the eval JSON and in the run report."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from grpo_env import hookimpl
from grpo_env.engine.tiny import write_tiny
from grpo_env.cli.report import write_report
from grpo_env.cli.train import main_eval, pass_at_k, pass_ks
from grpo_env.types import Example, Outcome, Reward, Task


def has_vowel(completion, example):  # module level: it runs in forked scoring workers
    return Outcome.correct() if any(ch in "aeiou" for ch in completion) else Outcome.incorrect()


def _examples(split, seed, options):
    for i in range(100):
        yield Example(id=f"{split}-{i}", prompt=f"say {i}")


class VowelPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(Task(name="vowel", rewards={"pk.vowel": 1.0}, examples=_examples))

    @hookimpl
    def register_rewards(self, register):
        register(Reward(name="pk.vowel", fn=has_vowel))


@pytest.mark.parametrize("n", range(1, 7))
def test_estimator_equals_counting_every_subset(n):
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(outcomes, k))
            exact = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12), (n, c, k)


def test_estimator_edges_and_reported_ks():
    assert pass_at_k(200, 0, 10) == 0.0 and pass_at_k(200, 200, 10) == 1.0
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)  # no overflow at large n
    with pytest.raises(ValueError, match="pass@5 needs at least 5 samples"):
        pass_at_k(4, 1, 5)
    assert pass_ks(1) == [1] and pass_ks(8) == [1, 2, 4, 8] and pass_ks(5) == [1, 2, 4, 5]


@pytest.fixture
def recipe(tmp_path, register_plugin):
    register_plugin(VowelPlugin(), name="pk")
    model = write_tiny(tmp_path / "tiny-model")
    path = tmp_path / "r.toml"
    path.write_text(f"""
name = "pk"
seed = 2
[model]
name = "{model}"
[[tasks]]
name = "vowel"
[scoring]
workers = 1
[train]
max_new_tokens = 3
eval = {{ examples_per_task = 12, batch_size = 16, output = "{tmp_path / 'run' / 'eval_k.json'}" }}
""")
    return path


def test_samples_k_gives_pass_at_k_and_mean_reward(recipe, tmp_path, capsys):
    assert main_eval(str(recipe), None, [], samples=4, temperature=1.0) == 0
    data = json.loads((tmp_path / "run" / "eval_k.json").read_text())
    assert data["samples"] == 4 and data["temperature"] == 1.0
    r = data["results"]["vowel"]
    counts = r["correct_counts"]
    assert r["n"] == 12 and len(counts) == 12 and all(0 <= c <= 4 for c in counts)
    assert sum(r["statuses"].values()) == 12 * 4 and r["statuses"].get("correct", 0) == sum(counts)
    assert set(r["pass_at_k"]) == {"1", "2", "4"}
    assert r["pass_at_k"]["1"] == pytest.approx(sum(counts) / 48) == pytest.approx(r["accuracy"])
    assert r["pass_at_k"]["4"] == pytest.approx(sum(c > 0 for c in counts) / 12)
    assert r["pass_at_k"]["2"] == pytest.approx(sum(1 - math.comb(4 - c, 2) / 6 for c in counts) / 12)
    assert r["mean_reward"] == pytest.approx(r["accuracy"])  # a 1/0 reward: the mean over the 48 samples
    assert 0 < r["pass_at_k"]["1"] < r["pass_at_k"]["4"] <= 1  # sampling varies the answers of a prompt
    table = capsys.readouterr().out
    assert "4 samples at temperature 1" in table and "pass@4" in table

    # the run report shows them
    run = tmp_path / "run"
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward_mean": 0.5, "time": {"total": 1.0}}) + "\n")
    report = write_report(run).read_text()
    assert "## pass@k" in report
    line = next(x for x in report.splitlines() if x.startswith("| k | vowel | 4 |"))
    assert f"pass@4 {r['pass_at_k']['4']:.3f}" in line and f"pass@1 {r['pass_at_k']['1']:.3f}" in line


def test_greedy_default_is_unchanged(recipe, tmp_path):
    assert main_eval(str(recipe), None, []) == 0
    data = json.loads((tmp_path / "run" / "eval_k.json").read_text())
    r = data["results"]["vowel"]
    assert data["samples"] == 1 and data["temperature"] == 0.0
    assert "pass_at_k" not in r and sum(r["statuses"].values()) == 12


@pytest.mark.parametrize("samples, temperature, says", [(0, None, "--samples must be at least 1"),
                                                         (4, 0.0, "need a temperature above 0")])
def test_bad_sampling_settings_are_refused(recipe, samples, temperature, says, capsys):
    assert main_eval(str(recipe), None, [], samples=samples, temperature=temperature) == 2
    assert says in capsys.readouterr().err


@pytest.mark.slow
def test_eval_samples_flag_on_the_command_line(tmp_path):
    """`grpo-env eval RECIPE --samples K --temperature T` reaches the pass@k evaluation (a built-in
    task, so the CLI's own plugin discovery finds it; a tiny model, so the numbers are near 0)."""
    import subprocess
    import sys

    model = write_tiny(tmp_path / "tiny-model")
    out = tmp_path / "eval.json"
    path = tmp_path / "r.toml"
    path.write_text(f"""
name = "cli"
[model]
name = "{model}"
[[tasks]]
name = "math_arith"
[scoring]
workers = 1
[train]
max_new_tokens = 3
eval = {{ examples_per_task = 4, batch_size = 8, output = "{out}" }}
""")
    proc = subprocess.run([sys.executable, "-m", "grpo_env.cli", "eval", str(path), "--samples", "2", "--temperature", "0.8"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["samples"] == 2 and data["temperature"] == 0.8
    assert set(data["results"]["math_arith"]["pass_at_k"]) == {"1", "2"}
    bad = subprocess.run([sys.executable, "-m", "grpo_env.cli", "eval", str(path), "--samples", "0"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
