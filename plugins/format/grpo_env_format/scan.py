"""Linear-time tag scanning: find ``<tag>...</tag>`` blocks with ``str.find``, never a regex.

Tags are the exact ASCII strings (case-sensitive): a look-alike letter, a full-width ``＜``, a
zero-width character or a NUL byte inside a tag makes it ordinary text. Every function here does a
constant number of passes over the text, so a 10 MB completion costs milliseconds, whatever it holds
(the first long run of blank characters in a process also builds a lookup table, once, in ~0.3 s).
"""

from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np

# Blank characters render as nothing, so a block holding only them is empty: whitespace (what
# str.isspace() accepts), controls (Cc), format characters (Cf: zero-width, BOM, bidi marks, tags),
# marks that need a base (Mn, Me: combining marks, variation selectors), separators (Zs, Zl, Zp),
# and the letters and symbols that are drawn empty: the Hangul fillers and the Braille blank.
BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Mn", "Me", "Zs", "Zl", "Zp"})
BLANK_LOOKALIKES = "\u115f\u1160\u3164\uffa0\u2800"
_SHORT = 64  # blocks up to this long are checked one character at a time


def is_blank_char(ch: str) -> bool:
    """True for a character that renders as nothing (see ``BLANK_CATEGORIES``)."""
    return ch.isspace() or ch in BLANK_LOOKALIKES or unicodedata.category(ch) in BLANK_CATEGORIES


@cache
def _blank_table() -> np.ndarray:
    """``is_blank_char`` for every code point, as one flag each (built once per process, ~0.3 s)."""
    size = sys.maxunicode + 1
    return np.fromiter((is_blank_char(chr(c)) for c in range(size)), dtype=bool, count=size)


def is_blank(text: str) -> bool:
    """True when every character of ``text`` is blank (see ``is_blank_char``); True for "".

    Linear: a visible character among the first few ends it at once; a longer run of blanks is
    looked up in one table, vectorised (10 MB in a fraction of a second).
    """
    for ch in text[:_SHORT]:
        if not is_blank_char(ch):
            return False
    if len(text) <= _SHORT:
        return True
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    return bool(_blank_table()[codes].all())


def is_whitespace(text: str) -> bool:
    """True when ``text`` is empty or only whitespace (invisible characters do not count)."""
    return not text.strip()


def opener(tag: str) -> str:
    return f"<{tag}>"


def closer(tag: str) -> str:
    return f"</{tag}>"


@dataclass(frozen=True)
class Block:
    """One ``<tag>content</tag>`` occurrence: ``start`` is the opener's index, ``end`` is just past the closer."""

    start: int
    end: int
    content: str


def count(text: str, tag: str) -> dict[str, int]:
    """How many times the opener and the closer of ``tag`` occur (they cannot overlap each other)."""
    return {opener(tag): text.count(opener(tag)), closer(tag): text.count(closer(tag))}


def first_filled_block(text: str, tag: str, start: int = 0) -> Block | None:
    """The first block of ``tag`` at or after ``start`` whose content is not blank, or None.

    A block is an innermost pair: the first closer, matched with the last opener before it, so
    ``<think><think>x</think>`` yields the block ``x``. Each search resumes past the previous closer,
    so the text is walked once forwards (``rfind`` only re-reads the stretch the ``find`` just
    crossed): linear even for 100k openers without a closer.
    """
    op, cl = opener(tag), closer(tag)
    pos = start
    while True:
        close_at = text.find(cl, pos)
        if close_at < 0:
            return None
        open_at = text.rfind(op, pos, close_at)
        if open_at >= 0:
            content = text[open_at + len(op) : close_at]
            if not is_blank(content):
                return Block(open_at, close_at + len(cl), content)
        pos = close_at + len(cl)
