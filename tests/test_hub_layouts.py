"""GSM8K, MATH, HumanEval and MBPP read from local copies in the hub's own on-disk layouts.

Each copy is laid out as its hub repository is (one folder per configuration holding
``<split>-00000-of-00001.parquet`` shards, and the README whose ``configs:`` block names them), so
the loaders read it with the same ``load_dataset(source, config, split=split)`` call a hub id gets:
this is the online path, run offline. A ``save_to_disk`` directory works too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from grpo_env_code.reward import code_tests

from grpo_env.data import DataError, load_rows, quiet_progress
from grpo_env.plugins import get_registry
from grpo_env.types import Status


def write_hub_copy(root: Path, configs: dict[str, dict[str, list[dict]]], readme: bool = True) -> Path:
    """A hub data set repository's files: ``<config>/<split>-00000-of-00001.parquet`` and its README."""
    import datasets

    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            (root / config).mkdir(parents=True, exist_ok=True)
            with quiet_progress():
                datasets.Dataset.from_list(rows).to_parquet(str(root / config / f"{split}-00000-of-00001.parquet"))
            lines += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    if readme:
        (root / "README.md").write_text("\n".join(lines + ["---", "", "# a local copy", ""]))
    return root


def _examples(task: str, split: str, **options):
    t = get_registry().task(task)
    return list(t.examples(split, 0, t.parse_options(options)))


GSM8K = {
    "main": {
        "train": [{"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
                  {"question": "Half of 18?", "answer": "18 / 2 = 9\n#### 9"}],
        "test": [{"question": "5 times 6?", "answer": "5 * 6 = 30\n#### 30"}],
    },
    "socratic": {
        "train": [{"question": "What is 1 + 1?", "answer": "How much? 1 + 1 = 2\n#### 2"}],
        "test": [{"question": "What is 2 + 2?", "answer": "How much? 2 + 2 = 4\n#### 4"}],
    },
}


def test_gsm8k_in_the_openai_gsm8k_layout(tmp_path):
    root = write_hub_copy(tmp_path / "gsm8k", GSM8K)
    assert (root / "main" / "train-00000-of-00001.parquet").exists()
    train = _examples("math", "train", source=str(root), config="main")
    assert sorted(e.gold["answer"] for e in train) == ["7", "9"]
    assert [e.gold["answer"] for e in _examples("math", "test", source=str(root), config="socratic")] == ["4"]
    reward = get_registry().reward("math.answer")
    test = _examples("math", "test", source=str(root), config="main")
    assert reward.fn("so \\boxed{30}", test[0]).status is Status.CORRECT
    assert reward.fn("so \\boxed{31}", test[0]).status is Status.INCORRECT


def test_math_in_the_hendrycks_math_layout(tmp_path):
    row = {"problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?", "level": "Level 1", "type": "Prealgebra",
           "solution": "We add: $\\frac{1}{2} + \\frac{1}{4} = \\boxed{\\frac{3}{4}}$."}
    other = {"problem": "Solve $x + 1 = 3$.", "level": "Level 1", "type": "Algebra", "solution": "$x = \\boxed{2}$"}
    root = write_hub_copy(tmp_path / "hendrycks_math", {"prealgebra": {"train": [row], "test": [row]},
                                                       "algebra": {"train": [other], "test": [other]}})
    exs = _examples("math_competition", "test", source=str(root), config="prealgebra")
    assert [e.gold["answer"] for e in exs] == ["\\frac{3}{4}"]
    assert get_registry().reward("math.answer").fn("\\boxed{0.75}", exs[0]).status is Status.CORRECT
    algebra = _examples("math_competition", "train", source=str(root), config="algebra")
    assert [e.gold["answer"] for e in algebra] == ["2"]


HUMANEVAL_ROW = {"task_id": "HumanEval/0", "prompt": "def add(a, b):\n    \"\"\"The sum of a and b.\"\"\"\n",
                 "canonical_solution": "    return a + b\n", "entry_point": "add",
                 "test": "METADATA = {}\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n"
                         "    assert candidate(-1, 1) == 0\n"}


def test_humaneval_in_the_openai_humaneval_layout(tmp_path):
    root = write_hub_copy(tmp_path / "openai_humaneval", {"openai_humaneval": {"test": [HUMANEVAL_ROW]}})
    exs = _examples("code", "test", source=str(root), config="openai_humaneval")
    assert [e.id for e in exs] == ["HumanEval/0"] and exs[0].gold["converted"]
    out = code_tests(HUMANEVAL_ROW["canonical_solution"], exs[0])
    assert out.status is Status.CORRECT and out.score == 1.0, out
    assert code_tests("    return a - b\n", exs[0]).status is not Status.CORRECT


MBPP_FULL = {"task_id": 2, "text": "Write a function to find the shared elements of two lists.",
             "code": "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n",
             "test_list": ["assert similar_elements((3, 4, 5, 6), (5, 7, 4, 10)) == (4, 5)",
                           "assert similar_elements((1, 2), (3, 4)) == ()"],
             "test_setup_code": "", "challenge_test_list": []}
MBPP_SANITIZED = {"source_file": "Benchmark Questions Verification V2.ipynb", "task_id": 2,
                  "prompt": "Write a function to find the shared elements from the given two lists.",
                  "code": MBPP_FULL["code"], "test_imports": [], "test_list": MBPP_FULL["test_list"]}


def test_mbpp_in_the_google_research_layout(tmp_path):
    splits = ("train", "test", "validation", "prompt")
    root = write_hub_copy(tmp_path / "mbpp", {"full": {s: [MBPP_FULL] for s in splits},
                                              "sanitized": {s: [MBPP_SANITIZED] for s in splits}})
    for config in ("full", "sanitized"):
        exs = _examples("code", "test", source=str(root), config=config)
        assert [e.id for e in exs] == ["mbpp/2"]
        out = code_tests(f"```python\n{MBPP_FULL['code']}```", exs[0])
        assert out.status is Status.CORRECT and out.score == 1.0, (config, out)


def test_a_configuration_folder_copied_without_its_readme(tmp_path):
    root = write_hub_copy(tmp_path / "gsm8k", GSM8K, readme=False)
    train = _examples("math", "train", source=str(root), config="main")
    assert sorted(e.gold["answer"] for e in train) == ["7", "9"]


def test_a_save_to_disk_directory(tmp_path):
    import datasets

    dd = datasets.DatasetDict({s: datasets.Dataset.from_list(GSM8K["main"][s], split=s) for s in ("train", "test")})
    with quiet_progress():
        dd.save_to_disk(str(tmp_path / "saved"))
        dd["test"].save_to_disk(str(tmp_path / "saved_test"))
    assert [e.gold["answer"] for e in _examples("math", "test", source=str(tmp_path / "saved"))] == ["30"]
    assert [e.gold["answer"] for e in _examples("math", "test", source=str(tmp_path / "saved_test"))] == ["30"]
    with pytest.raises(DataError, match=r"saved_test.*split 'test', not 'train'"):
        load_rows(tmp_path / "saved_test", "train")
    with pytest.raises(DataError, match=r"no split 'validation'.*\['test', 'train'\]"):
        load_rows(tmp_path / "saved", "validation")


def test_an_unknown_configuration_or_split_is_named(tmp_path):
    root = write_hub_copy(tmp_path / "gsm8k", GSM8K)
    with pytest.raises(DataError, match=r"gsm8k.*config 'mian'.*'main'"):
        load_rows(root, "train", config="mian")
    with pytest.raises(DataError, match=r"gsm8k.*split 'validation'"):
        load_rows(root, "validation", config="main")


def test_cli_reads_a_hub_copy_offline_without_progress_bars(tmp_path):
    """`grpo-env tasks math` renders a test example from the local hub copy with the hub switched
    off, and prints no "Generating ... split" bars for it."""
    root = write_hub_copy(tmp_path / "gsm8k", GSM8K)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "grpo_env.cli", "tasks", "math", "--split", "test",
                           "--option", f"source={root}", "--option", "config=main"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 times 6?" in proc.stdout
    assert "Generating" not in proc.stderr and "examples/s" not in proc.stderr, proc.stderr


def test_progress_bars_are_restored_for_the_users_own_calls(tmp_path):
    import datasets

    assert not datasets.are_progress_bars_disabled()
    load_rows(write_hub_copy(tmp_path / "gsm8k", GSM8K), "train", config="main")
    assert not datasets.are_progress_bars_disabled()
