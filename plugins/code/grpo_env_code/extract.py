"""Turning a completion into a program: fenced blocks, raw code, bodies that continue a prompt.

- A completion with fenced blocks: the last ```python (or ```py / ```python3) block by default,
  else the last unlabeled block. A block that defines the entry point is a whole solution (the
  prompt's imports are put in front); otherwise it is a body continuing the prompt.
- A completion without fences: a whole solution when it defines the entry point at column 0,
  else a body continuing the prompt (HumanEval style), re-indented when the model dropped the
  indentation.

Everything here runs in the trusted scoring worker on model text, so it is a single pass over the
lines with string methods (no regular expression that could backtrack over the completion), and a
completion with more than ``MAX_FENCES`` opening fences is no answer at all.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

PY_LABELS = {"python", "py", "python3", "py3"}
LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-")
MAX_CODE_CHARS = 100_000
MAX_FENCES = 1000  # opening fences a completion may hold; an honest answer has a handful


class TooManyFences(ValueError):
    """The completion opens more than ``MAX_FENCES`` fenced blocks."""


@dataclass(frozen=True)
class Program:
    code: str
    how: str  # "fenced", "fenced_body", "raw", "body", "body_reindented", "empty", "too_long", "too_many_fences"


def fence_label(line: str) -> str | None:
    """The lowercased label of a fence line (```, after optional spaces and tabs), or None.

    The label is the run of letters, digits, ``_+-`` after the backticks (and optional spaces);
    anything after it is ignored: "``` Python3 {.x}" is labeled "python3", "````py" is unlabeled.
    """
    rest = line.lstrip(" \t")
    if not rest.startswith("```"):
        return None
    rest = rest[3:].lstrip(" \t")
    n = 0
    while n < len(rest) and rest[n] in LABEL_CHARS:
        n += 1
    return rest[:n].lower()


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(label, body) of every complete fenced block, in order, in one pass over the lines.

    A block opens on a fence line that ends with a newline and closes at the next line that is
    only ``` (spaces and tabs around it allowed); lines in between, fence lines included, are its
    body. An unclosed block is no block. Raises :class:`TooManyFences` past ``MAX_FENCES`` openers.
    """
    blocks: list[tuple[str, str]] = []
    label: str | None = None  # the open block's label; None outside a block
    body_start = pos = opened = 0
    for line in text.split("\n"):
        end = pos + len(line)  # where this line's newline is (len(text) on the last line)
        if label is None:
            label = fence_label(line) if end < len(text) else None
            if label is not None:
                opened += 1
                if opened > MAX_FENCES:
                    raise TooManyFences(f"more than {MAX_FENCES} fenced blocks")
                body_start = end + 1
        elif line.strip(" \t") == "```":
            blocks.append((label, text[body_start:pos]))
            label = None
        pos = end + 1
    return blocks


def pick_block(text: str, which: str = "last") -> str | None:
    """The python block to grade (``which``: ``last`` or ``first``); unlabeled blocks only when
    no block is labeled python."""
    blocks = fenced_blocks(text)
    if not blocks:
        return None
    chosen = [b for label, b in blocks if label in PY_LABELS] or [b for label, b in blocks if label == ""]
    if not chosen:
        return None
    return chosen[-1] if which == "last" else chosen[0]


def _after_keyword(line: str, keyword: str) -> str | None:
    """What follows ``keyword`` and at least one space or tab at the start of ``line``, or None."""
    rest = line[len(keyword):]
    if line.startswith(keyword) and rest[:1] in (" ", "\t"):
        return rest.lstrip(" \t")
    return None


def defines(code: str, name: str) -> bool:
    """Whether ``code`` defines ``name`` at top level: a line that starts ``def name(``,
    ``async def name(``, ``class name`` or ``name =`` (spaces and tabs allowed between)."""
    for line in code.split("\n"):
        after_async = _after_keyword(line, "async")
        func = _after_keyword(line if after_async is None else after_async, "def")
        if func is not None and func.startswith(name) and func[len(name):].lstrip(" \t").startswith("("):
            return True
        cls = _after_keyword(line, "class")
        if cls is not None and cls.startswith(name):
            nxt = cls[len(name):len(name) + 1]
            if not (nxt.isalnum() or nxt == "_"):
                return True
        if line.startswith(name) and line[len(name):].lstrip(" \t").startswith("="):
            return True
    return False


def prompt_imports(prompt: str) -> str:
    """The top-level import lines of a function prompt (a whole solution may rely on them)."""
    return "".join(line + "\n" for line in prompt.splitlines() if re.match(r"(import|from)\s+\w", line))


def parses(code: str) -> bool:
    """Whether ``code`` compiles (not just parses: ``return`` outside a function must fail)."""
    try:
        compile(code, "<completion>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
        return False
    return True


def continue_prompt(prompt: str, body: str) -> Program:
    """The prompt followed by a body; re-indented by four spaces when that is what makes it parse."""
    if not prompt.endswith("\n"):
        prompt += "\n"
    plain = prompt + body
    if all(line[:1] in (" ", "\t") for line in body.splitlines() if line.strip()):
        return Program(plain, "body")  # every line indented, as a body is: no parse needed
    if parses(plain):
        return Program(plain, "body")
    fixed = prompt + textwrap.indent(textwrap.dedent(body), "    ")
    if parses(fixed):
        return Program(fixed, "body_reindented")
    return Program(plain, "body")


def extract_program(completion: str, *, prompt: str = "", entry_point: str | None = None, which: str = "last") -> Program:
    """The program to run for ``completion`` (see the module docstring)."""
    if len(completion) > MAX_CODE_CHARS:
        return Program("", "too_long")
    try:
        block = pick_block(completion, which)
    except TooManyFences:
        return Program("", "too_many_fences")
    if block is not None:
        if entry_point is None or defines(block, entry_point) or not prompt:
            return Program(prompt_imports(prompt) + block, "fenced")
        return Program(continue_prompt(prompt, block).code, "fenced_body")
    text = completion
    if not text.strip():
        return Program("", "empty")
    if entry_point is None or not prompt or defines(text, entry_point):
        return Program(prompt_imports(prompt) + text, "raw")
    return continue_prompt(prompt, text)
