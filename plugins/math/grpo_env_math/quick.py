"""The fast path: answers that are one plain rational number, compared as exact fractions.

Most arithmetic and GSM8K answers are ``18``, ``-3.5``, ``1,234`` or ``3/4``; reading them with
one anchored regex and :class:`fractions.Fraction` is exact and needs no sympy at all. Anything
else returns ``None`` and goes to the full parser, including every text with a space (or a LaTeX
space) between its characters: ``1 1/2`` is the mixed number 3/2 and ``1\\,5`` is not 15, and
only the parser knows that; reading them here with the spaces dropped gave a second reading.
"""

from __future__ import annotations

import re
from fractions import Fraction

_MAX_DIGITS = 60  # longer literals go through the full parser and its guards

_PLAIN_RE = re.compile(
    r"(?P<sign>[-+]?)(?P<int>\d{1,3}(?:,\d{3})+|\d+)?(?:\.(?P<dec>\d+))?(?:/(?P<den>\d+))?", re.ASCII
)
_FRAC_RE = re.compile(r"(?P<sign>[-+]?)\\[dt]?frac\{(?P<num>\d+)\}\{(?P<den>\d+)\}", re.ASCII)
_WRAPPERS = ("$", "\\(", "\\)", "\\[", "\\]")


def _strip(text: str) -> str:
    for w in _WRAPPERS:
        text = text.replace(w, "")
    text = text.strip()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    return text


def quick_number(text: str) -> Fraction | None:
    """``text`` as an exact fraction when it is one plain rational literal, else ``None``."""
    if len(text) > 2 * _MAX_DIGITS:
        return None
    s = _strip(text)
    if not s or sum(c.isdigit() for c in s) > _MAX_DIGITS:
        return None
    m = _PLAIN_RE.fullmatch(s)
    if m and (m.group("int") or m.group("dec")):
        whole = m.group("int") or "0"
        dec = m.group("dec") or ""
        value = Fraction(int(whole.replace(",", "") + dec), 10 ** len(dec))
        if m.group("den") is not None:
            if dec or "," in whole:
                return None  # "1.5/2" or "1,000/3": leave odd forms to the full parser
            den = int(m.group("den"))
            if den == 0:
                return None
            value = value / den
        return -value if m.group("sign") == "-" else value
    m = _FRAC_RE.fullmatch(s)
    if m:
        den = int(m.group("den"))
        if den == 0:
            return None
        value = Fraction(int(m.group("num")), den)
        return -value if m.group("sign") == "-" else value
    return None
