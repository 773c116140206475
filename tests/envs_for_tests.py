"""Small environments for the core's episode tests (registered with register_plugin where a test needs
the registry; used directly with EpisodeHost elsewhere)."""

from __future__ import annotations

import itertools
import os
import time

from grpo_env import hookimpl
from grpo_env.environment import Environment, Episode, EpisodeFixture, Step, Tool, ToolError
from grpo_env.types import Example, Message, Outcome, Reward


def _examples(split, seed, options):
    for i in itertools.count():
        yield Example(id=f"{split}-{seed}-{i}", prompt=f"find {i % 10}", gold={"secret": str((seed + i) % 10)})


class Talk(Episode):
    """Answers every turn with a tool message and a user message; ends correct on turn 3."""

    def step(self, turn):
        if turn.number < 3:
            return Step(observations=[Message(role="tool", content=f"result {turn.number}"),
                                      Message(role="user", content="go on")])
        return Step.end(Outcome.correct())


class Secret(Episode):
    """The secret comes from the tool ``get``; a turn without a call is the answer."""

    def call_tool(self, call):
        if call.name == "get":
            return self.example.gold["secret"]
        if call.arguments["a"] < 0:
            raise ToolError("a must not be negative")
        return str(call.arguments["a"] + call.arguments["b"])

    def step(self, turn):
        ok = self.example.gold["secret"] in turn.text
        return Step.end(Outcome.correct() if ok else Outcome.incorrect())


class Answer(Episode):
    """Ends at the first turn without a tool call, with no outcome: a reward component judges."""

    def call_tool(self, call):
        return call.arguments["text"]


class Echo(Episode):
    """Hands back the example's ``say`` text (hostile text, in tests) as a tool and a user message,
    twice, then ends correct; its tool ``say`` returns the same text."""

    def call_tool(self, call):
        return self.example.gold["say"]

    def step(self, turn):
        if turn.number < 3:
            return Step(observations=[Message(role="tool", content=self.example.gold["say"]),
                                      Message(role="user", content=self.example.gold["say"])])
        return Step.end(Outcome.correct())


class Hang(Episode):
    def step(self, turn):
        time.sleep(1000)


class Crash(Episode):
    def step(self, turn):
        os._exit(3)


class Raise(Episode):
    def step(self, turn):
        raise ValueError("broken environment")


class WrongType(Episode):
    def step(self, turn):
        return "not a step"


def _contains_secret(completion: str, example: Example) -> Outcome:
    return Outcome.correct() if example.gold["secret"] in completion else Outcome.incorrect()


SECRET_TOOLS = [
    Tool(name="get", description="the secret"),
    Tool(name="add", description="a + b", parameters={"type": "object", "properties": {
        "a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}),
]
ANSWER_REWARD = Reward(name="tenv.contains", fn=_contains_secret, description="the final turn holds the secret")


def _secret_fixtures():
    ex = Example(id="f", prompt="find it", gold={"secret": "7"})
    call = '<tool_call>{"name": "get", "arguments": {}}</tool_call>'
    return [
        EpisodeFixture(example=ex, turns=[call, "it is 7"], expect="full", tool_errors=0, turns_played=2),
        EpisodeFixture(example=ex, turns=["it is 3"], expect="zero", turns_played=1),
        EpisodeFixture(example=ex, turns=['<tool_call>{"name": "get"', "7"], expect="full", tool_errors=1),
        EpisodeFixture(example=ex, turns=['<tool_call>{"name": "nope", "arguments": {}}</tool_call>', "3"],
                       expect="zero", tool_errors=1),
    ]


def environments() -> dict[str, Environment]:
    def env(name, make, **kw):
        kw.setdefault("rewards", {name: 1.0})
        return Environment(name=name, examples=_examples, make=make, **kw)

    return {e.name: e for e in [
        env("tenv_talk", Talk, max_turns=5),
        env("tenv_secret", Secret, tools=SECRET_TOOLS, max_turns=3, fixtures=_secret_fixtures),
        env("tenv_answer", Answer, rewards={"tenv.contains": 1.0},
            tools=[Tool(name="echo", parameters={"type": "object", "properties": {"text": {"type": "string"}},
                                                 "required": ["text"]})], max_turns=2),
        env("tenv_echo", Echo, tools=[Tool(name="say")], max_turns=4),
        env("tenv_hang", Hang, step_timeout=0.5, episode_timeout=5),
        env("tenv_crash", Crash),
        env("tenv_raise", Raise),
        env("tenv_wrong", WrongType),
    ]}


class Plugin:
    """The test environments as a plugin object (for register_plugin)."""

    @hookimpl
    def register_environments(self, register):
        for e in environments().values():
            register(e)

    @hookimpl
    def register_rewards(self, register):
        register(ANSWER_REWARD)


# ---------------------------------------------------------------------------------------------
# environments that fail in one phase each (tests/test_env_authoring.py)


def _make_raises(example):
    raise FileNotFoundError(f"the board of {example.id} is missing")


class SlowTool(Episode):
    """Its tool ``get`` never returns."""

    def call_tool(self, call):
        time.sleep(1000)


class RaiseLater(Episode):
    """Replies to turn 1; raises on turn 2."""

    def step(self, turn):
        if turn.number == 1:
            return Step.reply("go on")
        raise KeyError("turn two")


class RaiseInEnd(Episode):
    """Replies to every turn; its end raises."""

    def step(self, turn):
        return Step.reply("go on")

    def end(self, reason):
        raise RuntimeError(f"no outcome for {reason}")


def failing_environments() -> dict[str, Environment]:
    def env(name, make, **kw):
        return Environment(name=name, rewards={name: 1.0}, examples=_examples, make=make, **kw)

    return {e.name: e for e in [
        env("tenv_bad_make", _make_raises),
        env("tenv_slow_tool", SlowTool, tools=[Tool(name="get")], step_timeout=0.3, episode_timeout=5),
        env("tenv_slow_step", Hang, step_timeout=0.3, episode_timeout=5),
        env("tenv_raise_later", RaiseLater, max_turns=3),
        env("tenv_raise_end", RaiseInEnd, max_turns=3),
    ]}


# ---------------------------------------------------------------------------------------------
# an environment that is handed turns cut at max_new_tokens (tests/test_cut_turns.py)

CUT_REPLY = "cut: be shorter"


class Shorter(Episode):
    """Answers a cut turn with :data:`CUT_REPLY`; ends correct at the first whole turn, its outcome
    recording the cut turns it was handed. Its tool ``get`` answers ``got``."""

    def __init__(self, example):
        super().__init__(example)
        self.cuts: list[int] = []

    def call_tool(self, call):
        return "got"

    def step(self, turn):
        if turn.truncated:
            self.cuts.append(turn.number)
            return Step.reply(CUT_REPLY)
        return Step.end(Outcome.correct(cuts=self.cuts))


def cut_turn_environments() -> dict[str, Environment]:
    """``tenv_shorter`` (on_truncated="step") and ``tenv_shorter_end``, the same episode under the default "end"."""
    def env(name, **kw):
        return Environment(name=name, rewards={name: 1.0}, examples=_examples, make=Shorter,
                           tools=[Tool(name="get")], max_turns=4, **kw)

    return {e.name: e for e in [env("tenv_shorter", on_truncated="step"), env("tenv_shorter_end")]}
