"""Answers that commit to nothing, against `rg.score` (issue 18, finding 3): hedges built from the
possible golds, constants, echoes of the question, JSON and empty answers, and answers that are
code for the scorers that run them. Each attack goes through the real entry points (`grpo-env
score`, the `ScoringService`, `rg_score`) and also shows that upstream's own scorer pays for it,
so a test cannot pass because the attack stopped working upstream."""

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("reasoning_gym")

from grpo_env import Status  # noqa: E402
from grpo_env.recipe import RecipeError, load_recipe  # noqa: E402
from grpo_env.cli.train import mix_entries  # noqa: E402
from grpo_env_reasoning_gym import conformance, datasets, guard  # noqa: E402
from grpo_env_reasoning_gym.reward import MAX_ANSWER_CHARS, rg_score, scorer_for  # noqa: E402

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
N = 20  # examples per attack through the CLI


def cli(*args, cwd=ROOT):
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "grpo_env.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def score_rows(tmp_path, name, rows, *options):
    """Rows through `grpo-env score rg.<name>`: (the process, the scored rows, seconds)."""
    src, dst = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    extra = [a for o in options for a in ("--option", o)]
    start = time.perf_counter()
    res = cli("score", f"rg.{name}", "--input", str(src), "--output", str(dst), *extra)
    took = time.perf_counter() - start
    out = [json.loads(line) for line in dst.read_text().splitlines()] if dst.exists() else []
    return res, out, took


def row(ex, completion):
    return {"id": ex.id, "prompt": ex.prompt[-1].content, "entry": ex.gold["entry"], "completion": completion}


def upstream(name, answer, ex):
    """What reasoning-gym's own scorer gives the answer (the attack's payoff without this plugin)."""
    return scorer_for(name, "{}").score_answer(answer, ex.gold["entry"])


HEDGES = {"syllogism": ["YesNo", "Yes No", "No, Yes"], "course_schedule": ["TrueFalse", "True or False"],
          "mahjong_puzzle": ["ChiPengPass", "Chi Peng Pass"]}


@pytest.mark.parametrize("name", sorted(HEDGES))
def test_hedges_over_the_possible_golds_earn_nothing_by_default(tmp_path, name):
    """`YesNo` on syllogism took 0.57 on average from upstream's substring rule (len(gold)/len(answer)
    when the gold appears in the answer): the family is scored by exact match by default."""
    examples = conformance.sample(name, N)
    hedges = HEDGES[name]
    for ex in examples:  # every gold is inside every hedge: upstream pays each of them
        gold = ex.gold["entry"]["answer"]
        assert all(upstream(name, h, ex) == pytest.approx(len(gold) / len(h)) for h in hedges), gold
    rows = [row(ex, f"<answer>{a}</answer>") for ex in examples for a in [ex.gold["entry"]["answer"], *hedges]]
    res, out, took = score_rows(tmp_path, name, rows)
    assert res.returncode == 0, res.stdout + res.stderr
    per = len(hedges) + 1
    assert [(r["status"], r["score"]) for r in out[::per]] == [("correct", 1.0)] * N
    hedged = [r for i, r in enumerate(out) if i % per]
    assert [(r["status"], r["score"]) for r in hedged] == [("incorrect", 0.0)] * (N * len(hedges))
    details = hedged[0]["rewards"]["rg.score"]["details"]
    assert details["upstream_score"] > 0 and "lenient_substring = true" in details["reason"]
    assert took < 60  # CLI start-up included


def test_upstreams_substring_rule_only_by_opt_in(tmp_path):
    """`lenient_substring = true` gives upstream's rule back, exactly; datasets outside the family
    refuse the option (it would silently do nothing)."""
    name, hedge = "syllogism", "YesNo"
    examples = conformance.sample(name, N)
    res, out, _ = score_rows(tmp_path, name, [row(ex, f"<answer>{hedge}</answer>") for ex in examples],
                             "lenient_substring=true")
    assert res.returncode == 0, res.stdout + res.stderr
    want = [len(ex.gold["entry"]["answer"]) / len(hedge) for ex in examples]
    assert [r["score"] for r in out] == pytest.approx(want) and {r["status"] for r in out} == {"partial"}
    refused = score_rows(tmp_path, "self_reference", [row(conformance.sample("self_reference", 1)[0], "x")],
                         "lenient_substring=true")[0]
    assert refused.returncode != 0 and "lenient_substring" in refused.stderr


def test_echoes_of_the_question_earn_nothing_on_word_sorting():
    """The input words echoed back took 0.2 or more on every example (upstream credits the right
    words in the wrong order, and words that happen to sit in place): word_sorting is one of the
    datasets whose partial credit an answer that commits to nothing earns, scored by exact match."""
    from grpo_env import plugins
    from grpo_env.scoring import ScoringService

    name = "word_sorting"
    examples = conformance.sample(name, 30)
    echoes = [[q, conformance._last_line(q), conformance._after_colon(q)]
              for q in (ex.gold["entry"]["question"] for ex in examples)]
    assert all(upstream(name, e[2], ex) >= 0.2 for ex, e in zip(examples, echoes))  # the attack pays upstream
    exs = [ex.model_copy(update={"task": f"rg.{name}"}) for ex, e in zip(examples, echoes) for _ in e]
    texts = [f"<answer>{t}</answer>" for e in echoes for t in e]
    plugins.reset()
    reg = plugins.get_registry()
    start = time.perf_counter()
    with ScoringService(reg.rewards, workers=1) as service:
        scored = service.score_examples([{"rg.score": 1.0}] * len(exs), exs, texts)
    assert time.perf_counter() - start < 60
    plugins.reset()
    assert [(s.status, s.total) for s in scored] == [(Status.INCORRECT, 0.0)] * len(texts)
    opted = {**examples[0].gold, "options": {"partial_credit": True}}  # upstream's credit back, by opt-in
    assert rg_score(f"<answer>{echoes[0][2]}</answer>", examples[0].model_copy(update={"gold": opted})).score >= 0.2


def test_game_of_life_empty_object_is_a_typed_outcome_not_a_crash(tmp_path):
    """game_of_life's scorer raises on `{}` for every example: each such row is `error` naming the
    dataset (left out of training, counted), the others are scored, and the dataset is flagged."""
    name = "game_of_life"
    examples = conformance.sample(name, 10)
    rows = [row(ex, c) for ex in examples
            for c in ("<answer>{}</answer>", f"<answer>{ex.gold['entry']['answer']}</answer>")]
    res, out, took = score_rows(tmp_path, name, rows)
    assert res.returncode == 1 and "10 row(s) scored 'error'" in res.stderr, res.stdout + res.stderr
    assert [r["status"] for r in out] == ["error", "correct"] * 10
    assert all(f"scorer of dataset {name!r} raised" in r["rewards"]["rg.score"]["details"]["error"] for r in out[::2])
    assert took < 60
    assert any(r.startswith("scorer fails on '{}' (50/50)") for r in conformance.verdict(name).reasons)


def test_constants_that_beat_uniform_guessing_flag_the_dataset():
    """The most frequent gold as a constant: flagged when its mean is over 1/k + 0.15 (k distinct
    golds seen in 50 examples); a balanced yes/no dataset is not."""
    start = time.perf_counter()
    for name, constant in (("syllogism", "Yes"), ("self_reference", "2"), ("rotten_oranges", "-1")):
        v = conformance.compute(name)
        mode = v.tally("mode")
        golds = [ex.gold["entry"]["answer"] for ex in conformance.sample(name)]
        assert v.golds[0] == constant and mode.mean == pytest.approx(golds.count(constant) / len(golds))
        assert mode.mean > 1 / v.k + conformance.MARGIN
        assert f"constant {constant!r} scores {mode.mean:.3g} > 1/{v.k} + {conformance.MARGIN}" in v.reasons
    assert conformance.compute("syllogism").tally("mode").mean >= 0.8  # 'Yes' is right 41 times in 50
    for name in ("course_schedule", "ransom_note", "isomorphic_strings"):  # balanced True/False
        v = conformance.compute(name)
        assert v.k == 2 and v.tally("mode").mean <= 0.5 + conformance.MARGIN
        assert not any(r.startswith("constant") for r in v.reasons), v.reasons
    assert time.perf_counter() - start < 30


def test_a_flagged_constant_dataset_is_refused_in_training(tmp_path):
    from grpo_env import plugins

    plugins.reset()
    registry = plugins.get_registry()
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "rg"\n[[tasks]]\nname = "rg.syllogism"\n')
    with pytest.raises(RecipeError, match=r"flagged: constant 'Yes' scores 0\.82 > 1/2 \+ 0\.15"):
        mix_entries(load_recipe(recipe), registry)
    recipe.write_text('name = "rg"\n[[tasks]]\nname = "rg.syllogism"\nallow_flagged = true\n')
    assert [e.task.name for e in mix_entries(load_recipe(recipe), registry)] == ["rg.syllogism"]
    plugins.reset()


@pytest.mark.parametrize("name, option", [("letter_counting", "lenient_substring"), ("spell_backward", "partial_credit")])
def test_opting_into_upstreams_partial_credit_is_refused_in_training_unless_allowed(tmp_path, name, option):
    """The opt-ins give upstream's rule back, hedges included: a task with one on is flagged (by its
    options), so training refuses it unless the recipe allows flagged tasks."""
    from grpo_env import plugins

    plugins.reset()
    registry = plugins.get_registry()
    recipe = tmp_path / "r.toml"
    base = f'name = "rg"\n[[tasks]]\nname = "rg.{name}"\n'
    recipe.write_text(base)
    assert [e.task.name for e in mix_entries(load_recipe(recipe), registry)] == [f"rg.{name}"]  # exact: fine
    recipe.write_text(base + f"options = {{ {option} = true }}\n")
    with pytest.raises(RecipeError, match=f"flagged: {option} = true restores upstream's partial credit"):
        mix_entries(load_recipe(recipe), registry)
    recipe.write_text(base + f"options = {{ {option} = true }}\nallow_flagged = true\n")
    assert [e.task.name for e in mix_entries(load_recipe(recipe), registry)] == [f"rg.{name}"]
    plugins.reset()


CODE = {
    # reads the gold out of the scorer's own frame: upstream pays 0.5 / 0.1 for it
    "n_queens": "[r.split() for r in entry['metadata']['valid_answers'][0].splitlines()]",
    "spiral_matrix": "entry['answer'].split()",
}


@pytest.mark.parametrize("name", sorted(guard.PYTHON_EVAL | guard.SYMPY_PARSE))
def test_code_in_an_answer_never_runs(name):
    """Nine upstream scorers run the answer as code (Python's eval in the scorer's frame, or sympy's
    parse_expr): a policy could read the gold or patch the scorers of its worker. Such answers are
    `rejected` before the scorer sees them; upstream runs them; the golds still score."""
    marker = "rg_test_code_ran"
    payload = f"__import__('sys').__dict__.setdefault('{marker}')"
    examples = conformance.sample(name, 10)
    ex = examples[0]
    for text in (payload, f"[{payload}]"):
        try:
            upstream(name, text, ex)
        except Exception:  # some raise after running it
            pass
    assert sys.__dict__.pop(marker, "absent") is None  # upstream ran it
    for text in (payload, f"[{payload}]", "getattr(x, chr(95))", "x . real", "().__class__", "exec(x)"):
        out = rg_score(f"<answer>{text}</answer>", ex)
        assert out.status is Status.REJECTED and out.score == 0.0, (text, out)
    assert marker not in sys.__dict__
    if name in CODE:
        assert upstream(name, CODE[name], ex) > 0  # a forged reward upstream
        assert rg_score(f"<answer>{CODE[name]}</answer>", ex).status is Status.REJECTED
    for ex in examples:
        assert rg_score(f"<answer>{ex.gold['entry']['answer']}</answer>", ex).status is Status.CORRECT


def test_the_code_guard_is_linear_and_lets_math_through():
    ok = ["x**2/2 + C", "-3*x**3*cos(x) + 9*x**2*sin(x) + C", "Integral(exp(x)*atan(x), x)", "8 - 39 + 93",
          "1.5*x + .25", "(4*4*6)/4"]
    for text in ok:
        assert guard.refusal("simple_integration", text) is None, text
    refused = ["x.real", "x . real", "1.real", "__import__", "open(x)", "S(x)'", "x[0]", "f'{x}'", "lambda: 1", "a_b"]
    for text in refused:
        assert guard.refusal("simple_integration", text) is not None, text
    assert guard.refusal("n_queens", "[['Q', '_'], ['_', 'Q']]") is None  # a literal: eval of it builds it
    assert guard.refusal("n_queens", "Q _\n_ Q") is None  # not Python: eval raises SyntaxError
    assert guard.refusal("n_queens", "[x for x in y]") is not None
    start = time.perf_counter()
    for name in ("simple_integration", "n_queens"):
        for hostile in ("x*" * (MAX_ANSWER_CHARS // 2), "(" * MAX_ANSWER_CHARS, "[" * 100 + "1" + "]" * 100,
                        "sin(" * 4000, "1," * (MAX_ANSWER_CHARS // 2)):
            guard.refusal(name, hostile)
    assert time.perf_counter() - start < 2


def test_committed_record_matches_upstreams_behaviour():
    """The lists the scorer acts on (the substring family, FARMED_PARTIAL, the code guard) are what
    the conformance probes saw upstream do, for every dataset; a sample is recomputed live."""
    from reasoning_gym.dataset import ProceduralDataset

    rec = conformance.recorded()
    names = datasets.dataset_names()
    assert sorted(rec) == names, "rerun: python -m grpo_env_reasoning_gym.conformance --write docs/reasoning_gym.md"
    base = {n for n in names if datasets.DATASETS[n][0].score_answer is ProceduralDataset.score_answer}
    family = {n for n in names if datasets.uses_substring_rule(n)}
    assert base <= family and len(family) >= 38
    assert {n for n, v in rec.items() if v.substring_rule} == family
    assert {n for n, v in rec.items() if v.farmed} - family == datasets.FARMED_PARTIAL
    assert {n for n, v in rec.items() if v.runs_code} == guard.PYTHON_EVAL | guard.SYMPY_PARSE
    assert not [n for n, v in rec.items() if v.runs_code_scored]
    start = time.perf_counter()
    for name in ("syllogism", "word_sorting", "chain_sum", "n_queens", "game_of_life_halting", "graph_color"):
        live = conformance.compute(name)
        assert {**vars(live), "seconds": 0} == {**vars(rec[name]), "seconds": 0}, name
    assert time.perf_counter() - start < 30
