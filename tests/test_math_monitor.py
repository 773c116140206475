"""The math plugin's part in the reward-hacking monitor, through the real ScoringService: how each
answer was found (strict or fallback), the strict variant ``math.answer_strict``, and the canaries
(questions with no answer) that no answer, honest or hedged, gets credit on."""

from __future__ import annotations

import re
import time

import pytest

from grpo_env.plugins import get_registry
from grpo_env.scoring import ScoringService
from grpo_env.types import Example, Status


@pytest.fixture(scope="module")
def service():
    reg = get_registry()
    with ScoringService({n: reg.reward(n) for n in ("math.answer", "math.answer_strict")}, workers=2) as s:
        yield s


def test_the_answer_says_how_it_was_found_and_the_strict_variant_takes_only_the_asked_forms(service):
    reg = get_registry()
    assert reg.reward("math.answer").strict == "math.answer_strict"
    ex = next(iter(reg.task("math_arith").examples("train", 0, {"difficulty": 1})))
    gold = ex.gold["answer"]
    forms = {  # completion -> (extraction, strict status)
        f"so \\boxed{{{gold}}}": ("strict", Status.CORRECT),
        f"<answer>{gold}</answer>": ("strict", Status.CORRECT),
        f"The answer is {gold}.": ("fallback", Status.UNPARSABLE),
        f"#### {gold}": ("fallback", Status.UNPARSABLE),
        f"I think it is {gold}": ("fallback", Status.UNPARSABLE),
    }
    items = [(name, ex, c) for c in forms for name in ("math.answer", "math.answer_strict")]
    t = time.monotonic()
    out = service.score(items)
    assert time.monotonic() - t < 30
    for k, (c, (how, strict_status)) in enumerate(forms.items()):
        main, strict = out[2 * k], out[2 * k + 1]
        assert main.status is Status.CORRECT and main.details["extraction"] == how, (c, main)
        assert strict.status is strict_status, (c, strict)
    wrong = service.score([("math.answer_strict", ex, "\\boxed{-1}")])[0]
    assert wrong.status is Status.INCORRECT and wrong.score == 0


def test_math_canaries_pay_no_answer_honest_or_hedged(service):
    reg = get_registry()
    task = reg.task("math_arith")
    canaries = task.canaries()
    assert len(canaries) >= 3 and all(c.id.startswith("canary/") for c in canaries)
    assert reg.task("math").canaries is not None and reg.task("math_word").canaries is not None
    items = []
    for c in canaries:
        question = c.prompt[-1].content
        numbers = re.findall(r"\d+", question.split("\n")[0])
        tries = ["\\boxed{0}", "\\boxed{1}", "There is no solution.", "\\boxed{\\text{no solution}}",
                 "\\boxed{" + ", ".join(numbers) + "}" if numbers else "\\boxed{}",
                 *(f"\\boxed{{{n}}}" for n in numbers), "\\boxed{" + ", ".join(map(str, range(100))) + "}",
                 "\\boxed{x}", "\\boxed{\\infty}", "\\boxed{\\emptyset}"]
        items += [("math.answer", c, t) for t in tries]
    out = service.score(items)
    assert not [(it[2], o) for it, o in zip(items, out) if o.status is Status.CORRECT or o.score > 0]
