"""Finding the final answer in a completion: the text span a model committed to, not its value.

Precedence: the last ``\\boxed{...}`` / ``\\fbox{...}`` anywhere, then the last ``<answer>`` block
(whose content may itself say ``#### x`` or "the answer is x"), then the last ``#### x`` line,
then the last "the (final) answer is x", then, when enabled, the last number in the text.
Every scan is linear in the completion's length (no backtracking regex on model text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from grpo_env_math.guards import MAX_ANSWER_CHARS, Refused, reject

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_BOX_RE = re.compile(r"[^\s$]+")
_NON_SPACE_RE = re.compile(r"\S")
# what may stand between two boxes that state one answer together: "$\\boxed{1}$ or $\\boxed{2}$"
_BOX_GAP_RE = re.compile(r"[\s$]*(?:(?:,|;|or|and|\\text\{\s*(?:or|and)\s*\}|\\quad|\\,)[\s$]*)?", re.IGNORECASE)
_MAX_BOX_GAP = 64  # characters between two boxes of one answer
_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS_RE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|=|:)\s*:?[ \t]*([^\n]*)", re.IGNORECASE
)
# A number as models write them: 1,234.5 / -3 / 2/3 / .5 (the last-number fallback only).
_NUMBER_RE = re.compile(r"-?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|\.\d+)", re.ASCII)


@dataclass(frozen=True)
class Extracted:
    """The answer text a completion committed to and how it was found (``None``: nothing found,
    or, with ``method == "rejected"``, boxes that together are too long to be an answer)."""

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


def _boxes(text: str) -> list[tuple[int, int, int, int]]:
    """Every closed, non-empty box as (start of ``\\boxed``, start and end of its content, end), in
    text order. Linear time and memory: spans only, no copies of the text.

    Boxes may nest (``\\boxed{\\boxed{...}}``) and a bare box (``\\boxed 5``) runs to the next space,
    so on text made only of boxes every box spans the rest of the text; copying each content, or
    scanning each one, would be quadratic. A bare box whose run was already scanned reuses its end.
    """
    found = []
    closes: dict[int, int] | None = None
    run_end = -1  # end of the last scanned run of non-space characters
    n = len(text)
    for m in _BOX_RE.finditer(text):
        i = m.end()
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == "{":
            if closes is None:
                closes = _closing_braces(text)
            end = closes.get(i, -1)
            if end >= 0 and _NON_SPACE_RE.search(text, i + 1, end):
                found.append((m.start(), i + 1, end, end + 1))
            continue  # unclosed or empty ("\\boxed{} 87"): not an answer, other markers may be
        if i >= run_end:
            bare = _BARE_BOX_RE.match(text, i)
            if bare is None:
                continue
            run_end = bare.end()
        found.append((m.start(), i, run_end, run_end))
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``/``\\fbox{...}`` (``\\boxed 5`` too); ``None`` if none is closed."""
    boxes = _boxes(text)
    if not boxes:
        return None
    _, a, b, _ = boxes[-1]
    return text[a:b]


def final_boxes(text: str) -> str | None:
    """The final answer stated in boxes: the last box, joined with the boxes right before it.

    ``\\boxed{17} or \\boxed{18}`` is one hedged answer (``17 \\text{ or } 18``), never just 18;
    ``\\boxed{2}, \\boxed{3}`` is the list ``2, 3``. Boxes separated by other text, or nested in
    each other, stand alone. Raises :class:`Refused` when the boxes of one answer together run
    past the answer length limit (they would be refused as one answer anyway).
    """
    boxes = _boxes(text)
    if not boxes:
        return None
    group = [boxes[-1]]
    size = boxes[-1][2] - boxes[-1][1]
    hedge = False
    for prev, nxt in zip(reversed(boxes[:-1]), reversed(boxes[1:])):
        prev_end, next_start = prev[3], nxt[0]
        if not 0 <= next_start - prev_end <= _MAX_BOX_GAP:
            break  # nested or overlapping boxes, or text between them
        gap = _BOX_GAP_RE.fullmatch(text, prev_end, next_start)
        if gap is None:
            break
        size += prev[2] - prev[1]
        if size > MAX_ANSWER_CHARS:
            raise reject(f"the boxes of the final answer hold more than {MAX_ANSWER_CHARS} characters")
        hedge |= "or" in gap.group(0).lower()
        group.append(prev)
    contents = [text[a:b] for _, a, b, _ in reversed(group)]
    if len(contents) == 1:
        return contents[0]
    return (" \\text{ or } " if hedge else ", ").join(contents)


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


def _last(pattern: re.Pattern, text: str) -> re.Match | None:
    found = None
    for found in pattern.finditer(text):  # noqa: B007 - keeps the last match, not a list of all
        pass
    return found


def _last_marked(text: str) -> Extracted | None:
    """The last ``#### x`` line, else the last "answer is x" phrase."""
    last_hash = _last(_HASH_RE, text)
    if last_hash:
        span = _clean_tail(last_hash.group(1))
        if span:
            return Extracted(span, "hash")
    phrase = _last(_ANSWER_IS_RE, text)
    if phrase:
        span = phrase.group(1)
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
    m = _last(_NUMBER_RE, text)
    return m.group(0) if m else None


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
    try:
        boxed = final_boxes(completion)
    except Refused:
        return Extracted(None, "rejected")
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
