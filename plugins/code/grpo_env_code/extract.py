"""Turning a completion into a program: fenced blocks, raw code, bodies that continue a prompt.

- A completion with fenced blocks: the last ```python (or ```py / ```python3) block by default,
  else the last unlabeled block. A block that defines the entry point is a whole solution (the
  prompt's imports are put in front); otherwise it is a body continuing the prompt.
- A completion without fences: a whole solution when it defines the entry point at column 0,
  else a body continuing the prompt (HumanEval style), re-indented when the model dropped the
  indentation.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.DOTALL | re.MULTILINE)
PY_LABELS = {"python", "py", "python3", "py3"}
MAX_CODE_CHARS = 100_000


@dataclass(frozen=True)
class Program:
    code: str
    how: str  # "fenced", "fenced_body", "raw", "body", "body_reindented", "empty", "too_long"


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(label, body) of every complete fenced block, in order."""
    return [(m.group(1).lower(), m.group(2)) for m in FENCE.finditer(text)]


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


def defines(code: str, name: str) -> bool:
    """Whether ``code`` defines ``name`` at top level (a def, a class or an assignment)."""
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(|^class\s+{re.escape(name)}\b|^{re.escape(name)}\s*=",
                     code, re.MULTILINE) is not None


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
    block = pick_block(completion, which)
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
