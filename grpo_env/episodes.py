"""Episodes on the host side: each episode's environment in a process of its own, under deadlines.

Environment code is plugin code fed model text, so it runs like a reward: out of the trainer's
process, behind a hard deadline. Each episode gets a forked process (an environment keeps state
between turns; one process per episode means a hung or crashed episode takes down nothing but
itself). A turn's environment work (the tool calls, or :meth:`Episode.step`) must finish within the
environment's ``step_timeout`` and the episode's total within ``episode_timeout`` (each plus
``grace``); past either the process is killed and the episode ends ``timeout``. A process that dies
or an environment that raises or answers with the wrong type ends the episode ``error`` (no
training signal, never a silent 0). At most ``workers`` environment steps run at once.

:class:`EpisodeHost` is what the engine's rollout (:mod:`grpo_env.engine.rollout`) talks to: it opens
a batch of episodes, steps the unfinished ones with the model's turns, and judges them at the end
(the environment's outcome and reward components on the final turn, through
:class:`~grpo_env.scoring.ScoringService`, combined with the same ``combine`` as tasks).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Mapping, Sequence

from grpo_env.environment import Environment, Episode, Step, ToolCall, ToolError, Turn
from grpo_env.rewards import combine
from grpo_env.scoring import _plain, serve
from grpo_env.text import plain
from grpo_env.tools import CallError, parse_calls
from grpo_env.types import Example, Message, Outcome, Scored, Status

MAX_OBSERVATION_CHARS = 8_000  # one observation message, cut beyond (the cut is said in the text)
MAX_TOOL_OUTPUTS = 8  # tool results an episode keeps to tell whether its final answer copies one


# ---------------------------------------------------------------------------------------------
# inside the episode's process


def _cut(text: str) -> str:
    if len(text) <= MAX_OBSERVATION_CHARS:
        return text
    return text[:MAX_OBSERVATION_CHARS] + f"\n[... cut: {len(text) - MAX_OBSERVATION_CHARS} more characters]"


def _outcome_data(o: Outcome) -> tuple[float, str, dict]:
    return o.score, o.status.value, _plain(o.details)


def play_turn(episode: Episode, env: Environment, number: int, text: str, truncated: bool = False) -> dict[str, Any]:
    """One assistant turn: its tool calls run (each result or error an observation), or, without
    calls, the environment's step. A ``truncated`` turn (cut at max_new_tokens, under the
    environment's ``on_truncated="step"``) always goes to the step, its calls not run. Returns plain
    data: observations, done, outcome, counts."""
    calls = parse_calls(text, env.tools) if env.tools and not truncated else []
    if calls:
        obs, errors = [], 0
        for c in calls:
            if isinstance(c, CallError):
                errors += 1
                result = f"error: {c.message}"
            else:
                try:
                    result = episode.call_tool(ToolCall(name=c.name, arguments=c.arguments))
                except ToolError as e:
                    errors += 1
                    result = f"error: {e}"
                if not isinstance(result, str):
                    raise TypeError(f"tool {c.name!r} returned {type(result).__name__}, expected str")
            obs.append(("tool", _cut(result)))
        return {"observations": obs, "done": False, "outcome": None, "calls": len(calls), "errors": errors}
    step = episode.step(Turn(number=number, text=text, truncated=truncated))
    if not isinstance(step, Step):
        raise TypeError(f"step returned {type(step).__name__}, expected grpo_env.environment.Step")
    return {"observations": [(m.role, _cut(m.content)) for m in step.observations], "done": step.done,
            "outcome": None if step.outcome is None else _outcome_data(step.outcome), "calls": 0, "errors": 0}


def phase_of(env: Environment, msg: tuple) -> tuple[str, int | None, str]:
    """Which part of the environment a message runs: ``(phase, turn, where)``. ``phase`` is
    ``make``, ``step``, ``call_tool`` (a turn that holds tool calls) or ``end``; ``turn`` the
    assistant turn (None for ``make``); ``where`` the two in words (``call_tool lookup (turn 2)``).
    Parsing a turn's calls again is linear in its text, and done only when something went wrong."""
    if msg[0] == "make":
        return "make", None, "make"
    if msg[0] == "end":
        turn = msg[2] if len(msg) > 2 and msg[2] else None  # none yet: cut before its first turn reached it
        return "end", turn, f"end (reason {msg[1]!r}" + (f", after turn {turn})" if turn else ")")
    number, text = msg[1], msg[2]
    cut = len(msg) > 3 and bool(msg[3])  # a cut turn goes to step, whatever it holds
    calls = parse_calls(text, env.tools) if env.tools and not cut else []
    if not calls:
        return "step", number, f"step (turn {number})"
    names = sorted({c.name for c in calls if c.name})
    return "call_tool", number, "call_tool" + (f" {', '.join(names)}" if names else "") + f" (turn {number})"


def _episode_main(conn: Connection, env: Environment, parent_pid: int) -> None:
    episode: Episode | None = None

    def handle(msg: tuple) -> tuple:
        nonlocal episode
        try:
            if msg[0] == "make":
                episode = env.make(msg[1])
                if not isinstance(episode, Episode):
                    raise TypeError(f"make returned {type(episode).__name__}, expected a grpo_env.environment.Episode")
                return ("ok", None)
            if msg[0] == "turn":
                return ("ok", play_turn(episode, env, msg[1], msg[2], len(msg) > 3 and bool(msg[3])))  # type: ignore[arg-type]
            out = episode.end(msg[1])  # type: ignore[union-attr]  # ("end", reason): the core stopped the episode
            if not isinstance(out, Outcome):
                raise TypeError(f"end returned {type(out).__name__}, expected grpo_env.Outcome")
            return ("ok", _outcome_data(out))
        except Exception as e:
            phase, turn, where = phase_of(env, msg)
            return ("error", f"environment {env.name!r} raised {type(e).__name__} in {where}: {plain(str(e))}",
                    plain(traceback.format_exc(limit=-3)), phase, turn)

    serve(conn, parent_pid, handle)


# ---------------------------------------------------------------------------------------------
# the supervisor


@dataclass
class EpisodeStats:
    """What one episode did, for metrics and logs."""

    turns: int = 0  # assistant turns played
    tool_calls: int = 0
    tool_errors: int = 0  # malformed calls, unknown tools, ToolError
    env_seconds: float = 0.0  # time its environment worked
    ended_by: str = ""  # "env" | "turns" | "tokens" | "truncated" | "timeout" | "error"
    cut_turns: int = 0  # turns cut at max_new_tokens: handed to step (on_truncated="step"), or the one that ended it
    copied_tool_output: bool = False  # the final answer holds a tool's output verbatim (a monitor signal)

    def as_dict(self) -> dict[str, Any]:
        return {"turns": self.turns, "tool_calls": self.tool_calls, "tool_errors": self.tool_errors,
                "env_seconds": round(self.env_seconds, 4), "ended_by": self.ended_by, "cut_turns": self.cut_turns,
                "copied_tool_output": self.copied_tool_output}


@dataclass
class _Session:
    env: Environment
    weights: dict[str, float]
    example: Example
    conn: Connection | None = None
    proc: Any = None
    outcome: Outcome | None = None  # set when the episode has ended
    last_text: str = ""
    tool_outputs: list[str] = field(default_factory=list)  # the last few tool results, stripped
    stats: EpisodeStats = field(default_factory=EpisodeStats)

    @property
    def open(self) -> bool:
        return self.outcome is None

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(timeout=5)
            self.proc = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def stop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.send(None)
            except OSError:
                pass
        if self.proc is not None:
            self.proc.join(timeout=1)
        self.kill()


class EpisodeHost:
    """Runs environments' episodes for the engine. ``environments``: name -> (environment, reward
    weights); ``service`` scores reward components on the final turn."""

    def __init__(self, environments: Mapping[str, tuple[Environment, Mapping[str, float]]], service,
                 workers: int = 2, grace: float = 1.0):
        self.environments = {k: (env, dict(w)) for k, (env, w) in environments.items()}
        self.service = service
        self.workers = max(1, workers)
        self.grace = grace
        self._ctx = mp.get_context("fork")
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="grpo-env-episodes")  # see ScoringService

    def close(self) -> None:
        self._spawner.shutdown()

    def __enter__(self) -> "EpisodeHost":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the engine's protocol ----------------------------------------------------------------

    def is_episode(self, example: Example) -> bool:
        return example.task in self.environments

    def max_turns(self, example: Example) -> int:
        return self.environments[example.task][0].turns_for(example) if self.is_episode(example) else 1

    def on_truncated(self, example: Example) -> str:
        """What a turn of ``example``'s episode cut at max_new_tokens does: ``end`` or ``step``."""
        return self.environments[example.task][0].on_truncated if self.is_episode(example) else "end"

    def open(self, examples: Sequence[Example]) -> "EpisodeBatch":
        return EpisodeBatch(self, examples)

    # -- processes -------------------------------------------------------------------------

    def _fork(self, env: Environment) -> tuple[Connection, Any]:
        def start() -> tuple[Connection, Any]:
            conn, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=_episode_main, args=(child, env, os.getpid()), daemon=True)
            proc.start()
            child.close()
            return conn, proc

        return self._spawner.submit(start).result()

    def exchange(self, sessions: list[_Session], messages: list[tuple]) -> list[Any]:
        """Send each open session its message and collect the replies, at most ``workers`` at once,
        each under its deadline. A session that times out, dies or raises is ended (its outcome set)
        and gets None."""
        replies: list[Any] = [None] * len(sessions)
        pending = list(range(len(sessions)))[::-1]
        running: dict[int, float] = {}  # session index -> deadline
        started: dict[int, float] = {}
        while pending or running:
            while pending and len(running) < self.workers:
                i = pending.pop()
                s = sessions[i]
                if not s.open:
                    continue
                if s.conn is None:
                    s.conn, s.proc = self._fork(s.env)
                budget = min(s.env.step_timeout, s.env.episode_timeout - s.stats.env_seconds)
                now = time.monotonic()
                try:
                    s.conn.send(messages[i])
                except (OSError, ValueError):
                    self._fail(s, Outcome.error(f"environment {s.env.name!r}: its process is gone"))
                    continue
                running[i], started[i] = now + max(budget, 0.0) + self.grace, now
            if not running:
                continue
            timeout = max(0.0, min(running.values()) - time.monotonic())
            ready = wait([sessions[i].conn for i in running], timeout=timeout)
            now = time.monotonic()
            for i in list(running):
                s = sessions[i]
                if s.conn in ready:
                    del running[i]
                    s.stats.env_seconds += now - started[i]
                    try:
                        reply = s.conn.recv()
                    except (EOFError, OSError):
                        if s.proc is not None:
                            s.proc.join(timeout=1)  # its exit status, once the pipe's end was seen
                        code = s.proc.exitcode if s.proc is not None else None
                        phase, turn, where = phase_of(s.env, messages[i])
                        self._fail(s, Outcome.error(f"environment {s.env.name!r}: its process died (exit {code}) "
                                                    f"in {where}", phase=phase, turn=turn))
                        continue
                    if reply[0] == "error":
                        phase, turn = reply[3:5] if len(reply) >= 5 else phase_of(s.env, messages[i])[:2]
                        self._fail(s, Outcome.error(plain(reply[1]), traceback=plain(reply[2]), phase=phase, turn=turn))
                    else:
                        replies[i] = reply[1]
                elif now >= running[i]:
                    del running[i]
                    s.stats.env_seconds += now - started[i]
                    self._fail(s, self._timeout(s, messages[i]), status="timeout")
        return replies

    def _timeout(self, s: _Session, msg: tuple) -> Outcome:
        """The outcome of a message that ran past its deadline: which phase and turn, which deadline."""
        over = "episode" if s.stats.env_seconds >= s.env.episode_timeout else "step"
        limit = s.env.episode_timeout if over == "episode" else s.env.step_timeout
        phase, turn, where = phase_of(s.env, msg)
        what = "all of the episode's environment work together; " if over == "episode" else ""
        reason = (f"environment {s.env.name!r} timed out in {where}: it ran past its {over}_timeout of {limit:g} s "
                  f"({what}+{self.grace:g} s grace) and its process was killed")
        return Outcome.of(Status.TIMEOUT, 0.0, deadline_s=limit, limit=over, phase=phase, turn=turn, reason=reason)

    @staticmethod
    def _fail(s: _Session, outcome: Outcome, status: str = "error") -> None:
        s.outcome = outcome
        s.stats.ended_by = status
        s.kill()


def _outcome(data: tuple[float, str, dict]) -> Outcome:
    score, status, details = data
    return Outcome(score=score, status=Status(status), details=details)


class EpisodeBatch:
    """One rollout's episodes, a row per sequence (rows of single-turn tasks have no session)."""

    def __init__(self, host: EpisodeHost, examples: Sequence[Example]):
        self.host = host
        self.examples = list(examples)
        self.sessions: list[_Session | None] = []
        for ex in self.examples:
            if host.is_episode(ex):
                env, weights = host.environments[ex.task]
                self.sessions.append(_Session(env, weights, ex))
            else:
                self.sessions.append(None)
        live = [s for s in self.sessions if s is not None]
        host.exchange(live, [("make", s.example) for s in live])  # a make that fails ends its session

    @property
    def stats(self) -> list[dict[str, Any] | None]:
        return [None if s is None else s.stats.as_dict() for s in self.sessions]

    def step(self, rows: Sequence[int], texts: Sequence[str],
             truncated: Sequence[bool] | None = None) -> list[list[Message] | None]:
        """Each row's turn to its environment: the observations the model sees next, or None when the
        episode has ended (by the environment, a deadline or an error). A row without a session ends.
        ``truncated``: which turns were cut at max_new_tokens (handed to the step as they are)."""
        out: list[list[Message] | None] = [None] * len(rows)
        cut = list(truncated) if truncated is not None else [False] * len(rows)
        live = [(k, self.sessions[r]) for k, r in enumerate(rows) if self.sessions[r] is not None]
        for k, s in live:
            s.last_text = texts[k]
            s.stats.turns += 1
            s.stats.cut_turns += bool(cut[k])
        sessions = [s for _, s in live]
        replies = self.host.exchange(sessions, [("turn", s.stats.turns, s.last_text, bool(cut[k])) for k, s in live])
        for (k, s), reply in zip(live, replies):
            if reply is None:  # ended: timeout or error
                continue
            s.stats.tool_calls += reply["calls"]
            s.stats.tool_errors += reply["errors"]
            if reply["done"]:
                s.stats.ended_by = "env"
                s.stats.copied_tool_output = any(o in s.last_text for o in s.tool_outputs)
                s.outcome = _outcome(reply["outcome"]) if reply["outcome"] is not None else Outcome.not_applicable(
                    "the environment gave no outcome: judged by its reward components")
                s.stop()
            else:
                # plugin text crossing into the engine: valid UTF-8, no control characters
                out[k] = [Message(role=role, content=plain(content)) for role, content in reply["observations"]]
                s.tool_outputs = (s.tool_outputs + [m.content.strip() for m in out[k]
                                                    if m.role == "tool" and m.content.strip()])[-MAX_TOOL_OUTPUTS:]
        return out

    def stop(self, rows: Sequence[int], reason: str) -> None:
        """The core ends these episodes (``reason``: ``turns``, ``tokens`` or ``truncated``): each
        environment's :meth:`Episode.end` judges the unfinished episode."""
        sessions = [s for s in (self.sessions[r] for r in rows) if s is not None and s.open]
        if reason == "truncated":
            for s in sessions:
                s.stats.cut_turns += 1
        replies = self.host.exchange(sessions, [("end", reason, s.stats.turns) for s in sessions])
        for s, reply in zip(sessions, replies):
            if reply is not None:
                s.outcome, s.stats.ended_by = _outcome(reply), reason
                s.stop()

    def fail(self, rows: Sequence[int], why: str) -> None:
        """The core ends these episodes with ``error`` (their environment's text could not be used)."""
        for s in (self.sessions[r] for r in rows):
            if s is not None and s.open:
                self.host._fail(s, Outcome.error(f"environment {s.env.name!r}: {why}"))

    def judge(self) -> list[Scored | None]:
        """Each episode's judgement (None for rows of single-turn tasks): the environment's outcome
        under its own name and the reward components on the final turn, combined like a task's.

        Components judge only an episode its environment ended: one the core stopped (turn or token
        limit, a truncated turn), whose environment failed (``error``) or ran out of time
        (``timeout``) has no final answer to judge (its last turn may be a tool call holding the
        right number), so it is the environment's outcome alone."""
        self.stop([r for r, s in enumerate(self.sessions) if s is not None and s.open], "turns")
        items, where = [], []
        for r, s in enumerate(self.sessions):
            if s is None or s.stats.ended_by != "env":
                continue
            for name in s.weights:
                if name != s.env.name:
                    items.append((name, s.example, s.last_text))
                    where.append((r, name))
        outcomes = self.host.service.score(items) if items else []
        found: dict[int, dict[str, Outcome]] = {}
        for (r, name), o in zip(where, outcomes):
            found.setdefault(r, {})[name] = o
        out: list[Scored | None] = []
        for r, s in enumerate(self.sessions):
            if s is None:
                out.append(None)
                continue
            env_out: Outcome = s.outcome  # type: ignore[assignment]
            if s.stats.ended_by != "env":
                total = math.nan if env_out.status.excluded else s.weights.get(s.env.name, 0.0) * env_out.score
                out.append(Scored(total=total, status=env_out.status, components={s.env.name: env_out}))
                continue
            weights = dict(s.weights)
            weights.setdefault(s.env.name, 0.0)  # always reported; counts only when the recipe weighs it
            out.append(combine({s.env.name: env_out, **found.get(r, {})}, weights))
        self.close()
        return out

    def close(self) -> None:
        for s in self.sessions:
            if s is not None:
                s.stop()


@dataclass
class Played:
    """A scripted episode's result: its judgement, stats, and the observations after each turn."""

    scored: Scored
    stats: dict[str, Any]
    observations: list[list[Message]]


def play(host: EpisodeHost, example: Example, turns: Sequence[str]) -> Played:
    """Play ``turns`` as the assistant's turns of one episode (fewer if it ends sooner) through the
    real processes and deadlines; for ``grpo-env check`` and ``grpo-env play``. ``example.task`` must
    name one of the host's environments (:func:`grpo_env.testing.play_episode` sets it)."""
    if not host.is_episode(example):
        raise ValueError(f"example {example.id!r} has task {example.task!r}, which is none of this host's "
                         f"environments {sorted(host.environments)}: set its task (and tools), as "
                         "grpo_env.testing.play_episode does")
    batch = host.open([example])
    limit = host.max_turns(example)
    seen: list[list[Message]] = []
    played = 0
    for text in turns:
        if not batch.sessions[0].open:  # type: ignore[union-attr]
            break
        played += 1
        obs = batch.step([0], [text])[0]
        if obs is None:
            break
        seen.append(obs)
        if played >= limit:
            batch.stop([0], "turns")
            break
    if batch.sessions[0].open:  # type: ignore[union-attr]
        batch.stop([0], "turns")  # the script ran out of turns
    scored = batch.judge()[0]
    stats = batch.stats[0] or {}
    stats["turns"] = played
    return Played(scored, stats, seen)  # type: ignore[arg-type]
