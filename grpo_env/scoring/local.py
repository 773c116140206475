"""The scoring service: rewards run in a pool of worker processes, each call under a hard deadline.

A call that runs past its reward's ``timeout`` (plus ``grace``) gets its worker killed with SIGKILL
and replaced; the item is reported as ``timeout``. A worker that dies (segfault, ``os._exit``) is
replaced too and the item reported as ``error``. Items are dispatched only to idle workers, so at
most ``workers`` calls are in flight and ``score_iter`` holds a bounded window of results; results
come back in input order, and a reward's result does not depend on which worker ran it.

No signals are used for deadlines (the supervisor waits on pipes with a timeout), so the service
works from any thread; one lock serialises batches.

A service belongs to the process that made it. A forked child inherits a copy whose pipes lead to
the parent's workers: using that copy raises an error naming the owner, and closing or collecting
it leaves the parent's workers alone; the child makes a service of its own. Every request carries
an id unique for the service and its reply must echo it: a reply to any other request is an
``error`` and the worker is replaced, so a reply is never credited to an item it does not answer.

Workers are forked when the service starts (and when one is replaced), so they see every reward
registered at that time, including plugins registered in-process by tests.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import multiprocessing as mp
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

from grpo_env.rewards import call_reward, combine
from grpo_env.types import Example, Outcome, Reward, Scored, Status

Item = tuple[str, Example, str]  # (reward name, example, completion)


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux), so no worker outlives a run."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the request above: nobody will signal us
        os._exit(0)


def _forget_parents_processes() -> None:
    """In a child made by a bare ``os.fork``, multiprocessing still lists the parent's processes as
    the child's own, and at the child's exit would SIGTERM the daemonic ones: the parent's scoring
    workers (and episode processes). None of them is the child's: forget them, as multiprocessing
    does in each child it starts itself."""
    mp.process._children.clear()


os.register_at_fork(after_in_child=_forget_parents_processes)


def _plain(details: dict) -> dict:
    """Details as JSON-safe data (a reward may put anything there; it must cross a pipe and a log)."""
    try:
        return json.loads(json.dumps(details, default=repr))
    except (TypeError, ValueError):
        return {"repr": repr(details)[:2000]}


def serve(conn: Connection, parent_pid: int, handle: Callable[[Any], Any]) -> None:
    """A worker process's loop: die with the parent, leave Ctrl-C to the supervisor, and answer each
    message with ``handle(message)`` until ``None`` or the pipe closes."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        conn.send(handle(msg))


def _worker_main(conn: Connection, rewards: Mapping[str, Reward], parent_pid: int) -> None:
    def score(msg: tuple) -> tuple:
        request, name, example, completion = msg
        out = call_reward(rewards[name], completion, example)
        return request, out.score, out.status.value, _plain(out.details)  # the reply echoes its request's id

    serve(conn, parent_pid, score)


def next_known(items: Iterator[Item], counter: Iterator[int], rewards: Mapping[str, Reward],
               done: dict[int, Outcome]) -> tuple[int, Item] | None:
    """The next item whose reward the service has, with its place in the batch (``counter``); an item
    naming another reward is answered ``error`` in ``done`` on the way. None: no items left."""
    for item in items:
        idx = next(counter)
        if item[0] in rewards:
            return idx, item
        done[idx] = Outcome.error(f"no reward named {item[0]!r} in this scoring service")
    return None


class _Job(NamedTuple):
    index: int  # the item's place in its batch
    request: int  # the request's id, unique for the service; its reply must carry it
    deadline: float  # on the monotonic clock


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext, rewards: Mapping[str, Reward]):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, rewards, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.job: _Job | None = None
        self.reward = ""  # the reward it is running
        self.deadline_s = 0.0

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(timeout=2)
        self.kill()


class Scores:
    """What every scoring backend offers beside ``score_iter`` and ``close`` (see
    :mod:`grpo_env.scoring`): a list, an example's weighted components, use as a context manager."""

    def score_iter(self, items: Iterable[Item]) -> Iterator[Outcome]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def score(self, items: Sequence[Item]) -> list[Outcome]:
        """Score ``(reward_name, example, completion)`` items; outcomes in input order."""
        return list(self.score_iter(items))

    def score_examples(
        self,
        task_rewards: Sequence[Mapping[str, float]],
        examples: Sequence[Example],
        completions: Sequence[str],
    ) -> list[Scored]:
        """Score each completion with its example's reward components and combine them by weight."""
        if not (len(task_rewards) == len(examples) == len(completions)):
            raise ValueError("task_rewards, examples and completions must have the same length")
        items = [(name, ex, c) for w, ex, c in zip(task_rewards, examples, completions) for name in w]
        outcomes = iter(self.score(items))
        return [combine({name: next(outcomes) for name in w}, w) for w in task_rewards]

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class ScoringService(Scores):
    """A pool of reward workers. Use as a context manager, or call :meth:`close`."""

    def __init__(self, rewards: Mapping[str, Reward], workers: int = 2, grace: float = 1.0, window: int | None = None):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.rewards = dict(rewards)
        self.grace = grace
        self.window = window or 4 * workers  # results held waiting for an earlier one, at most
        self.counts: Counter[str] = Counter()  # per-status counts over the service's life
        self.replaced = 0  # workers killed (deadline) or found dead, and replaced
        self.pid = os.getpid()  # the owner: only this process may use or stop the workers
        self._ctx = mp.get_context("fork")
        self._lock = threading.Lock()
        self._requests = itertools.count()  # request ids, never reused by this service
        # Workers are forked from one long-lived thread: the kernel's parent-death signal fires when
        # the *thread* that forked a child exits, so forking from a caller's short-lived thread
        # would kill its workers with it.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="grpo-env-scoring")
        self._workers = [self._new_worker() for _ in range(workers)]
        self._closed = False

    # -- public API -------------------------------------------------------------------------

    def score_iter(self, items: Iterable[Item]) -> Iterator[Outcome]:
        """Score a stream of items lazily, yielding outcomes in input order."""
        if os.getpid() != self.pid:  # checked before the lock, which a forked child may inherit held
            raise RuntimeError(
                f"this scoring service belongs to process {self.pid}; process {os.getpid()} (a forked child) "
                "must make its own: the workers and pipes it inherited are the owner's")
        with self._lock:
            if self._closed:
                raise RuntimeError("the scoring service is closed")
            try:
                yield from self._run(iter(items))
            finally:  # a consumer that stops early leaves jobs running: their results must not leak into the next batch
                for w in list(self._workers):
                    if w.job is not None:
                        self._replace(w)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self.pid:  # an inherited copy: the workers and the spawner thread are the owner's
            return
        for w in self._workers:
            w.stop()
        self._spawner.shutdown()

    # -- the supervisor loop ----------------------------------------------------------------

    def _run(self, items: Iterator[tuple[str, Example, str]]) -> Iterator[Outcome]:
        done: dict[int, Outcome] = {}
        next_out = 0  # index of the next outcome to yield
        counter = itertools.count()  # the items' places in this batch (request ids are the service's)
        exhausted = False
        while True:
            # hand items to idle workers, keeping the out-of-order window bounded
            for w in self._workers:
                if w.job is None and not exhausted and len(done) < self.window:
                    got = next_known(items, counter, self.rewards, done)
                    if got is None:
                        exhausted = True
                        break
                    idx, (name, example, completion) = got
                    self._send(w, idx, name, example, completion)
            busy = [w for w in self._workers if w.job is not None]
            while next_out in done:
                out = done.pop(next_out)
                self.counts[out.status.value] += 1
                yield out
                next_out += 1
            if not busy:
                if exhausted and not done:
                    return
                continue
            # wait for a result or the nearest deadline
            timeout = max(0.0, min(w.job.deadline for w in busy) - time.monotonic())
            ready = wait([w.conn for w in busy], timeout=timeout)
            now = time.monotonic()
            for w in busy:
                if w.conn in ready:
                    self._receive(w, done)
                elif now >= w.job.deadline:
                    done[w.job.index] = Outcome.of(Status.TIMEOUT, 0.0, deadline_s=round(w.deadline_s, 3))
                    self._replace(w)

    def _send(self, w: _Worker, idx: int, name: str, example: Example, completion: str) -> None:
        request = next(self._requests)
        for attempt in (0, 1):
            try:
                w.conn.send((request, name, example, completion))
                break
            except (OSError, ValueError):  # the worker died while idle: replace it and retry once
                if attempt:
                    raise RuntimeError("scoring workers die on start; see their stderr") from None
                w = self._replace(w)
        w.reward = name
        w.deadline_s = self.rewards[name].timeout + self.grace
        w.job = _Job(idx, request, time.monotonic() + w.deadline_s)

    def _receive(self, w: _Worker, done: dict[int, Outcome]) -> None:
        idx, request, _ = w.job
        try:
            reply = w.conn.recv()
        except (EOFError, OSError):
            w.proc.join(timeout=1)
            code = w.proc.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            done[idx] = Outcome.error(f"scoring worker died running reward {w.reward!r} ({how})", reward=w.reward)
            self._replace(w)
            return
        if not (isinstance(reply, tuple) and len(reply) == 4 and reply[0] == request):
            # a reply to some other request (a second user of this pipe, a stale answer): not this item's
            answered = repr(reply[0] if isinstance(reply, tuple) and reply else type(reply).__name__)[:80]
            done[idx] = Outcome.error(f"scoring worker answered request {answered} while running request {request} "
                                      f"(reward {w.reward!r}): reply discarded, worker replaced", reward=w.reward)
            self._replace(w)
            return
        _, score, status, details = reply
        done[idx] = Outcome(score=score, status=Status(status), details=details)
        w.job = None

    def _new_worker(self) -> _Worker:
        return self._spawner.submit(_Worker, self._ctx, self.rewards).result()

    def _replace(self, w: _Worker) -> _Worker:
        w.kill()
        new = self._new_worker()
        self._workers[self._workers.index(w)] = new
        self.replaced += 1
        return new
