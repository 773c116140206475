"""The ``math_python`` environment: arithmetic problems the model may work out with a ``python`` tool.

The problems are the ``math_arith`` generator's (difficulty 1 .. 5). The model may call
``python`` (argument ``code``): the code runs in the core sandbox (:mod:`grpo_env.sandbox`: no
network, no host files, a few seconds, 512 MiB) and the tool returns what it printed; a failed run
(exception, syntax error, time or memory limit) is a tool error showing its status and the tail of
stderr. A turn without a tool call is the final answer: the episode ends there with no outcome of its
own, and ``math.answer`` judges that turn's ``\\boxed{}``. An episode the core stops (turn limit,
tokens) has no final answer and gets no credit, even when a tool printed the right number.

A sandbox that cannot run at all (no isolation on this machine, a broken template process) is an
environment error (the episode is excluded from training), never the model's tool error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from grpo_env.environment import Environment, Episode, EpisodeFixture, Step, Tool, ToolCall, ToolError, Turn
from grpo_env.sandbox import Limits, default_sandbox
from grpo_env.types import Example, Message, Status
from grpo_env_math import generators as gen

NAME = "math_python"
MAX_TURNS = 4
TOOL_LIMITS = Limits(wall=3.0, cpu=3.0, memory_mb=512, max_output=1 << 16)
MAX_RUNS = 6  # python runs per episode: 6 x 3 s stays inside the step and episode deadlines
MAX_CODE_CHARS = 10_000
MAX_RESULT_CHARS = 4_000  # of stdout shown to the model
STDERR_TAIL = 800

PYTHON_TOOL = Tool(
    name="python",
    description="Run a short Python 3 program in a sandbox (no network, no files, a few seconds) and return what "
    "it prints to standard output. Use print() to see values.",
    parameters={
        "type": "object",
        "properties": {"code": {"type": "string", "description": "the Python program to run"}},
        "required": ["code"],
        "additionalProperties": False,
    },
)

INSTRUCTION = ("You may call the `python` tool to run Python code; it returns what the code prints. "
               "When you are done, reply without a tool call and end that reply with the final answer in \\boxed{}.")


class PythonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    difficulty: int = Field(1, ge=1, le=5, description="1 (a + b) .. 5 (four operations), as math_arith")
    count: int = Field(1000, ge=1, le=1_000_000, description="problems per split (fewer if a level runs out)")


def python_example(ex_id: str, question: str, answer: str, **extra: Any) -> Example:
    prompt = [Message(role="user", content=f"{question.strip()}\n\n{INSTRUCTION}")]
    # no last-number fallback: the final answer must be marked (a stray number is not an answer)
    return Example(id=ex_id, prompt=prompt, gold={"answer": answer, "last_number_fallback": False, **extra})


def examples(split: str, seed: int, options: dict[str, Any]) -> Iterator[Example]:
    d = options.get("difficulty", 1)
    for question, answer in gen.generate(NAME, gen.make_arith, d, split, seed, options.get("count", 1000)):
        yield python_example(gen.problem_id(f"{NAME}-d{d}", question), question, answer, difficulty=d)


_WHY = {"syntax_error": "the code does not compile (SyntaxError)", "runtime_error": "the code raised an exception or "
        "exited with an error", "timeout": "the code ran too long", "memory_limit": "the code used too much memory",
        "output_limit": "the code printed too much"}


def _tail(data: bytes, n: int) -> str:
    text = data[-n:].decode("utf-8", errors="replace")
    return text if len(data) <= n else "..." + text


def _traceback(stderr: bytes) -> str:
    """The tail of stderr, a traceback starting at the model's own code (the sandbox's frames left out)."""
    text = _tail(stderr, STDERR_TAIL)
    head = "Traceback (most recent call last):\n"
    at = text.find(head)
    own = text.find('  File "solution.py"', at) if at >= 0 else -1
    return text[:at + len(head)] + text[own:] if own >= 0 else text


class PythonEpisode(Episode):
    """One problem: python runs on request, the first turn without a tool call is the answer."""

    def __init__(self, example: Example):
        super().__init__(example)
        self.runs = 0

    def step(self, turn: Turn) -> Step:
        """A turn without a tool call is the final answer: math.answer judges it."""
        return Step.end()

    def call_tool(self, call: ToolCall) -> str:
        if call.name != PYTHON_TOOL.name:  # the core only passes declared tools
            raise ToolError(f"unknown tool {call.name!r}")
        code = call.arguments["code"]
        if len(code) > MAX_CODE_CHARS:
            raise ToolError(f"the code is longer than {MAX_CODE_CHARS} characters")
        if self.runs >= MAX_RUNS:
            raise ToolError(f"the python tool ran {MAX_RUNS} times in this episode already: give the final answer")
        self.runs += 1
        result = default_sandbox().run("program", {"code": code}, limits=TOOL_LIMITS)
        if result.status == "error":  # the sandbox failed, not the code: an environment error
            raise RuntimeError(f"sandbox failure: {result.detail}")
        if result.status != "ok":
            why = result.detail or _WHY.get(result.status, result.status.replace("_", " "))
            parts = [f"{result.status}: {why}"]
            if result.stderr:
                parts.append(_traceback(result.stderr))
            if result.stdout:
                parts.append("stdout before the failure:\n" + _tail(result.stdout, STDERR_TAIL))
            raise ToolError("\n".join(parts))
        out = result.stdout.decode("utf-8", errors="replace")
        if not out.strip():
            return "(the code printed nothing: print() the values you want to see)"
        if len(out) > MAX_RESULT_CHARS:
            out = out[:MAX_RESULT_CHARS] + f"\n[... {len(out) - MAX_RESULT_CHARS} more characters]"
        return out


def make_episode(example: Example) -> Episode:
    return PythonEpisode(example)


def _call(code: str, name: str = "python") -> str:
    import json

    return "<tool_call>" + json.dumps({"name": name, "arguments": {"code": code}}) + "</tool_call>"


def fixtures() -> list[EpisodeFixture]:
    ex = python_example(f"{NAME}-fixture", "What is 17 * 23 + 5?", "396", difficulty=3)
    compute = _call("print(17 * 23 + 5)")
    final = "The program printed 396.\n\\boxed{396}"
    F = EpisodeFixture
    return [
        F(example=ex, turns=[compute, final], expect="full", tool_errors=0, turns_played=2,
          note="a python call, then the boxed answer"),
        F(example=ex, turns=["17 * 23 + 5 = 396, so \\boxed{396}"], expect="full", tool_errors=0, turns_played=1,
          note="no tool needed: the answer at once"),
        F(example=ex, turns=["\\boxed{395}"], expect="zero", tool_errors=0, turns_played=1, note="wrong answer"),
        F(example=ex, turns=[compute, "So the answer is 396."], expect="full", tool_errors=0, turns_played=2,
          note="'the answer is' marks an answer too"),
        F(example=ex, turns=[compute, "I computed it above: 396"], expect=Status.UNPARSABLE, tool_errors=0,
          turns_played=2, note="an unmarked number is not a final answer (no last-number fallback)"),
        F(example=ex, turns=['<tool_call>{"name": "python", "arguments": {"code": "print(1)"}</tool_call>', final],
          expect="full", tool_errors=1, turns_played=2, note="a call that is not valid JSON is a tool error"),
        F(example=ex, turns=[_call("print(17 * 23 + 5)", name="calculator"), final], expect="full", tool_errors=1,
          turns_played=2, note="an unknown tool is a tool error"),
        F(example=ex, turns=['<tool_call>{"name": "python", "arguments": {"code": 396}}</tool_call>', final],
          expect="full", tool_errors=1, turns_played=2, note="an argument of the wrong type is a tool error"),
        F(example=ex, turns=['<tool_call>{"name": "python", "arguments": {}}</tool_call>' + compute, final],
          expect="full", tool_errors=1, turns_played=2, note="a call missing its argument, then a good one"),
        F(example=ex, turns=[_call("print(17 * 23 + 5"), _call("raise ValueError('no')"), compute, final],
          expect="full", tool_errors=2, turns_played=4, note="code that does not parse or raises is a tool error"),
        F(example=ex, turns=[compute] * 4, expect="zero", tool_errors=0, turns_played=4,
          note="the right number printed by a tool at the turn limit is no final answer"),
        F(example=ex, turns=[compute], expect="zero", tool_errors=0, turns_played=1,
          note="the script ends on a tool call: no final answer, no credit"),
    ]


def python_environment() -> Environment:
    return Environment(
        name=NAME,
        description="Procedural arithmetic (math_arith's problems) with a sandboxed `python` tool; the final "
        "answer in \\boxed{} is judged by math.answer",
        rewards={"math.answer": 1.0},
        examples=examples,
        options=PythonOptions,
        make=make_episode,
        tools=[PYTHON_TOOL],
        max_turns=MAX_TURNS,
        step_timeout=30.0,  # at most MAX_RUNS sandbox runs of 3 s, plus the sandbox's start
        episode_timeout=60.0,
        fixtures=fixtures,
        outcome_range=(0.0, 0.0),  # no credit of its own: math.answer pays the final answer
        outcome_statuses=(Status.INCORRECT,),  # only for an episode the core stopped (no final answer)
    )
