"""Finding the final answer in a completion: the text span a model committed to, not its value.

Precedence: the last ``\\boxed{...}`` / ``\\fbox{...}`` anywhere, then the last ``<answer>`` block
(whose content may itself say ``#### x`` or "the answer is x"), then the last ``#### x`` line,
then the last "the (final) answer is x", then, when enabled, the last number in the text.
Every scan is linear in the completion's length (no backtracking regex on model text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_BOX_RE = re.compile(r"[^\s$]+")
# what may stand between two boxes that state one answer together: "$\\boxed{1}$ or $\\boxed{2}$"
_BOX_GAP_RE = re.compile(r"[\s$]*(?:(?:,|;|or|and|\\text\{\s*(?:or|and)\s*\}|\\quad|\\,)[\s$]*)?", re.IGNORECASE)
_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS_RE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|=|:)\s*:?[ \t]*([^\n]*)", re.IGNORECASE
)
# A number as models write them: 1,234.5 / -3 / 2/3 / .5 (the last-number fallback only).
_NUMBER_RE = re.compile(r"-?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|\.\d+)", re.ASCII)


@dataclass(frozen=True)
class Extracted:
    """The answer text a completion committed to and how it was found (``None``: nothing found)."""

    text: str | None
    method: str


def _closing_braces(text: str) -> dict[int, int]:
    """For every ``{`` that gets closed, the index of its ``}``: one stack pass, linear time.

    Matching each ``\\boxed{`` separately would be quadratic on text made of thousands of
    unclosed boxes; one pass over the text answers them all.
    """
    closes: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2  # an escaped character never opens or closes a group
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            closes[stack.pop()] = i
        i += 1
    return closes


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """Every closed, non-empty box as (start of ``\\boxed``, index after it, content), in text order."""
    found = []
    closes: dict[int, int] | None = None
    for m in _BOX_RE.finditer(text):
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            if closes is None:
                closes = _closing_braces(text)
            end = closes.get(i, -1)
            if end >= 0 and text[i + 1 : end].strip():
                found.append((m.start(), end + 1, text[i + 1 : end]))
            continue  # unclosed or empty ("\\boxed{} 87"): not an answer, other markers may be
        bare = _BARE_BOX_RE.match(text, i)
        if bare:
            found.append((m.start(), bare.end(), bare.group(0)))
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``/``\\fbox{...}`` (``\\boxed 5`` too); ``None`` if none is closed."""
    boxes = _boxes(text)
    return boxes[-1][2] if boxes else None


def final_boxes(text: str) -> str | None:
    """The final answer stated in boxes: the last box, joined with the boxes right before it.

    ``\\boxed{17} or \\boxed{18}`` is one hedged answer (``17 \\text{ or } 18``), never just 18;
    ``\\boxed{2}, \\boxed{3}`` is the list ``2, 3``. Boxes separated by other text stand alone.
    """
    boxes = _boxes(text)
    if not boxes:
        return None
    group = [boxes[-1][2]]
    hedge = False
    for (_, prev_end, content), (next_start, _, _) in zip(reversed(boxes[:-1]), reversed(boxes[1:])):
        gap = _BOX_GAP_RE.fullmatch(text[prev_end:next_start])
        if gap is None:
            break
        hedge |= "or" in gap.group(0).lower()
        group.append(content)
    if len(group) == 1:
        return group[0]
    return (" \\text{ or } " if hedge else ", ").join(reversed(group))


def _clean_tail(span: str) -> str:
    """Trim a free-text answer: math delimiters, a sentence's final period, surrounding space."""
    span = span.strip()
    # "The answer is 18. Next we ..." -> "18": cut at the first period that ends a sentence
    cut = re.search(r"\.(?=\s|$)", span)
    if cut:
        span = span[: cut.start()]
    return span.strip().strip("*").strip()


def _from_block(block: str) -> Extracted | None:
    """The answer inside an ``<answer>`` block: a marker if it has one, else the whole block."""
    inner = _last_marked(block)
    if inner is not None:
        return inner
    body = block.strip()
    return Extracted(body, "answer_tag") if body else None


def _last_marked(text: str) -> Extracted | None:
    """The last ``#### x`` line, else the last "answer is x" phrase."""
    hashes = list(_HASH_RE.finditer(text))
    if hashes:
        span = _clean_tail(hashes[-1].group(1))
        if span:
            return Extracted(span, "hash")
    phrases = list(_ANSWER_IS_RE.finditer(text))
    if phrases:
        span = phrases[-1].group(1)
        # "Final Answer: The final answer is $18$.": the phrase inside the phrase states it
        for _ in range(4):
            inner = _ANSWER_IS_RE.search(span)
            if inner is None:
                break
            span = inner.group(1)
        span = _clean_tail(span)
        if span:
            return Extracted(span, "answer_is")
    return None


def last_number(text: str) -> str | None:
    """The last number-looking token in ``text`` (for the fallback)."""
    found = None
    for m in _NUMBER_RE.finditer(text):
        found = m.group(0)
    return found


def last_answer_block(text: str) -> str | None:
    """Content of the last ``<answer>...</answer>`` block, or of a final unclosed ``<answer>``
    (generation stopped at the closing tag); found with two reverse searches, linear time."""
    low = text.lower()
    close = low.rfind("</answer>")
    if close >= 0:
        open_ = low.rfind("<answer>", 0, close)
        if open_ >= 0:
            return text[open_ + len("<answer>") : close]
    open_ = low.rfind("<answer>")
    if open_ > close:
        return text[open_ + len("<answer>") :]
    return None


def extract_answer(completion: str, *, fallback_last_number: bool = True) -> Extracted:
    """The final answer span of ``completion`` and the method that found it."""
    boxed = final_boxes(completion)
    if boxed is not None:
        return Extracted(boxed, "boxed")
    block = last_answer_block(completion)
    if block is not None:
        found = _from_block(block)
        if found is not None:
            return found
    marked = _last_marked(completion)
    if marked is not None:
        return marked
    if fallback_last_number:
        num = last_number(completion)
        if num is not None:
            return Extracted(num, "last_number")
    return Extracted(None, "none")
