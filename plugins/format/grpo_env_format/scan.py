"""Linear-time tag scanning: find ``<tag>...</tag>`` blocks with ``str.find``, never a regex.

Tags are the exact ASCII strings (case-sensitive): a look-alike letter, a full-width ``＜``, a
zero-width character or a NUL byte inside a tag makes it ordinary text. Every function here does a
constant number of passes over the text, so a 10 MB completion costs milliseconds, whatever it holds
(a lookup table is built once per process, in ~0.5 s: on the first long run of blank characters, or
the first non-ASCII text the repetition penalty reads).
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
# code points with no agreed glyph (Co: private use, Cn: unassigned and noncharacters, Cs: lone
# surrogates), and the letters and symbols that are drawn empty: the Hangul fillers, the Braille
# blank, the musical null notehead and the object replacement character.
BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Mn", "Me", "Zs", "Zl", "Zp", "Co", "Cn", "Cs"})
BLANK_LOOKALIKES = "\u115f\u1160\u3164\uffa0\u2800\U0001d159\ufffc"
_SHORT = 64  # blocks up to this long are checked one character at a time


def is_blank_char(ch: str) -> bool:
    """True for a character that renders as nothing (see ``BLANK_CATEGORIES``)."""
    return ch.isspace() or ch in BLANK_LOOKALIKES or unicodedata.category(ch) in BLANK_CATEGORIES


@cache
def _blank_table() -> np.ndarray:
    """``is_blank_char`` for every code point, as one flag each (built once per process, ~0.5 s)."""
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


@cache
def _invisible_table() -> np.ndarray:
    """Blank but not whitespace, for every code point: what ``drop_invisible`` removes."""
    table = _blank_table().copy()
    table[[c for c in range(sys.maxunicode + 1) if chr(c).isspace()]] = False
    return table


# the ASCII characters that are blank but do not split words: controls such as NUL and DEL
_ASCII_INVISIBLE = {c: None for c in range(128) if is_blank_char(chr(c)) and not chr(c).isspace()}


def drop_invisible(text: str) -> str:
    """``text`` without its blank characters that are not whitespace (zero-width, marks, fillers...).

    Invisible characters do not split words, so ``"a\\u200bb"`` becomes the word ``ab``: a reader
    sees the same words either way, and a varied count of them cannot make repeats look distinct.
    Linear: ASCII text is translated in C; other text is filtered through one table, vectorised.
    """
    if text.isascii():
        return text.translate(_ASCII_INVISIBLE)
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    kept = codes[~_invisible_table()[codes]]
    return kept.tobytes().decode("utf-32-le", "surrogatepass")


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
