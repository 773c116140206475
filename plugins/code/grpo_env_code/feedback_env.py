"""The ``code_feedback`` environment: write a function, see which visible tests fail, try again.

Each problem is a function problem whose tests are data (ours by default: ``source = functions``).
Its tests are split once, by their arguments: the first half of the distinct calls (at least one)
are *visible*, the rest *hidden*, so no hidden call is ever shown; a problem with fewer than two
distinct calls is refused (its only test would be both). Every assistant turn is a submission: its code runs the visible
tests in the sandbox (:func:`~grpo_env_code.reward.code_tests` on a copy of the example holding
only those tests), and the failures come back as a user message. The episode ends when every
visible test passes or after ``attempts`` submissions (or when the core stops it: turn or token
limit); the outcome is then the fraction of *hidden* tests the last submission passes, minus
``attempt_penalty`` per attempt after the first, never below 0. Hidden tests run in a sandbox run of
their own, and only at the end: nothing about them (arguments, results) reaches the model.

A sandbox failure (no isolation on this machine, a broken template process) raises: the episode is
an environment error, excluded from training, never a 0 for the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from grpo_env.environment import Environment, Episode, EpisodeFixture, Step, Turn
from grpo_env.sandbox import codec
from grpo_env.types import Example, Message, Outcome, Status
from grpo_env_code.problems import example_from_row
from grpo_env_code.reward import code_tests
from grpo_env_code.tasks import CodeOptions, _rows

NAME = "code_feedback"
MAX_ATTEMPTS = 8  # the environment's turn cap; the ``attempts`` option ends episodes sooner
DEFAULT_ATTEMPTS = 3
MAX_FAILURES_SHOWN = 5
STDERR_TAIL = 600
CALL_CHARS = 160  # of a visible test's call shown in feedback

FEEDBACK_NOTE = ("\n\nYou have {attempts} attempt(s). After each one you see which of the visible tests fail; "
                 "your score is the share of hidden tests your last attempt passes{penalty}.")


class FeedbackOptions(CodeOptions):
    attempts: int = Field(DEFAULT_ATTEMPTS, ge=1, le=MAX_ATTEMPTS, description="submissions per episode")
    attempt_penalty: float = Field(0.0, ge=0.0, le=1.0, description="subtracted from the score per attempt after "
                                   "the first (the score never goes below 0)")


def split_tests(tests: list[dict]) -> tuple[list[dict], list[dict]] | None:
    """(visible, hidden), disjoint by construction: tests are grouped by their arguments (repeats of a
    call stay together), the first half of the groups (at least one) is visible, the rest hidden.
    None when there are fewer than two distinct calls: every hidden test would then be shown."""
    groups: dict[str, list[dict]] = {}
    for t in tests:
        groups.setdefault(json.dumps(t.get("args"), sort_keys=True), []).append(t)
    if len(groups) < 2:
        return None
    calls = list(groups.values())
    n_visible = max(1, len(calls) // 2)
    return [t for g in calls[:n_visible] for t in g], [t for g in calls[n_visible:] for t in g]


TOO_FEW = "code_feedback needs a function problem with at least two tests that call it with different arguments"


def feedback_example(base: Example, options: dict[str, Any]) -> Example | None:
    """The code example ``base`` as a feedback episode, or None when its tests are not data or cannot
    be split into visible and hidden ones."""
    gold = base.gold
    if gold.get("kind") != "function" or not gold.get("tests") or split_tests(list(gold["tests"])) is None:
        return None
    attempts = int(options.get("attempts", DEFAULT_ATTEMPTS))
    penalty = float(options.get("attempt_penalty", 0.0))
    note = FEEDBACK_NOTE.format(attempts=attempts, penalty=f", minus {penalty:g} per extra attempt" if penalty else "")
    prompt = list(base.prompt[:-1]) + [Message(role=base.prompt[-1].role, content=base.prompt[-1].content + note)]
    return base.model_copy(update={"prompt": prompt,
                                   "gold": {**gold, "attempts": attempts, "attempt_penalty": penalty}})


def examples(split: str, seed: int, options: dict[str, Any]) -> Iterator[Example]:
    """The function problems of ``options['source']`` that can be played (tests as data, at least two
    distinct calls), in file order; a source with none of them is an error that says so."""
    made = rows = 0
    for row in _rows(options, split):
        rows += 1
        ex = feedback_example(example_from_row(row, options), options)
        if ex is None:
            continue
        yield ex
        made += 1
        if options.get("count") and made >= options["count"]:
            return
    if rows and not made:
        raise ValueError(f"none of the {rows} problem(s) of source {options.get('source', 'functions')!r} can be "
                         f"played: {TOO_FEW}")


def from_row(row: dict[str, Any], options: dict[str, Any]) -> Example:
    ex = feedback_example(example_from_row(row, options), options)
    if ex is None:
        raise ValueError(f"{TOO_FEW} (tests as data: args, expected)")
    return ex


def attempts_of(example: Example) -> int:
    """The turn limit of an episode: its ``attempts`` option."""
    return int(example.gold.get("attempts", DEFAULT_ATTEMPTS))


def _call_text(entry_point: str, test: dict) -> str:
    try:
        args = codec.decode(test["args"])
        text = f"{entry_point}({', '.join(repr(a) for a in args)})"  # decoded data: built-ins only
    except Exception:  # a data set's odd arguments: still say which test
        text = f"{entry_point}(...)"
    return text if len(text) <= CALL_CHARS else text[: CALL_CHARS - 3] + "..."


def _test_index(failure: str) -> int | None:
    """The index in code_tests' own ``"test {i}: why"`` failure lines (our text, not the model's)."""
    head, sep, _ = failure.partition(":")
    if not sep or not head.startswith("test "):
        return None
    digits = head[5:]
    return int(digits) if digits.isdecimal() and len(digits) < 7 else None


class FeedbackEpisode(Episode):
    def __init__(self, example: Example):
        super().__init__(example)
        gold = example.gold
        split = split_tests(list(gold["tests"]))
        if split is None:  # a hand-built example that feedback_example would have refused
            raise ValueError(TOO_FEW)
        visible, hidden = split
        self.visible = example.model_copy(update={"gold": {**gold, "tests": visible}})
        self.hidden = example.model_copy(update={"gold": {**gold, "tests": hidden}})
        self.attempts = attempts_of(example)
        self.penalty = float(gold.get("attempt_penalty", 0.0))
        self.used = 0
        self.last = ""  # the last submission
        self.last_visible: Outcome | None = None

    def step(self, turn: Turn) -> Step:
        self.used += 1
        self.last = turn.text
        out = code_tests(turn.text, self.visible)
        if out.status is Status.ERROR:
            raise RuntimeError(f"the visible tests could not run: {out.details.get('error')}")
        self.last_visible = out
        if out.status is Status.CORRECT or self.used >= self.attempts:
            return Step.end(self._final())
        return Step.reply(self._feedback(out))

    def end(self, reason: str) -> Outcome:
        if not self.used:
            return Outcome.incorrect(reason=reason, detail="no submission")
        return self._final(reason=reason)

    def _feedback(self, out: Outcome) -> str:
        d = out.details
        tests = self.visible.gold["tests"]
        entry = self.visible.gold.get("entry_point", "")
        left = self.attempts - self.used
        lines = [f"Attempt {self.used} of {self.attempts}: "]
        if out.status is Status.UNPARSABLE:
            lines[0] += "no code found. Reply with the complete function in a ```python code block."
        elif out.status is Status.REJECTED:
            lines[0] += f"rejected ({d.get('detail', 'too long')})."
        else:
            passed, total = d.get("passed", 0), d.get("total", len(tests))
            lines[0] += f"{passed} of {total} visible tests pass."
            run_failed = out.status in (Status.SYNTAX_ERROR, Status.TIMEOUT, Status.MEMORY_LIMIT,
                                        Status.OUTPUT_LIMIT, Status.RUNTIME_ERROR)
            if run_failed:
                lines.append(f"The run ended with {out.status.value.replace('_', ' ')}"
                             + (f": {d['detail']}" if d.get("detail") else "."))
            for failure in list(d.get("failures", []))[:MAX_FAILURES_SHOWN]:
                i = _test_index(failure)
                why = failure.partition(": ")[2]
                if run_failed and why == "no result reported":  # the run's status line says why
                    continue
                call = _call_text(entry, tests[i]) if i is not None and 0 <= i < len(tests) else "a test"
                lines.append(f"- {call}: {why}")
            if d.get("stderr"):
                lines.append("stderr (end):\n" + str(d["stderr"])[-STDERR_TAIL:])
        lines.append(f"{left} attempt(s) left. Reply with the complete corrected function in a ```python code block.")
        return "\n".join(lines)

    def _final(self, **extra: Any) -> Outcome:
        out = code_tests(self.last, self.hidden)
        if out.status is Status.ERROR:
            raise RuntimeError(f"the hidden tests could not run: {out.details.get('error')}")
        raw = out.score
        score = max(0.0, raw - self.penalty * (self.used - 1))
        status = out.status
        if status in (Status.CORRECT, Status.PARTIAL):
            status = Status.CORRECT if score >= 1.0 else Status.PARTIAL if score > 0 else Status.INCORRECT
        vis = self.last_visible.details if self.last_visible is not None else {}
        details = {"attempts": self.used, "hidden_score": raw, "hidden_passed": out.details.get("passed"),
                   "hidden_total": out.details.get("total"), "visible_passed": vis.get("passed"),
                   "visible_total": vis.get("total"), **extra}
        if self.penalty and self.used > 1:
            details["penalty"] = raw - score
        return Outcome(score=score, status=status, details=details)


def make_episode(example: Example) -> Episode:
    return FeedbackEpisode(example)


# ---- fixtures ----------------------------------------------------------------------------------

FAST = {"timeout": 1.5}  # fixtures that hang should not hold `grpo-env check` up for long


def _fenced(code: str) -> str:
    return f"```python\n{code}```\n"


def fixtures() -> list[EpisodeFixture]:
    row = next(r for r in _rows({"source": "functions"}, "train") if r["entry_point"] == "sum_of_squares")
    ex = from_row(row, FAST)
    pen = from_row(row, {**FAST, "attempt_penalty": 0.25})
    one = from_row(row, {**FAST, "attempts": 1})
    right = _fenced(row["prompt"] + row["canonical_solution"])
    wrong = _fenced("def sum_of_squares(nums):\n    return sum(nums)\n")
    # visible tests: [1, 2, 3] -> 14 and [] -> 0; hidden: [-4] -> 16, [0, 0, 5] -> 25, [10, -10] -> 200
    table = _fenced("def sum_of_squares(nums):\n    return {(1, 2, 3): 14, (): 0}.get(tuple(nums), 0)\n")
    positives = _fenced("def sum_of_squares(nums):\n    return sum(n * n for n in nums if n > 0)\n")
    printer = _fenced("def sum_of_squares(nums):\n    print(14)\n    print(0)\n")
    hang = _fenced("def sum_of_squares(nums):\n    while True:\n        pass\n")
    visible_miss = _fenced("def sum_of_squares(nums):\n    return 0 if nums == [1, 2, 3] else sum(n * n for n in nums)\n")
    F = EpisodeFixture
    return [
        F(example=ex, turns=[right], expect="full", turns_played=1, note="right at the first attempt"),
        F(example=ex, turns=[wrong, right], expect="full", turns_played=2, note="wrong, then right (no penalty)"),
        F(example=ex, turns=[wrong, wrong, wrong], expect="zero", turns_played=3, note="wrong at every attempt"),
        F(example=ex, turns=["I cannot solve this.", hang, right], expect="full", turns_played=3,
          note="prose, then a hang, then right: each is an attempt with its feedback"),
        F(example=ex, turns=[table], expect="zero", turns_played=1,
          note="hard-coded visible answers pass the visible tests and no hidden one"),
        F(example=ex, turns=[positives], expect=Status.PARTIAL, turns_played=1,
          note="passes the visible tests and one of three hidden ones"),
        F(example=ex, turns=[printer] * 3, expect="zero", turns_played=3, note="prints the visible answers"),
        F(example=pen, turns=[wrong, right], expect=Status.PARTIAL, turns_played=2,
          note="right at the second attempt, with a 0.25 penalty per extra attempt"),
        F(example=one, turns=[wrong, right], expect="zero", turns_played=1, note="one attempt only"),
        F(example=ex, turns=[wrong], expect="zero", turns_played=1,
          note="the script stops after one attempt: the core ends the episode, the hidden tests judge it"),
        F(example=ex, turns=[visible_miss], expect="full", turns_played=1,
          note="stopped by the core after failing a visible test: the score is the hidden tests' (all pass)"),
    ]


def feedback_environment() -> Environment:
    return Environment(
        name=NAME,
        description="Function problems with feedback: the visible half of the tests' failures come back after "
        "each attempt; the score is the share of hidden tests passed (ours, 34 offline)",
        rewards={NAME: 1.0},
        examples=examples,
        from_row=from_row,
        options=FeedbackOptions,
        make=make_episode,
        max_turns=MAX_ATTEMPTS,
        turn_limit=attempts_of,
        step_timeout=30.0,  # two sandbox runs (visible, then hidden) of at most 10 s each
        episode_timeout=120.0,
        fixtures=fixtures,
        outcome_range=(0.0, 1.0),  # the share of hidden tests passed, less the attempt penalty
        outcome_statuses=(Status.CORRECT, Status.PARTIAL, Status.INCORRECT, Status.UNPARSABLE, Status.REJECTED,
                          Status.TIMEOUT, Status.MEMORY_LIMIT, Status.OUTPUT_LIMIT, Status.RUNTIME_ERROR,
                          Status.SYNTAX_ERROR, Status.NOT_APPLICABLE),  # code.tests' statuses on the hidden tests
    )
