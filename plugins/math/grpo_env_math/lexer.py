"""Tokens of an answer written in LaTeX or plain notation.

The lexer never evaluates anything: it turns sanitised ASCII text into a flat list of tokens
(numbers, single letters, LaTeX commands, words, punctuation). Presentation-only markup
(``\\left``, ``\\,``, ``$`` ...) is dropped here. Words become tokens only when they mean something
(``or``, ``percent``, a function name) or are units (:mod:`.units`); any other word is unparsable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from grpo_env_math.guards import MAX_LITERAL_DIGITS, reject, unparsable
from grpo_env_math.units import is_unit, is_unit_phrase

# commands that only affect presentation
_NOISE_CMDS = {
    "left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "displaystyle",
    "textstyle", "quad", "qquad", "limits", "nolimits", "mathit", "boldsymbol",
}
_TEXT_CMDS = {"text", "textbf", "textrm", "textit", "mbox", "mathrm", "textnormal", "operatorname", "mathbf"}
_NOISE_SYMBOL_CMDS = {",", ";", ":", "!", " ", "$"}
# letter runs in plain text that mean something
FUNCTION_WORDS = {
    "sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "log", "ln", "exp", "sqrt", "abs",
}
KNOWN_WORDS = FUNCTION_WORDS | {"pi", "inf", "infty", "infinity", "or", "and", "percent", "oo"}
# two-letter units that would otherwise read as a product of two variables
SHORT_UNITS = {"cm", "mm", "km", "kg", "mg", "ft", "yd", "mi", "lb", "oz", "hr", "ml", "mL", "in", "am", "pm", "sq"}
# words that reverse or blur a claim: an answer containing one is not an answer
POISON_WORDS = {"not", "no", "neither", "nor", "either", "except", "maybe", "possibly"}

_NUMBER_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)")


@dataclass(frozen=True)
class Tok:
    kind: str  # num | letter | cmd | word | unit | op
    text: str
    space: bool = False  # whitespace before this token (mixed numbers "1 1/2" need it)


def _preclean(s: str) -> str:
    s = s.replace("{,}", "").replace("\\$", "").replace("\\%", "%")
    s = re.sub(r"(?<=\d)\\[,!;: ](?=\d{3}(?!\d))", "", s)  # 1\,234: a thin space between digit groups
    for d in ("\\(", "\\)", "\\[", "\\]"):
        s = s.replace(d, " ")
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = s.replace("**", "^").replace("<=", "\\le ").replace(">=", "\\ge ").replace("!=", "\\ne ")
    return s.replace("$", " ")


def _text_group(s: str, i: int) -> tuple[str, int]:
    """The content of ``{...}`` starting at ``s[i]`` (plain, one level of nesting allowed)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s) or s[i] != "{":
        raise unparsable("\\text needs a {group}")
    depth, j = 0, i
    while j < len(s):
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return s[i + 1 : j], j + 1
        j += 1
    raise unparsable("unclosed \\text{")


def _word_tokens(run: str, space: bool) -> list[Tok]:
    """A run of letters: a known word, a unit, or single-letter variables multiplied."""
    low = run.lower()
    if len(run) == 1:
        return [Tok("letter", run, space)]
    if low in KNOWN_WORDS:
        return [Tok("word", low, space)]
    if low in POISON_WORDS:
        raise unparsable(f"the answer says {run!r}")
    if run in SHORT_UNITS or (len(run) >= 3 and is_unit(run)):
        return [Tok("unit", run, space)]
    if len(run) >= 3:
        raise unparsable(f"the answer says {run!r}, which is not a unit")
    return [Tok("letter", c, space and k == 0) for k, c in enumerate(run)]


def _text_tokens(content: str, space: bool) -> list[Tok]:
    words = content.strip()
    low = words.lower()
    if not words:
        return []
    if low in ("or", "and", "percent"):
        return [Tok("word", low, space)]
    if len(words) == 1 and words.isalpha():
        return [Tok("letter", words, space)]
    if any(w in POISON_WORDS for w in re.findall(r"[a-z]+", low)):
        raise unparsable(f"the answer says {words!r}")
    if any(ch.isdigit() for ch in words) and "\\text" not in words:
        return tokenize(words)  # \text{18 dollars}: the number inside, its unit dropped later
    if is_unit_phrase(words):
        return [Tok("unit", words, space)]
    raise unparsable(f"the answer says {words[:40]!r}, which is not a unit")


def tokenize(text: str, *, thousands: bool = True) -> list[Tok]:
    """Tokens of ``text``; ``thousands`` reads ``1,234`` as one number (not a list of two)."""
    s = _preclean(text)
    toks: list[Tok] = []
    i, n = 0, len(s)
    space = False
    while i < n:
        c = s[i]
        if c.isspace() or c == "~":
            space = True
            i += 1
            continue
        if c.isdigit() or (c == "." and i + 1 < n and s[i + 1].isdigit()):
            m = _THOUSANDS_RE.match(s, i) if thousands else None
            if m is None:
                m = _NUMBER_RE.match(s, i)
            lit = m.group(0)
            if sum(ch.isdigit() for ch in lit) > MAX_LITERAL_DIGITS:
                raise reject(f"a number literal has more than {MAX_LITERAL_DIGITS} digits")
            # "18." -> 18: a trailing period ends a sentence
            toks.append(Tok("num", lit.replace(",", "").rstrip("."), space))
            i = m.end()
        elif c.isalpha():
            j = i
            while j < n and s[j].isalpha():
                j += 1
            toks.extend(_word_tokens(s[i:j], space))
            i = j
        elif c == "\\":
            m = re.compile(r"\\([A-Za-z]+|.)").match(s, i)
            if m is None:
                break
            name = m.group(1)
            i = m.end()
            if name in ("begin", "end"):
                env, i = _text_group(s, i)  # \begin{pmatrix}: the name is not a word of the answer
                toks += [Tok("cmd", name, space), Tok("op", "{"), Tok("word", env.strip()), Tok("op", "}")]
            elif name in _TEXT_CMDS:
                content, i = _text_group(s, i)
                if name in ("mathrm", "mathbf", "operatorname") and re.fullmatch(r"[A-Za-z]+", content.strip() or "-"):
                    toks.extend(_word_tokens(content.strip(), space))
                else:
                    toks.extend(_text_tokens(content, space))
            elif name in _NOISE_CMDS or name in _NOISE_SYMBOL_CMDS:
                pass
            elif name == "\\":
                toks.append(Tok("op", "\\\\", space))
            elif name in ("{", "}"):
                toks.append(Tok("op", "\\" + name, space))
            elif name == "|":
                toks.append(Tok("op", "|", space))
            else:
                toks.append(Tok("cmd", name, space))
        else:
            toks.append(Tok("op", c, space))
            i += 1
        space = False
    return toks
