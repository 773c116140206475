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

Where episode processes come from (issue 19 item 11). Forking the trainer costs 40-90 ms once it
holds a model (the kernel copies the page tables of gigabytes), on every episode, and each child
then copies pages its collector touches. An :class:`EpisodeZygote` is a small process forked from
the trainer *before the model loads* (``grpo-env train`` starts one right after it resolves the mix):
it holds the environments and nothing of the model, and forks each episode's process on request,
a few milliseconds each. The host makes the episode's pipe and passes one end to the zygote over a
Unix socket (``SCM_RIGHTS``), so it talks to the episode directly, under the same deadlines. The
guarantees are the direct fork's: an episode process dies with its parent (the zygote), the zygote
dies with the trainer (both ``PR_SET_PDEATHSIG``; the zygote is forked from a long-lived thread), a
hung or killed episode is killed and reaped (by the zygote, which never signals a process it has
reaped: episodes are named by ids, never by possibly reused pids), closing the zygote kills and
reaps what is left, and a zygote belongs to the process that started it (a forked copy of its
handle is not used). An environment the zygote does not hold (by identity), a zygote that could not
start or has died, or ``forks="direct"``: the episode is forked from the trainer as before.
``EpisodeHost(forks=...)`` chooses; its default is the environment variable
``GRPO_ENV_EPISODE_FORKS`` (``direct`` or ``zygote``: a zygote of the host's own, started when the
host is made), else ``direct``; a zygote passed to the host is used for the environments it holds.
"""

from __future__ import annotations

import gc
import itertools
import math
import multiprocessing as mp
import os
import select
import signal
import sys
import threading
import time
import traceback
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import reduction
from multiprocessing.connection import Connection, wait
from typing import Any, Iterable, Mapping, Sequence

from grpo_env.environment import Environment, Episode, Step, ToolCall, ToolError, Turn
from grpo_env.rewards import combine
from grpo_env.scoring.local import _die_with_parent, _plain, serve
from grpo_env.text import plain
from grpo_env.tools import CallError, parse_calls
from grpo_env.types import Example, Message, Outcome, Scored, Status

MAX_OBSERVATION_CHARS = 8_000  # one observation message, cut beyond (the cut is said in the text)
MAX_TOOL_OUTPUTS = 8  # tool results an episode keeps to tell whether its final answer copies one
FORKS_ENV = "GRPO_ENV_EPISODE_FORKS"  # the default of EpisodeHost(forks=...): "direct" or "zygote"
ZYGOTE_START_S = 60.0  # a zygote not ready within this is given up (episodes fork directly)
ZYGOTE_ANSWER_S = 30.0  # a request the zygote does not answer within this (beyond its own waits) breaks it
KILL_REAP_S = 5.0  # a killed process is waited for this long (it may be in uninterruptible sleep)


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
# the episode zygote: a small process the episode processes are forked from


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)  # as multiprocessing reports it: -N for signal N


class _Children:
    """The zygote's episode processes, by id (ids are never reused; pids may be, once reaped). A
    process is reaped as soon as it is seen to have exited, its exit code kept until the host ends
    its id, so a signal never goes to a pid the zygote no longer owns."""

    def __init__(self) -> None:
        self.live: dict[int, int] = {}  # id -> pid, not reaped
        self.by_pid: dict[int, int] = {}  # pid -> id
        self.exited: dict[int, int] = {}  # id -> exit code, reaped
        self.ids = itertools.count(1)

    def add(self, pid: int) -> int:
        i = next(self.ids)
        self.live[i], self.by_pid[pid] = pid, i
        return i

    def _reaped(self, pid: int, status: int) -> None:
        i = self.by_pid.pop(pid, None)
        if i is not None:
            del self.live[i]
            self.exited[i] = _exit_code(status)

    def reap(self) -> None:
        """Reap every child that has exited, without waiting."""
        while self.live:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._reaped(pid, status)

    def wait(self, i: int, timeout: float) -> int | None:
        """Child ``i``'s exit code, waiting up to ``timeout`` s for it to exit; None if it has not
        (or is unknown)."""
        deadline = time.monotonic() + timeout
        while True:
            if i in self.exited:
                return self.exited[i]
            pid = self.live.get(i)
            if pid is None:
                return None
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours any more (cannot happen: nothing else reaps)
                self.by_pid.pop(pid, None)
                self.live.pop(i, None)
                return None
            if got:
                self._reaped(pid, status)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:  # sleep until it exits (a pidfd is readable then), else poll
                fd = os.pidfd_open(pid)
            except (AttributeError, OSError):
                time.sleep(min(left, 0.002))
                continue
            try:
                select.select([fd], [], [], left)
            finally:
                os.close(fd)

    def end(self, i: int, wait: float) -> int | None:
        """Give child ``i`` ``wait`` s to exit, then SIGKILL it and reap it; forget it. Its exit code."""
        code = self.wait(i, max(wait, 0.0))
        if code is None and i in self.live:
            try:
                os.kill(self.live[i], signal.SIGKILL)  # not reaped yet: still ours
            except ProcessLookupError:
                pass
            code = self.wait(i, KILL_REAP_S)
        self.exited.pop(i, None)  # a child still unreaped (uninterruptible sleep) stays in live, reaped later
        return code

    def kill_all(self) -> None:
        for pid in self.live.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for i in list(self.live):
            self.wait(i, KILL_REAP_S)


def _zygote_child(control: Connection, fd: int, env: Environment, zygote_pid: int) -> None:
    """In an episode process forked by the zygote: serve the episode on ``fd``; never returns."""
    code = 1
    try:
        control.close()  # the zygote's channel to the host is not the episode's
        _episode_main(Connection(fd), env, zygote_pid)
        code = 0
    except BaseException:  # noqa: BLE001 -- anything at all: said on stderr, the process exits
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        os._exit(code)


def _zygote_main(control: Connection, host_end: Connection, environments: Mapping[str, Environment],
                 parent_pid: int) -> None:
    """The zygote: dies with the trainer, forks an episode process per ``start`` request (the
    episode's end of its pipe arrives with the request), waits for and kills its children on
    request, and at the end (``None``, the channel closed) kills and reaps every child left.

    Requests (each answered in order): ``("start", name)`` plus a descriptor -> ``("ok", id, pid)``;
    ``("wait", id, timeout)`` -> ``("ok", exit code or None)``; ``("end", id, wait)`` -> ``("ok",
    exit code or None)``: a grace of ``wait`` s, then SIGKILL, reaped, the id forgotten."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's
    host_end.close()  # the trainer's end of the channel: neither ours nor our episodes'
    me = os.getpid()
    gc.collect()
    gc.freeze()  # episode processes must not copy every inherited page when their collector walks the heap
    children = _Children()
    try:
        control.send(("ready", me))
        while True:
            try:
                msg = control.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            children.reap()
            op = msg[0]
            if op == "start":
                fd = reduction.recv_handle(control)
                env = environments.get(msg[1])
                if env is None:
                    os.close(fd)
                    control.send(("error", f"the zygote holds no environment {msg[1]!r}"))
                    continue
                try:
                    pid = os.fork()
                except OSError as e:
                    os.close(fd)
                    control.send(("error", f"fork failed: {e}"))
                    continue
                if pid == 0:
                    _zygote_child(control, fd, env, me)
                os.close(fd)
                control.send(("ok", children.add(pid), pid))
            elif op == "wait":
                control.send(("ok", children.wait(msg[1], msg[2])))
            elif op == "end":
                control.send(("ok", children.end(msg[1], msg[2])))
            else:
                control.send(("error", f"unknown request {op!r}"))
    finally:
        children.kill_all()


class ZygoteGone(RuntimeError):
    """The zygote did not start, died or stopped answering: episodes fork directly."""


def _stop_zygote(owner: int, proc: Any, control: Connection, lock: threading.Lock, spawner: ThreadPoolExecutor) -> None:
    """Stop a zygote (its episodes killed and reaped), then its spawner thread. Only in the process
    that started it: a forked copy of the handle leaves the owner's zygote alone."""
    if os.getpid() != owner:
        return
    if lock.acquire(timeout=ZYGOTE_ANSWER_S):
        try:
            try:
                control.send(None)
            except (OSError, ValueError):
                pass
            proc.join(timeout=2 * KILL_REAP_S)
        finally:
            lock.release()
    if proc.is_alive():
        proc.kill()  # its episodes die with it (their parent-death signal)
    proc.join(timeout=KILL_REAP_S)
    control.close()
    spawner.shutdown(wait=False)  # after the zygote: its parent-death signal follows this thread


class EpisodeZygote:
    """A small process that forks episode processes: start it before the model loads.

    ``environments``: the environments (a name -> environment mapping, or environments by their
    own names) its episodes may run; forked into the zygote as they are, never pickled. A host uses
    it for the environments it holds by identity (the same objects). Use as a context manager, or
    call :meth:`close`; at interpreter exit, or when the handle is collected, it is closed anyway.
    A zygote that cannot start raises :class:`ZygoteGone` (:func:`start_zygote` returns None then).
    """

    def __init__(self, environments: Mapping[str, Environment] | Iterable[Environment]):
        envs = dict(environments) if isinstance(environments, Mapping) else {e.name: e for e in environments}
        self.environments = envs
        self.owner = os.getpid()
        self.pid: int | None = None
        self.broken: str | None = None  # why it is no longer used
        self._names = {id(env): name for name, env in envs.items()}
        self._lock = threading.Lock()
        # forked from one long-lived thread (see ScoringService): the parent-death signal follows the thread
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="grpo-env-zygote")
        ctx = mp.get_context("fork")
        self._control, child = ctx.Pipe()

        def start() -> Any:
            proc = ctx.Process(target=_zygote_main, args=(child, self._control, envs, os.getpid()), daemon=True,
                               name="grpo-env-episode-zygote")
            proc.start()
            child.close()
            return proc

        try:
            self._proc = self._spawner.submit(start).result()
        except OSError as e:  # fork refused (memory, process limits)
            child.close()
            self._control.close()
            self._spawner.shutdown(wait=False)
            raise ZygoteGone(f"the episode zygote did not start: {e}") from None
        self._finalizer = weakref.finalize(self, _stop_zygote, self.owner, self._proc, self._control, self._lock,
                                           self._spawner)
        try:
            if not self._control.poll(ZYGOTE_START_S):
                raise ZygoteGone(f"the episode zygote was not ready within {ZYGOTE_START_S:g} s")
            ready = self._control.recv()
            if not (isinstance(ready, tuple) and ready[0] == "ready"):
                raise ZygoteGone(f"the episode zygote said {ready!r} on start")
            self.pid = ready[1]
        except (ZygoteGone, EOFError, OSError) as e:
            self.close()
            raise ZygoteGone(f"the episode zygote did not start: {e}") from None

    # -- for hosts ------------------------------------------------------------------------------

    def holds(self, env: Environment) -> bool:
        """Whether episodes of ``env`` (this very object) can start here, from this process."""
        name = self._names.get(id(env))
        return (name is not None and self.environments[name] is env and self.broken is None
                and os.getpid() == self.owner and self._finalizer.alive)

    def start(self, env: Environment) -> tuple[Connection, "_ZygoteChild"]:
        """A new episode process for ``env``: the host's end of its pipe, and its handle."""
        conn, child = mp.get_context("fork").Pipe()
        try:
            reply = self._ask(("start", self._names[id(env)]), fd=child.fileno())
        except BaseException:
            conn.close()
            raise
        finally:
            child.close()  # the zygote has forked the episode (or refused): our copy goes
        if reply[0] != "ok":
            conn.close()
            raise ZygoteGone(str(reply[1]))
        return conn, _ZygoteChild(self, reply[1], reply[2])

    def _ask(self, msg: tuple, fd: int | None = None, wait: float = 0.0) -> tuple:
        """One request and its answer; a zygote that fails to answer is broken (and killed)."""
        if os.getpid() != self.owner:
            raise ZygoteGone(f"this episode zygote belongs to process {self.owner}")
        with self._lock:
            if self.broken is not None:
                raise ZygoteGone(self.broken)
            try:
                self._control.send(msg)
                if fd is not None:
                    reduction.send_handle(self._control, fd, self.pid)
                if not self._control.poll(wait + KILL_REAP_S + ZYGOTE_ANSWER_S):
                    raise TimeoutError("no answer")
                return self._control.recv()
            except (OSError, EOFError, ValueError, TimeoutError) as e:
                why = f"the episode zygote (pid {self.pid}) failed on {msg[0]!r}: {type(e).__name__}: {e}"
                self.broken = why
                if self._proc.is_alive():
                    self._proc.kill()  # its episodes die with it
        warnings.warn(why + "; episodes fork from this process from now on", RuntimeWarning, stacklevel=3)
        self.close()
        raise ZygoteGone(why)

    # -- life ---------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return (os.getpid() == self.owner and self._finalizer.alive and self.broken is None
                and self._proc.is_alive())

    def close(self) -> None:
        """Stop the zygote: its episode processes are killed and reaped with it."""
        self._finalizer()

    def __enter__(self) -> "EpisodeZygote":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_zygote(environments: Mapping[str, Environment] | Iterable[Environment]) -> EpisodeZygote | None:
    """An :class:`EpisodeZygote` for ``environments``, or None (with a warning) when none is
    needed (no environments) or it cannot start: episodes then fork from the trainer."""
    envs = dict(environments) if isinstance(environments, Mapping) else {e.name: e for e in environments}
    if not envs:
        return None
    try:
        return EpisodeZygote(envs)
    except ZygoteGone as e:
        warnings.warn(f"{e}; episodes fork from this process", RuntimeWarning, stacklevel=2)
        return None


class _ZygoteChild:
    """An episode process the zygote forked, handled through the zygote (its parent)."""

    def __init__(self, zygote: EpisodeZygote, ident: int, pid: int):
        self.zygote, self.ident, self.pid = zygote, ident, pid
        self.exitcode: int | None = None
        self._ended = False

    def exitcode_after(self, timeout: float) -> int | None:
        """Its exit code, waiting up to ``timeout`` s for it to exit (None if it has not)."""
        if self.exitcode is None and not self._ended:
            try:
                self.exitcode = self.zygote._ask(("wait", self.ident, timeout), wait=timeout)[1]
            except ZygoteGone:
                pass
        return self.exitcode

    def end(self, wait: float) -> None:
        """``wait`` s to exit on its own, then SIGKILL; reaped."""
        if self._ended:
            return
        self._ended = True
        try:
            code = self.zygote._ask(("end", self.ident, wait), wait=wait + KILL_REAP_S)[1]
        except ZygoteGone:  # the zygote is gone, and its episodes with it
            return
        if self.exitcode is None:
            self.exitcode = code


class _DirectChild:
    """An episode process forked from this process (the path without a zygote)."""

    def __init__(self, proc: Any):
        self.proc, self.pid = proc, proc.pid

    @property
    def exitcode(self) -> int | None:
        return self.proc.exitcode

    def exitcode_after(self, timeout: float) -> int | None:
        self.proc.join(timeout=timeout)
        return self.proc.exitcode

    def end(self, wait: float) -> None:
        if wait > 0:
            self.proc.join(timeout=wait)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=KILL_REAP_S)


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
    proc: Any = None  # a _ZygoteChild or a _DirectChild
    outcome: Outcome | None = None  # set when the episode has ended
    last_text: str = ""
    tool_outputs: list[str] = field(default_factory=list)  # the last few tool results, stripped
    stats: EpisodeStats = field(default_factory=EpisodeStats)

    @property
    def open(self) -> bool:
        return self.outcome is None

    def kill(self, wait: float = 0.0) -> None:
        """Its process killed (after ``wait`` s to exit on its own) and reaped, its pipe closed."""
        if self.proc is not None:
            self.proc.end(wait)
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
        self.kill(wait=1.0)


class EpisodeHost:
    """Runs environments' episodes for the engine. ``environments``: name -> (environment, reward
    weights); ``service`` scores reward components on the final turn.

    ``forks``: where episode processes come from (see the module's docstring): an
    :class:`EpisodeZygote` started earlier (used for the environments it holds; its starter closes
    it), ``"zygote"`` (a zygote of the host's own, started now and closed with the host: worth it
    only while this process is small), ``"direct"`` (forked from this process), or None: the
    environment variable ``GRPO_ENV_EPISODE_FORKS``, else ``"direct"``. ``started`` counts the
    episode processes started each way (``zygote``, ``direct``), ``start_seconds`` their start
    times together."""

    def __init__(self, environments: Mapping[str, tuple[Environment, Mapping[str, float]]], service,
                 workers: int = 2, grace: float = 1.0, forks: "EpisodeZygote | str | None" = None):
        self.environments = {k: (env, dict(w)) for k, (env, w) in environments.items()}
        self.service = service
        self.workers = max(1, workers)
        self.grace = grace
        self._ctx = mp.get_context("fork")
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="grpo-env-episodes")  # see ScoringService
        self.started = {"zygote": 0, "direct": 0}
        self.start_seconds = 0.0
        if forks is None:
            forks = os.environ.get(FORKS_ENV, "").strip().lower() or "direct"
        if isinstance(forks, str) and forks not in ("direct", "zygote"):
            raise ValueError(f"forks (default: ${FORKS_ENV}) must be an EpisodeZygote, 'direct' or 'zygote', "
                             f"not {forks!r}")
        self.zygote: EpisodeZygote | None = forks if isinstance(forks, EpisodeZygote) else None
        self._own_zygote = forks == "zygote"
        if self._own_zygote:
            self.zygote = start_zygote({k: env for k, (env, _) in self.environments.items()})

    def close(self) -> None:
        if self._own_zygote and self.zygote is not None:
            self.zygote.close()
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
        """A new episode process for ``env``: from the zygote when it holds ``env``, else from this
        process. The host's end of its pipe, and the process's handle."""
        t = time.perf_counter()
        try:
            if self.zygote is not None and self.zygote.holds(env):
                try:
                    out = self.zygote.start(env)
                    self.started["zygote"] += 1
                    return out
                except ZygoteGone:
                    pass  # warned about by the zygote; this episode and the next fork directly

            def start() -> tuple[Connection, Any]:
                conn, child = self._ctx.Pipe()
                proc = self._ctx.Process(target=_episode_main, args=(child, env, os.getpid()), daemon=True)
                proc.start()
                child.close()
                return conn, _DirectChild(proc)

            out = self._spawner.submit(start).result()
            self.started["direct"] += 1
            return out
        finally:
            self.start_seconds += time.perf_counter() - t

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
                        # its exit status, once the pipe's end was seen
                        code = s.proc.exitcode_after(1.0) if s.proc is not None else None
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
