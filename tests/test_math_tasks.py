"""The math tasks through the installed plugin: generators, data-set loaders, fixtures, CLI."""

from __future__ import annotations

import ast
import json
import logging
import operator
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from grpo_env_math.check import check_answer
from grpo_env_math.generators import word_row
from grpo_env_math.loaders import GoldError, gold_answer_of

from grpo_env.plugins import get_registry
from grpo_env.types import Status

GENERATED = ["math_arith", "math_fractions", "math_linear", "math_word"]
DATASETS = ["math", "math_competition"]
GRPO_ENV = [str(Path(sys.executable).with_name("grpo-env"))]


@pytest.fixture(scope="module")
def registry():
    return get_registry()


def _take(task, split, seed, **options):
    return list(task.examples(split, seed, task.parse_options(options)))


def test_every_task_is_registered_by_the_math_plugin(registry):
    for name in GENERATED + DATASETS:
        task = registry.tasks[name]
        assert task.rewards == {"math.answer": 1.0}
    assert registry.rewards["math.answer"].max_score == 1.0


@pytest.mark.parametrize("name", GENERATED)
@pytest.mark.parametrize("difficulty", [1, 3, 5])
def test_generators_are_deterministic_disjoint_and_sized(registry, name, difficulty):
    task = registry.tasks[name]
    train = _take(task, "train", 7, difficulty=difficulty, count=120)
    assert [e.model_dump() for e in train] == [e.model_dump() for e in _take(task, "train", 7, difficulty=difficulty, count=120)]
    assert len(train) == 120 and len({e.id for e in train}) == 120
    assert [e.id for e in _take(task, "train", 8, difficulty=difficulty, count=120)] != [e.id for e in train]
    test = _take(task, "test", 7, difficulty=difficulty, count=60)
    questions = lambda exs: {e.prompt[0].content for e in exs}
    assert not questions(train) & questions(test)
    assert not questions(_take(task, "train", 8, difficulty=difficulty, count=120)) & questions(test)
    for ex in train[:20]:
        assert ex.gold["difficulty"] == difficulty
        assert check_answer(f"\\boxed{{{ex.gold['answer']}}}", ex.gold["answer"]).status is Status.CORRECT


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _value(node):
    """An arithmetic expression of our generators' own text, evaluated over fractions."""
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    if isinstance(node, ast.BinOp):
        return _OPS[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand)
    raise AssertionError(f"unexpected node {ast.dump(node)}")


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_arithmetic_and_fraction_golds_are_right(registry, difficulty):
    for name, pattern in (("math_arith", r"What is (.*)\?"), ("math_fractions", r"Compute (.*)\. Give")):
        for ex in _take(registry.tasks[name], "test", 1, difficulty=difficulty, count=25):
            text = re.match(pattern, ex.prompt[0].content).group(1)
            text = re.sub(r"(\d+) (\d+)/(\d+)", r"(\1 + \2/\3)", text)  # mixed numbers
            assert Fraction(ex.gold["answer"]) == _value(ast.parse(text, mode="eval").body), text


def _side(text, x):
    m = re.fullmatch(r"(-?\d*)x(?: ([+-]) (\d+))?|(-?\d+)", text.strip())
    if m.group(4) is not None:
        return Fraction(m.group(4))
    coef = {"": 1, "-": -1}.get(m.group(1), None)
    coef = Fraction(m.group(1)) if coef is None else coef
    const = Fraction(m.group(3) or 0) * (-1 if m.group(2) == "-" else 1)
    return coef * x + const


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_linear_solutions_satisfy_their_equation(registry, difficulty):
    for ex in _take(registry.tasks["math_linear"], "train", 2, difficulty=difficulty, count=40):
        lhs, rhs = re.match(r"Solve for x: (.*)\.", ex.prompt[0].content).group(1).split("=")
        x = Fraction(ex.gold["answer"])
        assert _side(lhs, x) == _side(rhs, x)


def test_word_problem_steps_end_in_the_answer():
    import random

    for d in range(1, 6):
        row = word_row(random.Random(d), d)
        steps, answer = row["answer"].split("####")
        assert steps.strip().splitlines()[-1].endswith(f"= {answer.strip()}")


def test_answer_format_option_changes_the_prompt(registry):
    task = registry.tasks["math_arith"]
    boxed = _take(task, "train", 0, count=1)[0].prompt[0].content
    tagged = _take(task, "train", 0, count=1, answer_format="answer_tag")[0].prompt[0].content
    assert "\\boxed{}" in boxed and "<answer>" not in boxed
    assert "<think>" in tagged and "<answer>" in tagged
    with pytest.raises(ValueError):
        task.parse_options({"answer_format": "xml"})


def test_offline_sets_load_and_every_gold_parses(registry):
    for name, sizes in (("math", {"train": 45, "test": 20}), ("math_competition", {"train": 20, "test": 10})):
        task = registry.tasks[name]
        for split, n in sizes.items():
            exs = _take(task, split, 0)
            assert len(exs) == n
            assert all("gold_error" not in e.gold for e in exs)
            assert [e.id for e in exs] == [e.id for e in _take(task, split, 0)]
        train = {e.prompt[0].content for e in _take(task, "train", 0)}
        assert not train & {e.prompt[0].content for e in _take(task, "test", 0)}
    assert len(_take(registry.tasks["math"], "train", 0, count=5)) == 5


def test_gold_answers_of_each_format():
    assert gold_answer_of({"answer": "She pays 5 + 13 = 18\n#### 18"}) == "18"
    assert gold_answer_of({"answer": "#### 1,234"}) == "1,234"
    assert gold_answer_of({"solution": "So it is $\\boxed{\\frac{1}{2}}$."}) == "\\frac{1}{2}"
    assert gold_answer_of({"answer": 7}) == "7"
    assert gold_answer_of({"answer": "\\boxed{(1, 2)}"}) == "(1, 2)"
    with pytest.raises(GoldError):
        gold_answer_of({"question": "no gold here"})


def test_local_files_and_unparsable_golds_are_counted(registry, tmp_path, caplog):
    rows = [
        {"problem": "p1", "solution": "$\\boxed{\\sqrt{2}}$"},
        {"problem": "p2", "solution": "$\\boxed{\\overline{AB}}$"},  # a segment: outside the grammar
        {"problem": "p3", "solution": "no box at all"},
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = registry.tasks["math_competition"]
    with caplog.at_level(logging.WARNING, logger="grpo_env_math.loaders"):
        exs = _take(task, "train", 0, source=str(path))
    assert len(exs) == 2
    assert "1 of 3 gold answers do not parse" in caplog.text and "1 rows had none" in caplog.text
    bad = next(e for e in exs if "gold_error" in e.gold)
    reward = registry.rewards["math.answer"]
    assert reward.fn("\\boxed{\\overline{AB}}", bad).status is Status.NOT_APPLICABLE
    good = next(e for e in exs if "gold_error" not in e.gold)
    assert reward.fn("\\boxed{2^{1/2}}", good).status is Status.CORRECT


def test_parquet_files_load(registry, tmp_path):
    import datasets

    datasets.Dataset.from_list([{"question": "1+1?", "answer": "#### 2"}, {"question": "2+2?", "answer": "#### 4"}]
                               ).to_parquet(str(tmp_path / "train.parquet"))
    exs = _take(registry.tasks["math"], "train", 0, source=str(tmp_path))
    assert sorted(e.gold["answer"] for e in exs) == ["2", "4"]


def test_missing_source_is_a_clear_error(registry, tmp_path):
    from grpo_env.data import DataError

    with pytest.raises(DataError, match="no such file"):
        _take(registry.tasks["math"], "train", 0, source=str(tmp_path / "absent.jsonl"))


def test_score_cli_on_plain_answer_rows(tmp_path):
    rows = [
        {"question": "2+2?", "answer": "4", "completion": "\\boxed{4}"},
        {"problem": "p", "solution": "so \\boxed{\\frac12}", "completion": "The answer is 0.5"},
        {"answer": "Adding: 1000 + 234\n#### 1,234", "completion": "#### 1234"},
        {"answer": "18", "completion": "\\boxed{2^{2^{2^{2^{2^2}}}}}"},
        {"answer": "\\overline{AB}", "completion": "AB"},
        {"answer": "18", "completion": "I think 17"},
    ]
    src, dst = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run([*GRPO_ENV, "score", "math", "--input", str(src), "--output", str(dst)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line)["status"] for line in dst.read_text().splitlines()]
    assert got == ["correct", "correct", "correct", "rejected", "not_applicable", "incorrect"]


@pytest.mark.slow
def test_check_cli_passes_for_every_math_task():
    proc = subprocess.run([*GRPO_ENV, "check", *GENERATED, *DATASETS], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in GENERATED + DATASETS:
        assert re.search(rf"{name}\s.*\sok\s", proc.stdout), proc.stdout


def test_fixture_counts(registry):
    for name in GENERATED + DATASETS:
        fixtures = registry.tasks[name].get_fixtures()
        kinds = {str(f.expect) for f in fixtures}
        assert {"full", "zero", "unparsable", "rejected"} <= kinds, name
