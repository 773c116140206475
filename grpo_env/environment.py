"""The environment contract: multi-turn episodes in which the model acts and the environment answers.

An :class:`Environment` is a task whose examples are played as *episodes*. The core creates one
:class:`Episode` per episode with ``make(example)`` (in a process of its own, see
:mod:`grpo_env.episodes`), and for each assistant turn either

- runs the turn's tool calls (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, parsed
  by the core, :mod:`grpo_env.tools`) through :meth:`Episode.call_tool`, each result or error going
  back to the model as a ``tool`` message; or
- when the turn calls no tool, hands it to :meth:`Episode.step`, which answers with observation
  messages (feedback), or ends the episode with its :class:`~grpo_env.types.Outcome`.

The episode is judged by the environment's outcome (weighted under the environment's own name in
``rewards``) and/or registered reward components applied to the final assistant turn, combined like
a task's. A single-turn task is the one-turn case: its episode ends after the first turn.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from grpo_env.types import Example, Expectation, Message, Outcome, Status, Task

TOOL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


class Tool(BaseModel):
    """A function the model may call: a name, what it does, and its arguments as a JSON schema object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not TOOL_NAME_RE.match(v):
            raise ValueError(f"tool name {v!r} is invalid: letters, digits and '_', at most 64, not starting with a digit")
        return v

    @field_validator("parameters")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("type") != "object" or not isinstance(v.get("properties", {}), dict):
            raise ValueError('parameters must be a JSON schema object: {"type": "object", "properties": {...}}')
        unknown = [r for r in v.get("required", []) if r not in v.get("properties", {})]
        if unknown:
            raise ValueError(f"required argument(s) {unknown} are not in properties")
        return v

    def spec(self) -> dict[str, Any]:
        """The OpenAI-style function spec that chat templates take in ``tools=``."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                  "parameters": self.parameters}}


class ToolCall(BaseModel):
    """A well-formed call the core parsed from an assistant turn (arguments checked against the schema)."""

    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict[str, Any]


class ToolError(Exception):
    """Raised by a tool for a failure the model should see (bad input, nothing found); the message
    goes back as the tool's result. Any other exception is an environment error."""


class Turn(BaseModel):
    """One assistant turn as the environment sees it."""

    model_config = ConfigDict(frozen=True)

    number: int  # 1 for the first turn
    text: str  # the model's text (for turn 1 after the prompt's prefill, if any)
    truncated: bool = False  # cut at max_new_tokens (only with ``on_truncated="step"``): the text stops mid-turn


class Step(BaseModel):
    """The environment's answer to a turn: observations for the model, or the end of the episode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    observations: list[Message] = Field(default_factory=list)
    done: bool = False
    outcome: Outcome | None = None  # with done: the environment's judgement (None: judged by components alone)

    @model_validator(mode="after")
    def _shape(self) -> "Step":
        if self.outcome is not None and not self.done:
            raise ValueError("an outcome ends the episode: set done=True with it")
        if not self.done and not self.observations:
            raise ValueError("a step that does not end the episode must give the model observations")
        if any(m.role in ("assistant", "system") for m in self.observations):
            raise ValueError("observations are 'user' or 'tool' messages")
        return self

    @classmethod
    def reply(cls, text: str, role: str = "user") -> "Step":
        return cls(observations=[Message(role=role, content=text)])

    @classmethod
    def end(cls, outcome: Outcome | None = None) -> "Step":
        return cls(done=True, outcome=outcome)


class Episode:
    """Subclass this: one episode of an environment, created by ``Environment.make(example)``.

    It runs in a process of its own, so it may keep any state; it must be deterministic for its
    example and the turns it is given (``grpo-env check`` plays every fixture twice).
    """

    def __init__(self, example: Example):
        self.example = example

    def step(self, turn: Turn) -> Step:
        """A turn without tool calls: reply with observations, or end the episode. Under the
        environment's ``on_truncated="step"``, also a turn cut at ``max_new_tokens``
        (``turn.truncated``), tool calls or not."""
        return Step.end()

    def call_tool(self, call: ToolCall) -> str:
        """Run one tool call (its arguments already match the tool's schema); return the result text.
        Raise :class:`ToolError` for a failure the model should read."""
        raise ToolError(f"tool {call.name!r} is not implemented by this environment")

    def end(self, reason: str) -> Outcome:
        """The outcome of an episode the core stopped (``reason``: ``turns``, ``tokens``, ``truncated``); no
        credit by default."""
        return Outcome.incorrect(reason=reason)


SCORE_TOLERANCE = 1e-6  # how far an episode's reward may be from a fixture's ``score``


class EpisodeFixture(BaseModel):
    """A scripted episode: the assistant's turns and what the episode must score.

    ``expect`` is ``"full"``, ``"zero"`` or a status (of the episode's primary component), as for a
    task's fixtures; ``score`` (when given) the episode's reward, the total the trainer uses (within
    :data:`SCORE_TOLERANCE`); ``observations_contain`` strings that must each appear in some message
    the environment sent the model (a tool result or feedback); ``tool_errors`` the number of
    malformed or failed tool calls the core must count, and ``turns_played`` the number of turns
    before the episode ended.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    example: Example
    turns: list[str]
    expect: Expectation
    score: float | None = None
    observations_contain: list[str] = Field(default_factory=list)
    tool_errors: int | None = None
    turns_played: int | None = None
    note: str = ""

    @field_validator("turns")
    @classmethod
    def _turns(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("a scripted episode needs at least one assistant turn")
        return v

    @field_validator("observations_contain")
    @classmethod
    def _needles(cls, v: list[str]) -> list[str]:
        if any(not s for s in v):
            raise ValueError("observations_contain holds an empty string, which every observation contains")
        return v


class Environment(Task):
    """A task played as episodes. ``rewards`` may name the environment itself (its own outcome)
    and registered rewards (applied to the final assistant turn).

    ``make(example) -> Episode`` creates an episode; ``tools`` are offered to the model (through the
    chat template when it supports tools, else in the system prompt: :mod:`grpo_env.tools`).
    ``max_turns`` caps assistant turns (``turn_limit(example)`` may lower it per example); ``step_timeout`` is the hard deadline of one turn's
    environment work (tool calls included) and ``episode_timeout`` of the whole episode's; past
    either the episode ends with status ``timeout``.

    ``outcome_range`` (lowest, highest score) and ``outcome_statuses`` describe the environment's own
    outcome, as a reward's ``min_score``/``max_score`` and ``statuses`` do (``grpo-env rewards NAME``
    prints them; ``grpo-env check`` fails a scripted episode whose outcome falls outside them).
    ``error``, ``timeout`` and ``not_applicable`` (no outcome given) are always possible.

    ``on_truncated``: what a turn cut at ``max_new_tokens`` (no end-of-turn token) does. ``"end"``
    (the default): the core ends the episode, ``truncated`` (:meth:`Episode.end` judges it).
    ``"step"``: the cut turn goes to :meth:`Episode.step` as it is, with ``turn.truncated`` set (its
    tool calls are not run), so the environment may answer ("your answer was cut: be shorter") or
    end the episode; the training sequence keeps the cut turn's sampled ids, closed by the
    end-of-turn token the core adds (not trained on), then the environment's increment.
    """

    make: Callable[[Example], Episode]
    tools: list[Tool] = Field(default_factory=list)
    max_turns: int = Field(default=4, ge=1, le=64)
    turn_limit: Callable[[Example], int] | None = None  # an example's own limit (e.g. from an option), at most max_turns
    step_timeout: float = Field(default=10.0, gt=0)
    episode_timeout: float = Field(default=60.0, gt=0)
    fixtures: list[EpisodeFixture] | Callable[[], list[EpisodeFixture]] = Field(default_factory=list)  # type: ignore[assignment]
    outcome_range: tuple[float, float] = (0.0, 1.0)  # the lowest and highest score of its own outcome
    outcome_statuses: tuple[Status, ...] = ()  # the statuses its own outcome reports (empty: not declared)
    on_truncated: Literal["end", "step"] = "end"  # a turn cut at max_new_tokens: ends the episode, or goes to step()

    @model_validator(mode="after")
    def _outcome_range(self) -> "Environment":
        low, high = self.outcome_range
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ValueError(f"environment {self.name!r}: outcome_range {self.outcome_range} must be two finite "
                             "scores, the lowest first")
        return self

    @model_validator(mode="after")
    def _tools_unique(self) -> "Environment":
        names = [t.name for t in self.tools]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"environment {self.name!r} declares tool(s) {dup} twice")
        return self

    def get_fixtures(self) -> list[EpisodeFixture]:  # type: ignore[override]
        return list(self.fixtures() if callable(self.fixtures) else self.fixtures)

    @property
    def components(self) -> dict[str, float]:
        """The registered reward components of ``rewards`` (every key but the environment's own name)."""
        return {k: w for k, w in self.rewards.items() if k != self.name}

    def turns_for(self, example: Example) -> int:
        """The turn limit of ``example``'s episode."""
        if self.turn_limit is None:
            return self.max_turns
        return max(1, min(self.max_turns, int(self.turn_limit(example))))

    def tool_specs(self) -> list[dict[str, Any]]:
        return [t.spec() for t in self.tools]


def is_environment(task: Task) -> bool:
    return isinstance(task, Environment)


__all__ = ["Environment", "Episode", "EpisodeFixture", "Message", "Step", "Tool", "ToolCall", "ToolError", "Turn",
           "is_environment"]
