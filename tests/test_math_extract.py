"""Finding the final answer span in a completion."""

from __future__ import annotations

import pytest
from grpo_env_math.check import check_answer
from grpo_env_math.extract import extract_answer, last_boxed

from grpo_env.types import Status

CASES = [
    ("so \\boxed{18}.", "18", "boxed"),
    ("first \\boxed{3} then \\boxed{18}", "18", "boxed"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "boxed"),
    ("\\boxed{\\{1, \\{2\\}\\}}", "\\{1, \\{2\\}\\}", "boxed"),
    ("nested \\boxed{x^{2^{3}}}", "x^{2^{3}}", "boxed"),
    ("\\fbox{42}", "42", "boxed"),
    ("50 + 36 = \\boxed{} 86\n\nThe answer is 86.", "86", "answer_is"),  # an empty box is no answer
    ("\\boxed 7 is it", "7", "boxed"),
    ("$\\boxed{5}$ and \\boxed{6", "5", "boxed"),  # the last box is never closed: the earlier one stands
    ("<think>17?</think><answer>18</answer>", "18", "answer_tag"),
    ("<think>the answer is 17</think><answer>\\boxed{18}</answer>", "18", "boxed"),
    ("<think>...</think><answer>The answer is 18</answer>", "18", "answer_is"),
    ("<think>...</think><answer>18", "18", "answer_tag"),  # generation stopped at the stop string
    ("Natalia sold 48 clips.\n#### 72", "72", "hash"),
    ("#### 1,234\n", "1,234", "hash"),
    ("Thus the final answer is 3.5.", "3.5", "answer_is"),
    ("The answer is: $\\frac{3}{4}$. Done.", "$\\frac{3}{4}$", "answer_is"),
    ("Answer: 12", "12", "answer_is"),
    ("Final Answer: The final answer is $18$. I hope it is correct.", "$18$", "answer_is"),
    ("**Answer:** 18", "18", "answer_is"),
    ("I computed 3 then 4, so 12 apples", "12", "last_number"),
    ("it is -2.5 or so", "-2.5", "last_number"),
]


@pytest.mark.parametrize("text,span,method", CASES)
def test_extraction(text, span, method):
    found = extract_answer(text)
    assert (found.text, found.method) == (span, method)


def test_fallback_can_be_turned_off():
    assert extract_answer("I get 12 apples", fallback_last_number=False).text is None
    assert check_answer("I get 12 apples", "12", last_number_fallback=False).status is Status.UNPARSABLE
    assert check_answer("I get 12 apples", "12", last_number_fallback=True).status is Status.CORRECT


def test_unclosed_or_missing_box():
    assert last_boxed("\\boxed{12") is None
    assert last_boxed("no box here") is None
    assert last_boxed("\\boxed{\\}}") == "\\}"


@pytest.mark.parametrize("completion", [
    "The answer is 18.", "#### 18", "<answer>18</answer>", "\\boxed{18}", "so $\\boxed{18}$ dollars",
    "\\boxed{\\$18}", "\\boxed{18 \\text{ apples}}", "The final answer is $18$.",
])
def test_every_form_scores(completion):
    assert check_answer(completion, "18").status is Status.CORRECT
