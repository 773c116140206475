"""The data types every plugin and the core share: examples, reward outcomes, tasks, rewards.

A *task* yields examples (a chat prompt plus the gold data its rewards need) and names the reward
components that score a completion, with weights. A *reward* is a function
``fn(completion, example) -> Outcome``: a finite score plus a status from a fixed vocabulary.
"""

from __future__ import annotations

import difflib
import math
import re
from enum import Enum
from typing import Any, Callable, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\Z")  # \Z: "$" would let a trailing newline through


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(
            f"{kind} name {name!r} is invalid: use lower-case letters, digits, '_' and '.', "
            "starting with a letter (e.g. 'math' or 'format.strict')"
        )
    return name


class Status(str, Enum):
    """The fixed vocabulary of reward outcomes.

    Model-caused results carry a score (``correct`` .. ``syntax_error``). ``error`` is an
    infrastructure failure (a reward raised, returned garbage, or its worker died) and
    ``not_applicable`` means the item cannot be judged (e.g. the gold answer does not parse):
    both are excluded from training signal, never counted as 0.
    """

    CORRECT = "correct"
    PARTIAL = "partial"  # some credit: a fraction of unit tests, a soft format match, a penalty
    INCORRECT = "incorrect"
    UNPARSABLE = "unparsable"  # no answer could be extracted from the completion
    REJECTED = "rejected"  # the answer was refused by a safety guard before any work (too big, too deep)
    TIMEOUT = "timeout"  # the check ran past its hard deadline
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    RUNTIME_ERROR = "runtime_error"  # the model's code raised
    SYNTAX_ERROR = "syntax_error"  # the model's code does not compile
    ERROR = "error"  # infrastructure failure: never a silent 0
    NOT_APPLICABLE = "not_applicable"

    def __str__(self) -> str:  # so f-strings and tables print "correct", not "Status.CORRECT"
        return self.value

    @property
    def excluded(self) -> bool:
        """True when an outcome with this status carries no training signal."""
        return self in (Status.ERROR, Status.NOT_APPLICABLE)


class Outcome(BaseModel):
    """What one reward says about one completion."""

    model_config = ConfigDict(frozen=True)

    score: float
    status: Status
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("score")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"score must be finite, got {v!r}")
        return float(v)

    # Short constructors for reward authors.
    @classmethod
    def correct(cls, score: float = 1.0, **details: Any) -> "Outcome":
        return cls(score=score, status=Status.CORRECT, details=details)

    @classmethod
    def incorrect(cls, score: float = 0.0, **details: Any) -> "Outcome":
        return cls(score=score, status=Status.INCORRECT, details=details)

    @classmethod
    def partial(cls, score: float, **details: Any) -> "Outcome":
        return cls(score=score, status=Status.PARTIAL, details=details)

    @classmethod
    def unparsable(cls, score: float = 0.0, **details: Any) -> "Outcome":
        return cls(score=score, status=Status.UNPARSABLE, details=details)

    @classmethod
    def of(cls, status: Status | str, score: float = 0.0, **details: Any) -> "Outcome":
        return cls(score=score, status=Status(status), details=details)

    @classmethod
    def error(cls, message: str, **details: Any) -> "Outcome":
        return cls(score=0.0, status=Status.ERROR, details={"error": message, **details})

    @classmethod
    def not_applicable(cls, reason: str, **details: Any) -> "Outcome":
        return cls(score=0.0, status=Status.NOT_APPLICABLE, details={"reason": reason, **details})


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]  # "tool": a tool's result in an episode
    content: str


class Example(BaseModel):
    """One prompt of a task, with the gold data its rewards need (JSON-serialisable)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    prompt: list[Message]
    gold: dict[str, Any] = Field(default_factory=dict)
    task: str = ""  # filled in by the core when the example comes out of a registered task
    tools: list[dict[str, Any]] = Field(default_factory=list)  # an environment's tool specs, filled in by the core

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_from_text(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [{"role": "user", "content": v}]
        return v

    @field_validator("prompt")
    @classmethod
    def _nonempty(cls, v: list[Message]) -> list[Message]:
        if not v:
            raise ValueError("prompt must hold at least one message")
        return v


Expectation = Literal["full", "zero"] | Status


class Fixture(BaseModel):
    """A known completion for an example and what the task must say about it.

    ``expect`` is ``"full"`` (every reward of the task at its maximum), ``"zero"`` (the weighted
    total is 0, or the one named ``reward`` scores 0), or a :class:`Status` the named ``reward``
    (default: the task's first reward) must report.
    """

    model_config = ConfigDict(extra="forbid")

    example: Example
    completion: str
    expect: Expectation
    reward: str | None = None
    note: str = ""


ExamplesFn = Callable[[str, int, dict[str, Any]], Iterable[Example]]
RowFn = Callable[[dict[str, Any], dict[str, Any]], Example]


class Task(BaseModel):
    """A source of prompts plus the reward components that judge completions.

    ``examples(split, seed, options)`` must be deterministic for a (split, seed, options); it may be
    finite (a dataset) or endless (a generator). ``from_row(row, options)`` turns a row of a JSONL
    file (the example's fields plus anything else) into an :class:`Example`, for ``grpo-env score``;
    the default takes ``id``, ``prompt`` and puts every other field except ``completion`` in ``gold``.
    ``options`` is a pydantic model class validating the per-task options a recipe may pass.
    ``optional`` names reward components (keys of ``rewards``) that come from a plugin which may be
    absent: when none registers one, it is left out of the task with a warning instead of dropping
    the task.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    description: str = ""
    rewards: dict[str, float]
    examples: ExamplesFn
    from_row: RowFn | None = None
    fixtures: list[Fixture] | Callable[[], list[Fixture]] = Field(default_factory=list)
    options: type[BaseModel] | None = None
    splits: tuple[str, ...] = ("train", "test")
    optional: tuple[str, ...] = ()  # components of `rewards` that may be absent (left out with a warning)
    flagged: Callable[[dict[str, Any]], list[str]] | None = None  # flagged(options): why its reward is untrustworthy with them
    canaries: Callable[[], list[Example]] | None = None  # impossible examples: any credit on one is a hack
    probes: Callable[[Example], list[tuple[str, str]]] | None = None  # (label, completion)s that solve nothing: check reports what they earn

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name("task", v)

    @field_validator("rewards")
    @classmethod
    def _rewards(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("a task must name at least one reward component")
        for name, weight in v.items():
            check_name("reward", name)
            if not math.isfinite(weight):
                raise ValueError(f"weight of reward {name!r} must be finite")
        return v

    @model_validator(mode="after")
    def _optional_in_rewards(self) -> "Task":
        unknown = [n for n in self.optional if n not in self.rewards]
        if unknown:
            raise ValueError(f"optional reward(s) {unknown} are not in the task's rewards {sorted(self.rewards)}")
        return self

    def get_fixtures(self) -> list[Fixture]:
        return list(self.fixtures() if callable(self.fixtures) else self.fixtures)

    def parse_options(self, options: dict[str, Any] | None) -> dict[str, Any]:
        """Validate per-task options (unknown keys are errors when an options model is declared)."""
        options = dict(options or {})
        if self.options is None:
            if options:
                raise ValueError(f"task {self.name!r} takes no options, got {sorted(options)}")
            return {}
        try:
            return self.options.model_validate(options).model_dump()
        except ValidationError as e:
            raise OptionsError(explain_options(self.options, e)) from None

    def example_from_row(self, row: dict[str, Any], options: dict[str, Any] | None = None) -> Example:
        opts = self.parse_options(options)
        if self.from_row is not None:
            ex = self.from_row(row, opts)
        else:
            fields = {k: v for k, v in row.items() if k not in ("id", "prompt", "completion", "turns", "task")}
            ex = Example(id=str(row.get("id", "")), prompt=row.get("prompt", ""), gold=fields)
        return ex.model_copy(update={"task": self.name})


class OptionsError(ValueError):
    """A task's options do not validate: which option and why (a close name for a misspelled one)."""


def explain_options(model: type[BaseModel], e: ValidationError) -> str:
    """A pydantic error about task options in a line: an unknown option with the close name it may
    be a misspelling of (``difflib``), a bad value with the option's name, and the options there are."""
    known = list(model.model_fields)
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
            hint = difflib.get_close_matches(loc, known, n=1)
            parts.append(f"unknown option {loc!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        elif loc:
            got = "" if err["type"] == "missing" else f" (got {repr(err.get('input'))[:80]})"
            parts.append(f"option {loc!r}: {err['msg']}{got}")
        else:
            parts.append(err["msg"])
    return "; ".join(parts) + f"; the options are {', '.join(known) or 'none'}"


class Reward(BaseModel):
    """A named reward component: ``fn(completion, example) -> Outcome``.

    ``fn`` must be a module-level function (it runs in scoring worker processes). ``timeout`` is
    the hard deadline in seconds for one call, enforced by killing the worker. ``max_score`` is the
    best score it can give (1.0 for a check, 0.0 for a penalty), used by fixtures' ``"full"``.

    The rest describes the reward for people (``grpo-env rewards``, docs/rewards.md): ``description``
    says what it checks, ``gold_keys`` which ``example.gold`` keys it reads (key -> meaning),
    ``min_score`` its worst score and ``statuses`` the statuses it reports (``error`` is always
    possible: it is how the boundary reports a reward that failed).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    fn: Callable[[str, Example], Outcome]
    description: str = ""
    timeout: float = Field(default=5.0, gt=0)
    max_score: float = 1.0
    min_score: float | None = None  # None: not declared
    gold_keys: dict[str, str] = Field(default_factory=dict)
    statuses: tuple[Status, ...] = ()
    strict: str | None = None  # a stricter registered reward (no fallback, more tests) that re-verifies a sample

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name("reward", v)

    @model_validator(mode="after")
    def _range(self) -> "Reward":
        if self.min_score is not None and self.min_score > self.max_score:
            raise ValueError(f"reward {self.name!r}: min_score {self.min_score} exceeds max_score {self.max_score}")
        return self


EXTRACTION = "extraction"  # Outcome.details key: how the answer was found, "strict" or "fallback"


class Monitor(BaseModel):
    """A reward-hacking monitor: ``fn(completion, example) -> {signal: value}`` for one completion,
    each value in [0, 1] (1: the sign is there). It watches; it never pays: its signals are logged
    per step and task (a step's value is the mean over the task's completions) and raise alarms past
    their ``thresholds``, and they never enter a reward (optimising against a monitor teaches the
    policy to hide). Like a reward it runs in a scoring worker, under ``timeout``.

    ``signals`` says what each signal means; ``thresholds`` (signal -> step mean) are the default
    alarm levels, which a recipe's ``[monitor] thresholds`` overrides; ``rewards`` limits the monitor
    to tasks that weigh one of these rewards (empty: every single-turn task).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    fn: Callable[[str, Example], dict[str, float]]
    signals: dict[str, str]
    description: str = ""
    thresholds: dict[str, float] = Field(default_factory=dict)
    rewards: tuple[str, ...] = ()
    timeout: float = Field(default=2.0, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name("monitor", v)

    @model_validator(mode="after")
    def _thresholds(self) -> "Monitor":
        for sig in self.signals:
            if not NAME_RE.match(sig) or "." in sig:
                raise ValueError(f"monitor {self.name!r}: signal name {sig!r} is invalid: lower-case letters, digits, '_'")
        unknown = set(self.thresholds) - set(self.signals)
        if unknown:
            raise ValueError(f"monitor {self.name!r}: thresholds for unknown signals {sorted(unknown)}")
        bad = {k: v for k, v in self.thresholds.items() if not (math.isfinite(v) and 0 <= v <= 1)}
        if bad:
            raise ValueError(f"monitor {self.name!r}: thresholds must be in [0, 1], got {bad}")
        return self


class Scored(BaseModel):
    """The judgement of one completion of one example: every component and the weighted total.

    ``total`` is NaN when the completion carries no signal (a component reported ``error``, or
    every component was ``not_applicable``); the engine leaves such completions out of advantages.
    """

    total: float
    status: Status
    components: dict[str, Outcome]
