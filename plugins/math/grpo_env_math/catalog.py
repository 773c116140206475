"""Every task this plugin registers, with its fixtures for ``grpo-env check``."""

from __future__ import annotations

from pydantic import Field

from grpo_env.types import Fixture, Status, Task
from grpo_env_math import generators as gen
from grpo_env_math.fixtures import standard_fixtures
from grpo_env_math.loaders import dataset_examples, example_from_row
from grpo_env_math.tasks import REWARDS, CommonOptions, canaries, generator_task, make_example


class DatasetOptions(CommonOptions):
    source: str = Field("gsm8k-mini", description="'gsm8k-mini', 'math-mini', a local JSONL/parquet file or "
                        "directory, or a hub id such as 'openai/gsm8k'")
    config: str | None = Field(None, description="hub configuration, e.g. 'main' for openai/gsm8k")
    count: int | None = Field(None, ge=1, description="at most this many examples per split")


class CompetitionOptions(DatasetOptions):
    source: str = Field("math-mini", description="'math-mini', a local file or directory, or a hub id")


def _fixtures(ex_id: str, question: str, gold: str, right: list[str], wrong: str) -> list[Fixture]:
    ex = make_example(ex_id, question, gold, {})
    out = standard_fixtures(ex, right[0], wrong)
    out += [Fixture(example=ex, completion=f"\\boxed{{{r}}}", expect="full", note=f"equivalent form {r}")
            for r in right[1:]]
    return out


def _arith_fixtures() -> list[Fixture]:
    return _fixtures("math_arith-fixture", "What is 12 + 30?", "42", ["42", "42.0", "x = 42"], "41")


def _fraction_fixtures() -> list[Fixture]:
    return _fixtures("math_fractions-fixture", "Compute 1/4 + 1/2.", "3/4",
                     ["\\frac{3}{4}", "0.75", "\\dfrac34", "6/8"], "\\frac{4}{3}")


def _linear_fixtures() -> list[Fixture]:
    return _fixtures("math_linear-fixture", "Solve for x: 3x + 2 = -13.", "-5", ["-5", "x = -5", "-\\frac{10}{2}"], "5")


def _word_fixtures() -> list[Fixture]:
    q = "Ava has 12 apples and buys 30 more. How many apples does she have?"
    return _fixtures("math_word-fixture", q, "42", ["42", "42 \\text{ apples}", "\\$42"], "24")


def _dataset_fixtures() -> list[Fixture]:
    row = {"question": "A tray holds 6 rows of 4 cups. How many cups?", "answer": "6 * 4 = 24\n#### 24"}
    ex = example_from_row(row, {})
    out = standard_fixtures(ex, "24", "25")
    bad = example_from_row({"question": "Name the segment.", "answer": "\\overline{AB}"}, {})
    out.append(Fixture(example=bad, completion="\\boxed{\\overline{AB}}", expect=Status.NOT_APPLICABLE, reward="math.answer",
                       note="an unparsable gold is not applicable, never full reward"))
    choice = example_from_row({"question": "Which option is prime? (A) 4 (B) 7", "answer": "\\text{(B)}"}, {})
    out += [Fixture(example=choice, completion="The answer is (B).", expect="full", note="a letter choice"),
            Fixture(example=choice, completion="\\boxed{A}", expect="zero", note="the other letter")]
    return out


def _competition_fixtures() -> list[Fixture]:
    out: list[Fixture] = []
    cases = [
        ("Solve x^2 - 5x + 6 = 0.", "The roots are $\\boxed{2, 3}$.", ["3, 2", "x = 2, x = 3"], "2"),
        ("Solve 2x - 3 > 7 in interval notation.", "$\\boxed{(5, \\infty)}$", ["x > 5"], "[5, \\infty)"),
        ("Simplify sqrt(72).", "$\\boxed{6\\sqrt{2}}$", ["\\sqrt{72}"], "6\\sqrt{3}"),
        ("Compute the product.", "$\\boxed{\\begin{pmatrix} 11 \\\\ 4 \\end{pmatrix}}$", ["(11, 4)"], "(4, 11)"),
    ]
    for k, (problem, solution, right, wrong) in enumerate(cases):
        ex = example_from_row({"id": f"math_competition-fixture-{k}", "problem": problem, "solution": solution}, {})
        out += standard_fixtures(ex, right[0], wrong) if k == 0 else [
            Fixture(example=ex, completion=f"\\boxed{{{right[0]}}}", expect="full", note="equivalent form"),
            Fixture(example=ex, completion=f"\\boxed{{{wrong}}}", expect="zero", note="wrong value"),
        ]
    return out


def _dataset_task(name: str, description: str, options, fixtures) -> Task:
    return Task(
        name=name,
        description=description,
        rewards=dict(REWARDS),
        examples=dataset_examples,
        from_row=example_from_row,
        fixtures=fixtures,
        options=options,
        canaries=canaries,
    )


def all_tasks() -> list[Task]:
    return [
        generator_task("math_arith", gen.make_arith,
                       "Procedural multi-step integer arithmetic; difficulty 1 (a + b) .. 5 (four operations)",
                       _arith_fixtures),
        generator_task("math_fractions", gen.make_fractions,
                       "Procedural fraction arithmetic; difficulty 1 (same denominators) .. 5 (mixed numbers)",
                       _fraction_fixtures),
        generator_task("math_linear", gen.make_linear,
                       "Procedural linear equations in x; difficulty 1 (x + a = b) .. 5 (fractional solutions)",
                       _linear_fixtures),
        generator_task("math_word", gen.make_word,
                       "Procedural word problems; difficulty = number of steps (5 adds a percentage)",
                       _word_fixtures),
        _dataset_task("math", "GSM8K-format data (question, answer with '#### n') or rows with 'answer': "
                      "source = gsm8k-mini (offline, default), a local file, or a hub id", DatasetOptions,
                      _dataset_fixtures),
        _dataset_task("math_competition", "MATH-format data (problem, solution with \\boxed{}): "
                      "source = math-mini (offline, default), a local file, or a hub id", CompetitionOptions,
                      _competition_fixtures),
    ]
