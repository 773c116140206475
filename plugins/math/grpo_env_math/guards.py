"""Guards that run before any parsing: size, depth, digits and suspicious characters.

Model text is adversarial. These checks are cheap and linear, and they refuse what could make
the parser or sympy slow (huge literals, deep nesting) with a typed reason, before any sympy
object exists. Unicode is normalised where that cannot change what the answer says: invisible
format characters (zero-width, bidi controls, soft hyphens: category Cf) are removed, and
full-width, half-width and mathematical-font forms (``５``, ``𝑥``) are folded to ASCII (NFKC).
Characters whose folding would change the value (superscripts: ``18²`` is not ``182``), digits
of other scripts and look-alike letters of other scripts (a Cyrillic ``х``) are refused.
"""

from __future__ import annotations

import unicodedata

MAX_COMPLETION_CHARS = 200_000  # longer completions are refused before extraction
MAX_ANSWER_CHARS = 1_000  # an extracted final answer longer than this is not an answer
MAX_DIGITS_TOTAL = 600  # digits in one answer
MAX_NESTING = 40  # bracket/brace depth
MAX_LITERAL_DIGITS = 300  # digits of one number literal

# compatibility forms whose NFKC folding keeps the meaning (unicodedata.decomposition tags)
_FOLDABLE = ("<wide>", "<narrow>", "<font>", "<noBreak>")
# Unicode math symbols models legitimately use, mapped to the ASCII/LaTeX the parser reads.
_UNICODE_MATH = {
    "\u2212": "-", "\u2013": "-", "\u00d7": "*", "\u22c5": "*", "\u00b7": "*", "\u00f7": "/",
    "\u03c0": "\\pi ", "\u221a": "\\sqrt", "\u221e": "\\infty ", "\u00b0": "^\\circ ",
    "\u2264": "\\le ", "\u2265": "\\ge ", "\u2260": "\\ne ", "\u222a": "\\cup ", "\u00b1": "\\pm ",
    "\u2205": "\\emptyset ", "\u2208": "\\in ",
}


class Refused(Exception):
    """The answer was refused; ``status`` is ``rejected`` or ``unparsable``."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def reject(reason: str) -> Refused:
    return Refused("rejected", reason)


def unparsable(reason: str) -> Refused:
    return Refused("unparsable", reason)


def check_completion(text: str) -> None:
    """Refuse a completion that is too long to scan, or that holds NUL bytes."""
    if len(text) > MAX_COMPLETION_CHARS:
        raise reject(f"completion is {len(text)} characters (limit {MAX_COMPLETION_CHARS})")
    if "\x00" in text:
        raise reject("completion contains a NUL byte")


def sanitize_answer(text: str) -> str:
    """The answer text made plain ASCII, or :class:`Refused` with the reason.

    Removed: invisible format characters (Cf). Folded: full-width and font forms, Unicode spaces,
    a few math symbols. Refused (``rejected``): too long, control characters, lone surrogates,
    digits of other scripts or superscripts, too many digits, too deep. Refused (``unparsable``):
    any other non-ASCII character (such as a Cyrillic look-alike of a Latin letter), which the
    grammar does not know.
    """
    if len(text) > MAX_ANSWER_CHARS:
        raise reject(f"answer is {len(text)} characters (limit {MAX_ANSWER_CHARS})")
    out = []
    for ch in text:
        if ch.isascii():
            if ord(ch) < 32 and ch not in "\t\n\r":
                raise reject(f"answer contains control character U+{ord(ch):04X}")
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat == "Cf":
            continue  # zero-width, bidi controls, soft hyphen: the text reads the same without them
        if cat in ("Cc", "Co", "Cs", "Cn"):
            raise reject(f"answer contains control or unassigned character U+{ord(ch):04X}")
        if ch in _UNICODE_MATH:
            out.append(_UNICODE_MATH[ch])
            continue
        folded = unicodedata.normalize("NFKC", ch)
        if cat == "Zs" or (folded.isascii() and folded.isspace()):
            out.append(" ")
            continue
        if folded.isascii() and unicodedata.decomposition(ch).startswith(_FOLDABLE):
            out.append(folded)  # full-width digits, letters and brackets, math italic x ...
            continue
        if cat in ("Nd", "No") or folded.isdigit():
            raise reject(f"answer contains a non-ASCII digit U+{ord(ch):04X}")
        raise unparsable(f"answer contains non-ASCII character U+{ord(ch):04X}")
    s = "".join(out)
    digits = sum(c.isdigit() for c in s)
    if digits > MAX_DIGITS_TOTAL:
        raise reject(f"answer has {digits} digits (limit {MAX_DIGITS_TOTAL})")
    depth = deepest = 0
    for c in s:
        if c in "({[":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")}]":
            depth -= 1
    if deepest > MAX_NESTING:
        raise reject(f"answer nests {deepest} brackets deep (limit {MAX_NESTING})")
    return s
