"""The words an answer may carry after its number and still be that number: units and the things
counted in the plugin's own word problems. Every other word makes the answer unparsable.

Dropping an arbitrary word is a false positive waiting to happen: ``18 thousand`` is not 18 and
``7 is wrong`` is not a claim that the answer is 7. So this is an allow-list, and a word that
scales or negates a value (thousand, dozen, half, percent, not) is never on it. Units are dropped,
not converted: ``5 cm`` equals 5 whatever unit the problem asked for.
"""

from __future__ import annotations

import re

UNIT_WORDS = frozenset("""
    dollar cent euro pound yen rupee usd
    unit square sq cubic
    m cm mm km meter metre centimeter centimetre millimeter millimetre kilometer kilometre
    in inch inches ft foot feet yd yard mi mile mph kph kmh
    g mg kg gram kilogram lb lbs ounce oz ton tonne
    l ml liter litre milliliter millilitre gallon quart pint cup
    s sec second min minute h hr hrs hour day week month year
    degree deg radian rad
    apple sticker marble pencil cookie stamp shell book card bead
    item piece person people student child children kid page point
""".split())

_WORD_RE = re.compile(r"[A-Za-z]+")
_SEPARATORS = set(" .-/")  # "sq. units", "km/h"


def is_unit(word: str) -> bool:
    """Whether ``word`` (any case, singular or plural) is on the allow-list."""
    w = word.lower()
    return w in UNIT_WORDS or (w.endswith("s") and w[:-1] in UNIT_WORDS) or (w.endswith("es") and w[:-2] in UNIT_WORDS)


def is_unit_phrase(text: str) -> bool:
    """Whether ``text`` (the inside of a ``\\text{}``) is made of unit words only."""
    return bool(_WORD_RE.search(text)) and all(c.isalpha() or c in _SEPARATORS for c in text) \
        and all(is_unit(w) for w in _WORD_RE.findall(text))
