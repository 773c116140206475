"""The answer check on a hand-written table of equivalent and non-equivalent pairs.

The table (``tasks/data/math/verdicts.jsonl``) is shared with the benchmark. Each row says whether
``answer`` states the gold; a wrong "equal" (a false positive) is the failure that matters most.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from grpo_env_math.check import check_answer

from grpo_env.types import Status

TABLE = Path(__file__).resolve().parents[1] / "tasks" / "data" / "math" / "verdicts.jsonl"
ROWS = [json.loads(line) for line in TABLE.read_text().splitlines() if line.strip()]
# forms where the relation is symmetric, so gold and answer can trade places
SYMMETRIC = {"integer", "fraction", "mixed", "symbolic", "tuple", "set", "interval", "matrix", "complex",
             "equation", "thousands", "scientific", "infinity", "greek", "trig", "log"}


def _verdict(gold: str, answer: str) -> bool:
    return check_answer(f"Some reasoning.\n\\boxed{{{answer}}}", gold, last_number_fallback=False).status is Status.CORRECT


def test_table_is_large_and_covers_both_verdicts():
    assert len(ROWS) >= 300
    assert sum(r["equal"] for r in ROWS) >= 150 and sum(not r["equal"] for r in ROWS) >= 150
    assert len({r["form"] for r in ROWS}) >= 30


@pytest.mark.parametrize("row", [r for r in ROWS if not r["equal"]], ids=lambda r: f"{r['form']}:{r['gold']}!={r['answer']}")
def test_no_false_positives(row):
    assert not _verdict(row["gold"], row["answer"])


@pytest.mark.parametrize("row", [r for r in ROWS if r["equal"]], ids=lambda r: f"{r['form']}:{r['gold']}=={r['answer']}")
def test_equivalent_forms_are_accepted(row):
    assert _verdict(row["gold"], row["answer"])


# a decimal gold sets the precision an exact answer is rounded to, so decimals do not swap
@pytest.mark.parametrize("row", [r for r in ROWS if r["form"] in SYMMETRIC and r["answer"] and "." not in r["answer"]
                                 and not (r["form"] == "equation" and not r["equal"])],
                         ids=lambda r: f"{r['form']}:{r['answer']}<->{r['gold']}")
def test_symmetric_forms_hold_with_gold_and_answer_swapped(row):
    got = check_answer(f"\\boxed{{{row['gold']}}}", row["answer"], last_number_fallback=False).status
    if got is Status.NOT_APPLICABLE:
        pytest.skip("the answer side is not a valid gold (e.g. a hedge)")
    assert (got is Status.CORRECT) == row["equal"]


def test_gold_decimal_sets_the_precision_for_exact_answers_only():
    assert _verdict("0.33", "\\frac{1}{3}")
    assert not _verdict("0.33", "0.333")  # a decimal answer must match the gold exactly
    assert not _verdict("\\frac{1}{3}", "0.33")  # an exact gold is not rounded


def test_big_integers_are_exact():
    assert not _verdict("10000000000", "10000000001")
    assert _verdict("2^{100}", "1267650600228229401496703205376")
    assert not _verdict("2^{100}", "1267650600228229401496703205377")


def test_unparsable_gold_is_not_applicable_never_full_reward():
    out = check_answer("\\boxed{AB}", "\\overline{AB}")
    assert out.status is Status.NOT_APPLICABLE and out.score == 0.0
    assert check_answer("\\boxed{1}", "").status is Status.NOT_APPLICABLE
    assert check_answer("\\boxed{1}", "2^{2^{2^{2^{2}}}}").status is Status.NOT_APPLICABLE


@pytest.mark.parametrize("gold,answer,equal", [
    ("\\text{(A)}", "A", True), ("\\text{(A)}", "(A)", True), ("\\textbf{(C)}", "\\text{(C)}", True),
    ("\\text{even}", "\\text{Even}", True), ("\\text{(A)}", "B", False), ("\\text{(C)}", "C \\text{ or } D", False),
    ("\\text{even}", "\\text{not even}", False), ("\\text{Devon}", "\\text{Devin}", False),
])
def test_word_golds_match_normalised_words(gold, answer, equal):
    assert _verdict(gold, answer) is equal
