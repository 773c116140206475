"""The answer check on hostile text: every input ends in a typed outcome, fast, never a reward.

Classes covered: code-injection strings, towers of powers and huge factorials, huge literals and
scientific exponents, megabyte completions, deep nesting, quadratic-scan bait, NUL bytes,
zero-width and bidi characters (removed, then judged), digits of other scripts, look-alike letters.
"""

from __future__ import annotations

import builtins
import importlib
import time

import pytest
import sympy
import sympy.parsing.sympy_parser
from grpo_env_math.check import check_answer
from grpo_env_math.reward import answer_reward

from grpo_env.types import Example, Status

TYPED = {Status.REJECTED, Status.UNPARSABLE, Status.INCORRECT}

HOSTILE = {
    # code injection: nothing may run, the grammar has no names beyond single letters
    "eval_inject": ("\\boxed{__import__('os').system('touch /tmp/grpo_env_math_pwned')}", Status.UNPARSABLE),
    "lambda": ("\\boxed{(lambda: 18)()}", Status.UNPARSABLE),
    "sympify_inject": ("\\boxed{Symbol('x').__class__}", Status.UNPARSABLE),
    "dunder": ("\\boxed{x.__class__.__bases__}", Status.UNPARSABLE),
    "latex_input": ("\\boxed{\\input{/etc/passwd}}", Status.UNPARSABLE),
    "latex_def": ("\\boxed{\\def\\x{18}\\x}", Status.UNPARSABLE),
    # size: towers, factorials, literals
    "tower": ("\\boxed{2^{2^{2^{2^{2^{2}}}}}}", Status.REJECTED),
    "tower_plain": ("\\boxed{9^9^9}", Status.REJECTED),
    "tower_e": ("\\boxed{e^{e^{e^{e^{e}}}}}", Status.REJECTED),
    "tower_pi": ("\\boxed{\\pi^{\\pi^{\\pi^{\\pi}}}}", Status.REJECTED),
    "irrational_base": ("\\boxed{\\sqrt{2}^{1000000}}", Status.REJECTED),
    "fraction_exponent": ("\\boxed{2^{1000000/3}}", Status.REJECTED),
    "symbolic_exponent": ("\\boxed{x^{10^{12}}}", Status.REJECTED),
    "factorial": ("\\boxed{100000!}", Status.REJECTED),
    "factorial_chain": ("\\boxed{3!!!!}", Status.REJECTED),
    "binomial": ("\\boxed{\\binom{100000}{50000}}", Status.REJECTED),
    "sin_huge": ("\\boxed{\\sin(10^{300})}", Status.REJECTED),
    "scientific": ("\\boxed{1e999999}", Status.REJECTED),
    "times_ten": ("\\boxed{1.5 \\times 10^{99999999}}", Status.REJECTED),
    "long_literal": ("\\boxed{" + "7" * 400 + "}", Status.REJECTED),
    "many_digits": ("\\boxed{" + "+".join(["123456789"] * 80) + "}", Status.REJECTED),
    "big_matrix": ("\\boxed{\\begin{pmatrix}" + "\\\\".join(["&".join(["1"] * 20)] * 20) + "\\end{pmatrix}}",
                   Status.REJECTED),
    "expansion_bomb": ("\\boxed{(a+b+c+d+f+g+h+k)^{20}}", Status.INCORRECT),
    # length and depth
    "long_answer": ("\\boxed{" + "x+" * 2000 + "1}", Status.REJECTED),
    "megabyte": ("The answer is " + "1" * 1_000_000, Status.REJECTED),
    "megabyte_boxes": ("\\boxed{1}" * 150_000, Status.REJECTED),
    "deep_parens": ("\\boxed{" + "(" * 300 + "1" + ")" * 300 + "}", Status.REJECTED),
    "deep_fracs": ("\\boxed{" + "\\frac{1}{" * 60 + "2" + "}" * 60 + "}", Status.REJECTED),
    "deep_sqrt": ("\\boxed{" + "\\sqrt{" * 35 + "2" + "}" * 35 + "}", Status.REJECTED),
    "deep_minus": ("\\boxed{" + "-" * 900 + "18}", Status.REJECTED),
    # bait for quadratic scans (each must stay linear)
    "unclosed_boxes": ("\\boxed{" * 25_000, Status.UNPARSABLE),
    "unclosed_tags": ("<answer>" * 20_000, Status.UNPARSABLE),
    "unclosed_brace": ("\\boxed{" + "{" * 10_000, Status.UNPARSABLE),
    "spaces": ("answer" + " " * 190_000, Status.UNPARSABLE),
    # characters
    "nul_in_answer": ("\\boxed{18\x00}", Status.REJECTED),
    "nul_elsewhere": ("fine\x00 \\boxed{18}", Status.REJECTED),
    # invisible format characters are removed and full-width digits folded (issue #10, finding 16;
    # the honest cases are in test_math_attacks.py): a bidi override is judged in logical order
    "bidi_override": ("\\boxed{\u202e81}", Status.INCORRECT),
    "zero_width_wrong": ("\\boxed{1\u200b7}", Status.INCORRECT),
    "arabic_digits": ("\\boxed{\u0661\u0668}", Status.REJECTED),
    "devanagari_digits": ("\\boxed{\u0967\u096e}", Status.REJECTED),
    "fullwidth_wrong": ("\\boxed{\uff11\uff17}", Status.INCORRECT),
    "superscript_digit": ("\\boxed{18\u00b2}", Status.REJECTED),
    "arabic_fallback": ("the total is \u0661\u0668", Status.UNPARSABLE),
    "cyrillic_x": ("\\boxed{\u0445=18}", Status.UNPARSABLE),
    "greek_omicron": ("\\boxed{1\u03bf}", Status.UNPARSABLE),
    "lone_surrogate": ("\\boxed{1\ud8008}", Status.REJECTED),
    # degenerate values
    "division_by_zero": ("\\boxed{18/0}", Status.INCORRECT),
    "zero_over_zero": ("\\boxed{0/0}", Status.INCORRECT),
    "empty_box": ("\\boxed{}", Status.UNPARSABLE),
    "only_operators": ("\\boxed{+-*/^}", Status.UNPARSABLE),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_answer_gets_its_typed_outcome_fast(name):
    completion, expected = HOSTILE[name]
    start = time.monotonic()
    out = check_answer(completion, "18")
    elapsed = time.monotonic() - start
    assert out.status is expected, out.details
    assert out.score == 0.0
    assert elapsed < 5.0  # generous bound against a hang; speed itself is shown by bench/


def test_injection_runs_nothing():
    check_answer(HOSTILE["eval_inject"][0], "18")
    import os

    assert not os.path.exists("/tmp/grpo_env_math_pwned")


@pytest.fixture
def tripwires(monkeypatch):
    """Make every text-evaluating entry point fail loudly when given a string."""

    def guard(real, label):
        def wrapper(x, *a, **k):
            if isinstance(x, str):
                raise AssertionError(f"{label} was called on text {x[:40]!r}")  # noqa: TRY004 - a tripwire
            return real(x, *a, **k)

        return wrapper

    monkeypatch.setattr(sympy, "sympify", guard(sympy.sympify, "sympy.sympify"))
    core = importlib.import_module("sympy.core.sympify")
    monkeypatch.setattr(core, "sympify", guard(core.sympify, "sympy.core.sympify.sympify"))
    monkeypatch.setattr(sympy.parsing.sympy_parser, "parse_expr", guard(sympy.parsing.sympy_parser.parse_expr, "parse_expr"))
    monkeypatch.setattr(builtins, "eval", guard(builtins.eval, "eval"))
    monkeypatch.setattr(builtins, "exec", guard(builtins.exec, "exec"))


def test_no_text_reaches_eval_or_sympify(tripwires):
    pairs = [
        ("x^2+2x+1", "(x+1)^2"), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt2}"), ("[1,2)", "1 \\le x < 2"),
        ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "(1,2)"), ("\\{1,2\\}", "\\{2,1\\}"), ("50\\%", "0.5"),
        ("y=2x+1", "2x-y+1=0"), ("\\sin^2 x+\\cos^2 x", "1"), ("1\\pm\\sqrt2", "1-\\sqrt2, 1+\\sqrt2"),
    ]
    for gold, answer in pairs:
        assert check_answer(f"\\boxed{{{answer}}}", gold).status is Status.CORRECT, (gold, answer)
    for completion, expected in HOSTILE.values():
        assert check_answer(completion, "18").status is expected


def test_hedges_never_win():
    for completion in ["\\boxed{17 \\text{ or } 18}", "\\boxed{18, 17}", "\\boxed{\\{17, 18\\}}",
                       "The answer is 17 or 18.", "\\boxed{18 \\pm 1}", "<answer>18 or 19</answer>",
                       "\\boxed{17} or \\boxed{18}", "$\\boxed{17}$ \\text{or} $\\boxed{18}$", "\\boxed{17}, \\boxed{18}",
                       "\\boxed{18}\\boxed{17}", "#### 17 or 18"]:
        assert check_answer(completion, "18").status is Status.INCORRECT, completion
    # one answer stated twice is one answer; boxes apart from each other are a reasoning trail
    for completion in ["\\boxed{18} \\boxed{18.0}", "\\boxed{18 \\text{ or } 18}", "maybe \\boxed{17}? No: \\boxed{18}"]:
        assert check_answer(completion, "18").status is Status.CORRECT, completion
    assert check_answer("\\boxed{2} and \\boxed{3}", "2, 3").status is Status.CORRECT


def test_reward_through_the_scoring_service_kills_nothing_and_types_everything():
    from grpo_env_math import register_rewards

    from grpo_env.scoring import ScoringService

    rewards = {}
    register_rewards(lambda r: rewards.__setitem__(r.name, r))
    reward = rewards["math.answer"]
    ex = Example(id="h", prompt="What is 9 + 9?", gold={"answer": "18"})
    names = ["tower", "megabyte", "deep_fracs", "unclosed_boxes", "bidi_override", "eval_inject", "expansion_bomb"]
    items = [("math.answer", ex, HOSTILE[n][0]) for n in names] + [("math.answer", ex, "so \\boxed{18}")]
    start = time.monotonic()
    with ScoringService(rewards, workers=2) as service:
        outcomes = service.score(items)
    assert time.monotonic() - start < 60
    assert [o.status for o in outcomes] == [HOSTILE[n][1] for n in names] + [Status.CORRECT]
    assert reward.timeout <= 10 and service.replaced == 0  # answered in time, no worker was killed


def test_reward_reads_gold_and_options_from_the_example():
    ex = Example(id="g", prompt="q", gold={"answer": "18", "last_number_fallback": False})
    assert answer_reward("I think it is 18", ex).status is Status.UNPARSABLE
    ex = Example(id="g", prompt="q", gold={"answer": "18", "last_number_fallback": True})
    assert answer_reward("I think it is 18", ex).status is Status.CORRECT
    assert answer_reward("x", Example(id="n", prompt="q", gold={})).status is Status.NOT_APPLICABLE
