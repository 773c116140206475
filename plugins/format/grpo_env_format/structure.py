"""Structure rewards: is the completion laid out as ``<think>...</think><answer>...</answer>``?

Each returns 1.0 (``correct``) or 0.0 (``incorrect`` with ``details["reason"]``), except
``tag_count``, which gives 0.25 per tag. All matching is exact, case-sensitive ASCII via
:mod:`grpo_env_format.scan`, linear in the length of the completion.
"""

from __future__ import annotations

from grpo_env import Example, Outcome

from grpo_env_format.scan import closer, count, first_filled_block, is_blank, is_whitespace, opener

THINK_OPEN, THINK_CLOSE = opener("think"), closer("think")
ANSWER_OPEN, ANSWER_CLOSE = opener("answer"), closer("answer")
ALL_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


def _once_problem(counts: dict[str, int]) -> str | None:
    """Why the tags in ``counts`` do not each occur exactly once, or None when they do."""
    for tag, n in counts.items():
        if n == 0:
            return f"missing {tag}"
        if n > 1:
            return f"{tag} appears {n} times, expected exactly once"
    return None


def _strict_problem(text: str) -> str | None:
    """Why ``text`` is not exactly ``<think>x</think><answer>y</answer>`` (whitespace around), or None."""
    problem = _once_problem({**count(text, "think"), **count(text, "answer")})
    if problem:
        return problem
    t0, t1 = text.find(THINK_OPEN), text.find(THINK_CLOSE)
    a0, a1 = text.find(ANSWER_OPEN), text.find(ANSWER_CLOSE)
    if not t0 < t1 < a0 < a1:
        return "tags out of order: expected <think>...</think> then <answer>...</answer>"
    if not is_whitespace(text[:t0]):
        return "text before <think>"
    if is_blank(text[t0 + len(THINK_OPEN) : t1]):
        return "empty <think> block"
    if not is_whitespace(text[t1 + len(THINK_CLOSE) : a0]):
        return "text between </think> and <answer>"
    if is_blank(text[a0 + len(ANSWER_OPEN) : a1]):
        return "empty <answer> block"
    if not is_whitespace(text[a1 + len(ANSWER_CLOSE) :]):
        return "text after </answer>"
    return None


def think_answer_strict(completion: str, example: Example) -> Outcome:
    """1.0 for exactly one non-empty think block then one non-empty answer block, only whitespace around."""
    problem = _strict_problem(completion)
    return Outcome.incorrect(reason=problem) if problem else Outcome.correct()


def think_answer_soft(completion: str, example: Example) -> Outcome:
    """1.0 when some non-empty think block is followed by some non-empty answer block; other text is allowed."""
    think = first_filled_block(completion, "think")
    if think is None:
        return Outcome.incorrect(reason="no non-empty <think>...</think> block")
    if first_filled_block(completion, "answer", think.end) is None:
        return Outcome.incorrect(reason="no non-empty <answer>...</answer> block after the think block")
    return Outcome.correct()


def answer_tag(completion: str, example: Example) -> Outcome:
    """1.0 for exactly one non-empty ``<answer>...</answer>`` block; text around it is allowed."""
    problem = _once_problem(count(completion, "answer"))
    if problem:
        return Outcome.incorrect(reason=problem)
    a0, a1 = completion.find(ANSWER_OPEN), completion.find(ANSWER_CLOSE)
    if a1 < a0:
        return Outcome.incorrect(reason="</answer> comes before <answer>")
    if is_blank(completion[a0 + len(ANSWER_OPEN) : a1]):
        return Outcome.incorrect(reason="empty <answer> block")
    return Outcome.correct()


def tag_count(completion: str, example: Example) -> Outcome:
    """0.25 for each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` occurring exactly once."""
    counts = {tag: completion.count(tag) for tag in ALL_TAGS}
    score = 0.25 * sum(n == 1 for n in counts.values())
    if score == 1.0:
        return Outcome.correct(counts=counts)
    if score == 0.0:
        return Outcome.incorrect(counts=counts, reason="no tag occurs exactly once")
    return Outcome.partial(score, counts=counts)


BOXED = "\\boxed{"


def boxed_once(completion: str, example: Example) -> Outcome:
    """1.0 for exactly one ``\\boxed{...}`` whose braces close and whose content is not blank (the
    form math prompts ask the answer in); text around it is allowed. One pass: a count, then a brace
    scan from the box to its closing brace."""
    n = completion.count(BOXED)
    if n != 1:
        return Outcome.incorrect(reason="no \\boxed{}" if n == 0 else f"{n} \\boxed{{}}, expected one")
    start = completion.find(BOXED) + len(BOXED)
    depth = 1
    for i in range(start, len(completion)):
        c = completion[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                if is_blank(completion[start:i]):
                    return Outcome.incorrect(reason="empty \\boxed{}")
                return Outcome.correct()
    return Outcome.incorrect(reason="\\boxed{ is never closed")
