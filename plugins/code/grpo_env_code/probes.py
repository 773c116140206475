"""Submissions that solve nothing, for ``grpo-env check`` to score against a code task's examples.

``code.tests`` gives the fraction of an example's tests a submission passes. When a constant
function (``return True``, ``return 0``, ``return None``, ``return []``, ``return ""`` ...) or an
echo of the first argument passes much of a suite, the reward pays for no solution at all: in a
GRPO group where nobody solves the problem, the constant is the best answer and is reinforced.
That is a property of the data, not of the reward or the sandbox, so these completions are scored
like any other (through the scoring service, in the sandbox) and ``grpo-env check`` reports how
much credit they get (``grpo_env.cli.check``: ``WEAK_MEAN``, ``WEAK_EXAMPLE``).
"""

from __future__ import annotations

from grpo_env.types import Example

# what a function that ignores its input returns: the values tests most often expect
CONSTANTS = ("True", "False", "0", "1", "None", "[]", '""', "{}")
ECHO = "echo the first argument"
# what a program that ignores its input prints
PROGRAMS = {
    "print nothing": "pass\n",
    "print 0": "print(0)\n",
    "print 1": "print(1)\n",
    "print YES": "print('YES')\n",
    "print NO": "print('NO')\n",
    "echo the input": "import sys\nsys.stdout.write(sys.stdin.read())\n",
}


def _fenced(code: str) -> str:
    return f"```python\n{code}```\n"


def probe_completions(example: Example) -> list[tuple[str, str]]:
    """``(label, completion)`` pairs that solve nothing, shaped for the example's kind: whole
    functions named as its entry point for a function problem, programs for a stdio one; none for
    anything else."""
    gold = example.gold
    if gold.get("kind") == "function" and isinstance(gold.get("entry_point"), str):
        head = f"def {gold['entry_point']}(*args, **kwargs):\n"
        out = [(f"return {c}", _fenced(f"{head}    return {c}\n")) for c in CONSTANTS]
        out.append((ECHO, _fenced(f"{head}    return args[0] if args else None\n")))
        return out
    if gold.get("kind") == "stdio":
        return [(label, _fenced(code)) for label, code in PROGRAMS.items()]
    return []
