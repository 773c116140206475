"""Regression tests for the security review of the math check (issue #10, findings 13-16).

Each attack goes through the real entry points: the scoring service (a forked worker under the
reward's hard deadline) and the ``grpo-env score math`` command line, and, for the time and memory
findings, the reward function called in-process, with no deadline to hide behind. Each test checks
the status and score, a time bound, and that nothing is left running afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import pytest
import unprivileged
from grpo_env_math import register_rewards
from grpo_env_math.extract import extract_answer
from grpo_env_math.guards import MAX_COMPLETION_CHARS
from grpo_env_math.reward import answer_reward

from grpo_env.scoring import ScoringService
from grpo_env.testing import collect
from grpo_env.types import Example, Status

REWARDS = collect(register_rewards)
GRPO_ENV = str(Path(sys.executable).with_name("grpo-env"))
C, I, U, R = Status.CORRECT, Status.INCORRECT, Status.UNPARSABLE, Status.REJECTED


# ---- harness -----------------------------------------------------------------------------------


class Overran(BaseException):
    """Raised by the alarm; a BaseException so no ``except Exception`` in the checker swallows it."""


@contextmanager
def at_most(seconds: float):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""

    def alarm(signum, frame):
        raise Overran(f"ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _children() -> set[int]:
    """Live child processes of this test process (of every thread: workers are forked from one)."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids |= {int(p) for p in f.read().split()}
        except FileNotFoundError:
            pass
    return pids


def example(gold: str) -> Example:
    return Example(id="attack", prompt="q", gold={"answer": gold, "last_number_fallback": True})


def in_process(gold: str, completion: str, seconds: float = 2.0):
    """The reward function called directly (no worker, no deadline): outcome and seconds taken."""
    start = time.monotonic()
    with at_most(seconds):
        out = answer_reward(completion, example(gold))
    return out, time.monotonic() - start


def through_service(pairs: list[tuple[str, str]], seconds: float = 5.0):
    """Outcomes of (gold, completion) pairs from a fresh scoring service with one worker.

    Asserts the batch took under ``seconds`` per item, no worker had to be killed at the deadline
    (the check answered on its own), and no process survives the service.
    """
    before = _children()
    start = time.monotonic()
    with ScoringService(REWARDS, workers=1) as service:
        outs = service.score([("math.answer", example(g), c) for g, c in pairs])
        replaced = service.replaced
    elapsed = time.monotonic() - start
    assert replaced == 0, [o.model_dump() for o in outs]
    assert elapsed < seconds * len(pairs) + 2.0
    assert _children() <= before
    return outs


def assert_outcome(out, status: Status) -> None:
    assert out.status is status, out.details
    assert out.score == (1.0 if status is C else 0.0)


# ---- 13: bounded evaluation in every caller -----------------------------------------------------

TOWERS = [
    "\\boxed{\\sin(10^{10^{10^{x}}})}",  # the reported one: 24 characters
    "\\boxed{e^{e^{e^{x}}}}",
    "\\boxed{\\cos(2^{2^{2^{2^{y}}}})}",
    "\\boxed{x^{x^{x^{x}}}}",
    "\\boxed{\\sqrt{10^{10^{10^{x}}}}}",
]
# towers one level lower pass the nesting cap; their size is checked again at each sample point
AFTER_SUBSTITUTION = ["\\boxed{\\sin(10^{10^{10x}})}", "\\boxed{10^{10^{10x}}}", "\\boxed{\\tan(9^{9^{x+9}})}"]
GOLDS = ["18", "x", "\\sin(x)"]


@pytest.mark.parametrize("gold", GOLDS)
@pytest.mark.parametrize("completion", TOWERS)
def test_13_power_tower_on_a_symbol_is_refused_in_process(gold, completion):
    out, elapsed = in_process(gold, completion)
    assert_outcome(out, R)
    assert elapsed < 2.0


@pytest.mark.parametrize("gold", GOLDS)
@pytest.mark.parametrize("completion", AFTER_SUBSTITUTION)
def test_13_sizes_are_checked_again_after_substitution(gold, completion):
    out, elapsed = in_process(gold, completion)
    assert_outcome(out, I)
    assert elapsed < 2.0


def test_13_towers_through_the_scoring_service():
    pairs = [(g, c) for c in TOWERS + AFTER_SUBSTITUTION for g in GOLDS]
    outs = through_service(pairs)
    assert [o.status for o in outs] == [R] * (len(TOWERS) * 3) + [I] * (len(AFTER_SUBSTITUTION) * 3)
    assert all(o.score == 0.0 for o in outs)


# sympy.simplify ran past 20 s on (sin x + cos x)^24 - 1 (5 operations); proofs are bounded rewritings
# now, and an identity beyond their bounds is not equal (a false negative by design, never a hang)
PROOFS = [
    ("1", "(\\sin x + \\cos x)^{24}", I),
    ("1", "(\\sin^2 x + \\cos^2 x)^{24}", I),  # true, but beyond the bounds of the rewritings
    ("\\sin^{24}x", "(1-\\cos^2 x)^{12}", I),  # true, likewise
    ("\\cos^{20} x", "\\sin(\\sin(\\sin(\\sin x)))^{20}", I),
    ("(\\sin x + \\cos x)^{24}", "(\\cos x + \\sin x)^{23}(\\sin x+\\cos x) + \\tan x - \\frac{\\sin x}{\\cos x}", C),
    ("(x+y+z+w)^{24}", "(w+z+y+x)^{12}(x+y+z+w)^{12} + \\sin^2 x + \\cos^2 x - 1", C),
]


@pytest.mark.parametrize("gold,answer,status", PROOFS)
def test_13_symbolic_proofs_are_bounded_in_process(gold, answer, status):
    out, elapsed = in_process(gold, f"\\boxed{{{answer}}}")
    assert_outcome(out, status)
    assert elapsed < 2.0


# ---- 14: linear extraction ----------------------------------------------------------------------


def _fill(unit: str, tail: str = "") -> str:
    """``unit`` repeated up to the completion limit (the guard refuses anything longer)."""
    return unit * ((MAX_COMPLETION_CHARS - len(tail)) // len(unit)) + tail


PATHOLOGICAL = {
    "bare_fbox": (_fill("\\fbox"), U),
    "bare_boxed": (_fill("\\boxed"), U),
    "bare_boxed_space": (_fill("\\boxed "), U),
    "bare_boxed_digit": (_fill("\\boxed 1 "), R),
    "bare_fbox_run": (_fill("\\fbox1"), I),
    "unclosed_boxes": (_fill("\\boxed{"), U),
    "nested_boxes": (_fill("\\boxed{", "}" * (MAX_COMPLETION_CHARS // 8)), U),
    "nested_fbox_space": (_fill("\\fbox{ ", "}" * (MAX_COMPLETION_CHARS // 8)), U),
    "adjacent_boxes": (_fill("\\boxed{7}"), R),
    "listed_boxes": (_fill("\\boxed{7}, "), R),
    "hedged_boxes": (_fill("\\boxed{7} or "), R),
    "answer_tags": (_fill("<answer>"), U),
    "closed_tags": (_fill("<answer></answer>"), U),
    "hashes": (_fill("####"), R),
    "answer_is": (_fill("the answer is "), R),
    "braces": (_fill("{"), U),
    "digits": (_fill("1"), R),
    "spaces": (_fill(" ", "answer"), U),
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_14_extraction_is_linear_in_time_and_memory_in_process(name):
    completion, status = PATHOLOGICAL[name]
    assert len(completion) <= MAX_COMPLETION_CHARS
    out, elapsed = in_process("18", completion)
    assert_outcome(out, status)
    assert elapsed < 2.0
    tracemalloc.start()  # a second call, traced (tracing slows allocation down, so it is not timed)
    try:
        in_process("18", completion, seconds=10.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB"  # a few copies of the text, not one per box


@pytest.mark.parametrize("unit", ["\\fbox", "\\boxed", "x\\boxed", "\\boxed{", "\\boxed{7}", "\\boxed 1 "])
def test_14_extraction_stays_linear_past_the_completion_limit(unit):
    text = unit * (1_000_000 // len(unit))  # the extractor itself, with no length guard in front
    with at_most(3.0):
        extract_answer(text)  # an answer or a refusal, either way in linear time


def test_14_pathological_shapes_through_the_scoring_service():
    names = sorted(PATHOLOGICAL)
    outs = through_service([("18", PATHOLOGICAL[n][0]) for n in names])
    assert [o.status for o in outs] == [PATHOLOGICAL[n][1] for n in names]
    assert all(o.score == 0.0 for o in outs)


# ---- 15: false positives --------------------------------------------------------------------------

FALSE_POSITIVES = {
    # a decimal gold does not widen to every fraction that rounds to it
    "decimal_widened_half": ("0.5", "\\frac{5}{11}", I),
    "decimal_widened_two": ("2.0", "\\frac{39}{20}", I),
    "decimal_answer_for_half": ("0.5", "0.4545", I),
    "decimal_irrational_for_exact_gold": ("2.0", "\\sqrt{3.9}", I),
    # % is a value (/100), never a x100 hedge
    "percent_zero_term": ("300", "3 + 0\\%", I),
    "percent_of_decimal": ("0.3", "0.3\\%", I),
    "percent_of_count": ("25", "25\\%", I),
    # an integer or large gold is matched exactly, never within a relative tolerance
    "integer_plus_pi": ("123456789012", "123456789000+\\pi", I),
    "large_decimal_plus_pi": ("123456789012.5", "123456789000+\\pi", I),
    "large_decimal_tiny_pi": ("1234567.5", "1234567.5 + \\frac{\\pi}{10^{6}}", I),
    "large_fraction_plus_pi": ("\\frac{246913578025}{2}", "123456789000+\\pi", I),
    # a mixed number has one reading: 1 1/2 is 3/2
    "mixed_gold_eleven_halves": ("1 1/2", "\\frac{11}{2}", I),
    "mixed_answer_eleven_halves": ("\\frac{11}{2}", "1 1/2", I),
    "mixed_answer_thin_space": ("15", "1\\,5", U),
    # symbolic equality is proved exactly, not sampled at public points
    "vanishes_at_public_points": ("x", "x + (x-0.7314)(x+1.3862)(x-2.2117)(x+0.4421)(x-1.6093)", I),
    "vanishes_at_public_points_2d": ("x+y", "x+y+(x-0.7314)(x+1.3862)(x-2.2117)(x+0.4421)(x-1.6093)", I),
    "tiny_added_term": ("x", "x + 10^{-15}x", I),
    "tiny_added_constant": ("x^2", "x^2 + 10^{-40}", I),
    "tiny_added_to_a_number": ("\\sqrt{2}", "\\sqrt{2} + 10^{-20}", I),
    # words change a value: only units are dropped
    "words_thousand": ("18", "18 \\text{ thousand}", U),
    "words_is_wrong": ("7", "7 \\text{ is wrong}", U),
    "words_plain_million": ("18", "18 million", U),
    "words_inside_text": ("18", "\\text{18 thousand}", U),
    "words_mathrm": ("18", "18\\mathrm{ thousand}", U),
    # a pair is a point, not the interval between its coordinates
    "pair_as_chain": ("(1, 2)", "1 < x < 2", I),
    "pair_as_membership": ("(1, 2)", "x \\in (1, 2)", I),
    "pair_as_half_open": ("(1, 2)", "1 < x \\le 2", I),
}
# the honest answers next to them still win
STILL_CORRECT = {
    "rounded_third": ("0.33", "\\frac{1}{3}"),
    "rounded_pi": ("3.14", "\\pi"),
    "exact_half": ("0.5", "\\frac{1}{2}"),
    "exact_two": ("2.0", "2"),
    "percent_value": ("0.3", "30\\%"),
    "percent_gold_plain_answer": ("25\\%", "25"),
    "percent_word": ("25\\%", "25 \\text{ percent}"),
    "integer_exact": ("123456789012", "123456789012"),
    "mixed_gold_three_halves": ("1 1/2", "\\frac{3}{2}"),
    "mixed_answer_three_halves": ("\\frac{3}{2}", "1 1/2"),
    "thousands_thin_space": ("1234", "1\\,234"),
    "symbolic_square": ("(x+1)^2", "x^2+2x+1"),
    "symbolic_trig": ("\\sin^2 x + \\cos^2 x", "1"),
    "symbolic_fraction": ("\\frac{1}{x-1}-\\frac{1}{x}", "\\frac{1}{x^2-x}"),
    "symbolic_log": ("\\ln 8", "3\\ln 2"),
    "units_dollars": ("18", "18 \\text{ dollars}"),
    "units_cm2": ("14", "14 \\text{ cm}^2"),
    "units_apples": ("18", "18 \\text{ apples}"),
    "pair_as_pair": ("(1, 2)", "\\left(1, 2\\right)"),
    "interval_as_chain": ("(3, \\infty)", "x > 3"),
    "chain_gold_interval_answer": ("1 < x < 2", "(1, 2)"),
}


@pytest.mark.parametrize("name", sorted(FALSE_POSITIVES))
def test_15_false_positive_is_closed(name):
    gold, answer, status = FALSE_POSITIVES[name]
    out, _ = in_process(gold, f"So \\boxed{{{answer}}}.")
    assert_outcome(out, status)


@pytest.mark.parametrize("name", sorted(STILL_CORRECT))
def test_15_honest_neighbours_still_score(name):
    gold, answer = STILL_CORRECT[name]
    out, _ = in_process(gold, f"So \\boxed{{{answer}}}.")
    assert_outcome(out, C)


def test_15_symbolic_sample_points_are_not_public():
    """Whatever points a checker samples, a multiple of (x - p) for every fixed p is not x."""
    term = "".join(f"(x-{p})" for p in ("0.7314", "1.3862", "2.2117", "0.4421", "1.6093", "0.5", "1", "2"))
    out, _ = in_process("x", f"\\boxed{{x + 10^{{-30}}{term}}}")
    assert_outcome(out, I)


def test_15_false_positives_through_the_scoring_service():
    names = sorted(FALSE_POSITIVES)
    outs = through_service([(FALSE_POSITIVES[n][0], f"\\boxed{{{FALSE_POSITIVES[n][1]}}}") for n in names])
    assert [o.status for o in outs] == [FALSE_POSITIVES[n][2] for n in names]
    assert all(o.score == 0.0 for o in outs)


# ---- 16: honest answers are not refused -------------------------------------------------------------

HONEST_UNICODE = {
    "fullwidth_digit": ("5", "\\boxed{\uff15}", C),
    "fullwidth_number": ("18", "\\boxed{\uff11\uff18}", C),
    "fullwidth_fraction": ("\\frac{3}{4}", "\\boxed{\uff13/\uff14}", C),
    "zero_width_space": ("18", "\\boxed{1\u200b8}", C),
    "zero_width_joiner": ("18", "\\boxed{18\u200d}", C),
    "byte_order_mark": ("18", "\\boxed{\ufeff18}", C),
    "soft_hyphen": ("x+1", "\\boxed{x\u00ad+1}", C),
    "bidi_isolate": ("18", "\\boxed{\u206618\u2069}", C),
    # read in logical order: what a display would show reversed is judged as written
    "bidi_override": ("18", "\\boxed{\u202e81}", I),
    # look-alikes from other scripts stay refused
    "cyrillic_x": ("x", "\\boxed{\u0445}", U),
    "cyrillic_x_equation": ("18", "\\boxed{\u0445=18}", U),
    "greek_omicron": ("10", "\\boxed{1\u03bf}", U),
    "arabic_digits": ("18", "\\boxed{\u0661\u0668}", R),
    "superscript": ("18", "\\boxed{18\u00b2}", R),
}


@pytest.mark.parametrize("name", sorted(HONEST_UNICODE))
def test_16_unicode_is_normalised_not_refused(name):
    gold, completion, status = HONEST_UNICODE[name]
    out, _ = in_process(gold, completion)
    assert_outcome(out, status)


def test_16_unicode_through_the_scoring_service():
    names = sorted(HONEST_UNICODE)
    outs = through_service([HONEST_UNICODE[n][:2] for n in names])
    assert [o.status for o in outs] == [HONEST_UNICODE[n][2] for n in names]


# ---- all of it through the command line ------------------------------------------------------------


def _alive_with(needle: str) -> list[int]:
    """Processes whose command line mentions ``needle`` (the CLI's workers are forks of it)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle.encode() in f.read():
                    with open(f"/proc/{pid}/stat") as s:
                        if s.read().rsplit(")", 1)[1].split()[0] != "Z":
                            found.append(int(pid))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return found


def test_every_finding_through_the_score_cli(tmp_path):
    cases = [(g, c, s) for c in TOWERS[:2] for g, s in (("18", R), ("x", R))]
    cases += [(g, f"\\boxed{{{a}}}", s) for g, a, s in FALSE_POSITIVES.values()]
    cases += [(g, f"\\boxed{{{a}}}", C) for g, a in STILL_CORRECT.values()]
    cases += list(HONEST_UNICODE.values())
    cases += [("18", PATHOLOGICAL[n][0], PATHOLOGICAL[n][1]) for n in ("bare_fbox", "nested_boxes", "adjacent_boxes")]
    src, dst = tmp_path / "attack-rows.jsonl", tmp_path / "scored.jsonl"
    src.write_text("".join(json.dumps({"answer": g, "completion": c}) + "\n" for g, c, _ in cases))
    start = time.monotonic()
    proc = subprocess.run([GRPO_ENV, "score", "math", "--input", str(src), "--output", str(dst), "--workers", "1"],
                          capture_output=True, text=True, timeout=300, check=False)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    got = [(r["answer"], r["status"]) for r in rows]
    assert got == [(g, s.value) for g, _, s in cases]
    assert all(r["score"] == (1.0 if r["status"] == "correct" else 0.0) for r in rows)
    assert all(r["rewards"]["math.answer"]["status"] != "timeout" for r in rows)
    assert elapsed < 60
    assert _alive_with(str(src)) == []


# ---- red-team round 2: a list whose items disagree (A3), a relation or interval that is not a value (R5) ----

# a list against one value states that value only when every item is exactly the same value: no rule
# that widens a gold (a percent gold accepting the bare number, a long decimal for an exact gold)
# applies between the items themselves
LIST_HEDGES = {
    "percent_and_bare": ("1/2", "50\\%, 50", I),  # reported: scored correct
    "percent_bare_and_decimal": ("1/2", "50\\%, 50, 0.5", I),  # reported: scored correct
    "bare_alone": ("1/2", "50", I),
    "percent_gold_percent_and_bare": ("50\\%", "50\\%, 50", I),
    "percent_gold_bare_and_percent": ("50\\%", "50, 50\\%", I),
    "exact_and_long_decimal": ("\\frac{1}{3}", "\\frac{1}{3}, 0.333333333333333333", I),
    "long_decimal_and_exact": ("\\frac{1}{3}", "0.333333333333333333, \\frac{1}{3}", I),
    "relation_and_value": ("3", "x = 3, 3", I),
}
# the same value written twice is still one answer
LIST_REPEATS = {
    "same_number": ("18", "18, 18"),
    "decimal_and_fraction": ("1/2", "0.5, \\frac{1}{2}"),
    "percent_and_decimal": ("1/2", "50\\%, 0.5"),
    "percent_gold_repeated": ("50\\%", "50\\%, 50\\%"),
    "same_expression_two_forms": ("(x+1)^2", "x^2+2x+1, (x+1)^2"),
}
# ``v = expr`` names a value only when v is not in expr; an infinite end is open, so a closed bracket
# there is malformed and does not parse
NOT_VALUES = {
    "variable_on_both_sides": ("x+1", "x = x + 1", I),  # reported: scored correct
    "variable_cancels": ("x", "x = 2x - x", I),
    "value_on_the_left": ("x+1", "x + 1 = x", I),
    "closed_at_plus_infinity": ("(3, \\infty)", "(3, \\infty]", U),  # reported: scored correct
    "closed_at_minus_infinity": ("(-\\infty, 3)", "[-\\infty, 3)", U),
    "closed_both_infinite": ("(-\\infty, \\infty)", "[-\\infty, \\infty]", U),
    "closed_infinity_for_closed_gold": ("[3, \\infty)", "[3, \\infty]", U),
    "closed_infinity_for_relation_gold": ("x > 3", "(3, \\infty]", U),
}
STILL_VALUES = {
    "relation_value": ("3", "x = 3"),
    "relation_value_reversed": ("3", "3 = x"),
    "relation_gold_value_answer": ("x = 3", "3"),
    "open_ray": ("(3, \\infty)", "(3, \\infty)"),
    "closed_ray": ("[3, \\infty)", "[3, \\infty)"),
    "ray_as_relation": ("[3, \\infty)", "x \\ge 3"),
    "whole_line": ("(-\\infty, \\infty)", "(-\\infty, \\infty)"),
}
ROUND_2 = [(g, a, s) for g, a, s in list(LIST_HEDGES.values()) + list(NOT_VALUES.values())]
ROUND_2 += [(g, a, C) for g, a in list(LIST_REPEATS.values()) + list(STILL_VALUES.values())]


@pytest.mark.parametrize("name", sorted(LIST_HEDGES))
def test_a3_list_items_must_be_the_same_value(name):
    gold, answer, status = LIST_HEDGES[name]
    out, elapsed = in_process(gold, f"So the answer is \\boxed{{{answer}}}")
    assert_outcome(out, status)
    assert elapsed < 2.0


@pytest.mark.parametrize("name", sorted(LIST_REPEATS))
def test_a3_a_repeated_value_still_scores(name):
    gold, answer = LIST_REPEATS[name]
    out, elapsed = in_process(gold, f"So the answer is \\boxed{{{answer}}}")
    assert_outcome(out, C)
    assert elapsed < 2.0


@pytest.mark.parametrize("name", sorted(NOT_VALUES))
def test_r5_self_reference_and_closed_infinity_are_not_values(name):
    gold, answer, status = NOT_VALUES[name]
    out, elapsed = in_process(gold, f"\\boxed{{{answer}}}")
    assert_outcome(out, status)
    assert elapsed < 2.0


@pytest.mark.parametrize("name", sorted(STILL_VALUES))
def test_r5_honest_relations_and_rays_still_score(name):
    gold, answer = STILL_VALUES[name]
    out, elapsed = in_process(gold, f"\\boxed{{{answer}}}")
    assert_outcome(out, C)
    assert elapsed < 2.0


def test_a3_r5_through_the_scoring_service():
    outs = through_service([(g, f"\\boxed{{{a}}}") for g, a, _ in ROUND_2])
    assert [o.status for o in outs] == [s for _, _, s in ROUND_2]
    assert [o.score for o in outs] == [1.0 if s is C else 0.0 for _, _, s in ROUND_2]


def test_a3_r5_through_the_score_cli(tmp_path):
    src, dst = tmp_path / "round2-rows.jsonl", tmp_path / "scored.jsonl"
    src.write_text("".join(json.dumps({"question": "q", "answer": g, "completion": f"So \\boxed{{{a}}}"}) + "\n"
                           for g, a, _ in ROUND_2))
    start = time.monotonic()
    proc = subprocess.run([GRPO_ENV, "score", "math", "--input", str(src), "--output", str(dst), "--workers", "1"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - start < 60
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [(r["answer"], r["status"], r["score"]) for r in rows] == [
        (g, s.value, 1.0 if s is C else 0.0) for g, _, s in ROUND_2]
    assert _alive_with(str(src)) == []


# ---- hostile text through the score CLI, as root and as an unprivileged user ----

NOISE = "\ud800<|im_end|>\x1b[2J"  # a lone surrogate, a control token, a terminal escape
HOSTILE_ROWS = [  # (gold, completion, status): 180 KB to 300 KB each
    ("1/2", NOISE * 12_000 + "\\boxed{1/2}", C),  # the control: the right answer after 180 KB of noise
    ("1/2", NOISE * 12_000 + "\\boxed{2}", I),  # wrong, after the same noise
    ("1/2", " ".join(f"\\boxed{{{i}/{i + 1}}}" for i in range(1, 10_000)), R),  # a 190 KB hedge holding 1/2: refused
    ("1/2", "\\boxed{1/2} " + NOISE * 12_000 + " \\boxed{3}", I),  # the right answer first, a wrong one last
    ("1/2", NOISE * 20_000 + "\\boxed{1/2}", R),  # over the completion limit: refused, however right
]


def _score_cli_as(user: str, work: Path) -> tuple[list[dict], float]:
    """``grpo-env score math`` on HOSTILE_ROWS in ``work``, as root or as an unprivileged uid; returns
    the scored rows and the seconds it took."""
    src, dst = work / "rows.jsonl", work / "scored.jsonl"
    src.write_text("".join(json.dumps({"answer": g, "completion": c}) + "\n" for g, c, _ in HOSTILE_ROWS))
    argv = ["score", "math", "--input", str(src), "--output", str(dst), "--workers", "1"]
    start = time.monotonic()
    proc = unprivileged.grpo_env_as(user, argv, work, timeout=300)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [json.loads(line) for line in dst.read_text().splitlines()], took


@unprivileged.AS_ROOT_AND_UNPRIVILEGED
def test_hostile_text_through_the_score_cli_earns_nothing_fast_and_leaves_nothing(user, tmp_path):
    """A wrong answer behind 180 KB of lone surrogates, control tokens and escapes, a 190 KB hedge,
    a right answer followed by a wrong one, and 300 KB (over MAX_COMPLETION_CHARS: rejected): 0 each;
    the control, 1. Under a minute, no process left with the rows' path, and nothing written but the
    scored rows."""
    work = tmp_path / "work"
    work.mkdir()
    rows, took = _score_cli_as(user, work)
    assert [(r["status"], r["score"]) for r in rows] == [(s.value, 1.0 if s is C else 0.0) for _, _, s in HOSTILE_ROWS]
    assert took < 60, took
    assert _alive_with(str(work / "rows.jsonl")) == []
    harness = {"python", "home"}  # the unprivileged user's interpreter and home
    assert sorted(p.name for p in work.iterdir() if p.name not in harness) == ["rows.jsonl", "scored.jsonl"]
    # in the home, only matplotlib's font cache and config directory, which it writes the first time it
    # is imported (through reasoning-gym's cellpylib, when plugins load; docs/reasoning_gym.md)
    home = work / "home"
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*")) if home.exists() else []
    assert all(p.split("/")[:2] in (
        [".cache"], [".cache", "matplotlib"], [".config"], [".config", "matplotlib"]) for p in written), written
