"""Scoring on a Ray cluster (``[scoring] backend = "ray"``): one scoring actor per node.

Each node of the cluster that has CPUs runs one actor, and the actor hosts the local
:class:`~grpo_env.scoring.local.ScoringService` (its worker processes, its sandbox), so a reward's
hard deadline kills on the node where the reward runs, exactly as on one machine. This process (the
trainer) only dispatches and collects:

- **Before anything is scored** every node is probed (:func:`probe_nodes`): it must import the same
  grpo-env version, and its sandbox must isolate (user, pid, network and mount namespaces) unless
  the recipe opts in (``allow_unisolated = true``). A node that fails either, or that cannot load the
  recipe's rewards (a plugin not installed there), is named in a :class:`ClusterError`, and training
  does not start. ``grpo-env doctor --ray`` prints the same probe.
- **Requests** are chunks of at most ``workers`` items, each with an id the reply must echo (a reply
  to another request is ``error``, never credited). At most two chunks wait on a node, and at most
  ``max_in_flight`` items are out across the cluster (backpressure): a stream of items is pulled
  only as fast as the cluster scores it.
- **Faults.** A chunk whose node is lost (the actor died: the node went away, was killed, ran out of
  memory) is sent again to another node, at most :data:`RETRIES` times; scoring is a pure function of
  the item, so a resend is safe, and the lost reply can never arrive. A node that neither answers nor
  dies within the deadlines of all it holds (plus :data:`ANSWER_SLACK_S`) is given up and its items
  are ``timeout``: a reward that ran out of time is never retried into a second deadline's worth of
  work (a chunk queued behind it on that node never started there, since an actor runs one request
  at a time: it is sent elsewhere). The deadlines inside a node give ``timeout`` as they do locally,
  and those are final too.
- **Nothing is left behind**: closing the service closes each actor's service (its workers and
  sandboxes) and kills the actor; an actor lives no longer than this process (Ray's ownership), and
  its workers die with it (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from grpo_env.scoring.local import Item, Scores, ScoringService, next_known
from grpo_env.text import plain
from grpo_env.types import Outcome, Reward, Status

RETRIES = 2  # times a chunk is resent after its node was lost
ANSWER_SLACK_S = 30.0  # beyond the deadlines of all a node holds: transport, queueing, a busy node
PROBE_S = 60.0  # a node that does not answer its probe within this is refused
START_S = 120.0  # a scoring actor not ready within this is refused
PIPELINE = 2  # chunks waiting on one node at most (one running, one queued behind it)


class ClusterError(RuntimeError):
    """The Ray cluster cannot score for this run: not reachable, or a node refused (named, with why)."""


# ---------------------------------------------------------------------------------------------
# joining the cluster and probing its nodes


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError('[scoring] backend = "ray" needs Ray on this machine and on every node: '
                           "pip install 'grpo-env[ray]'") from None
    return ray


def connect(address: str) -> bool:
    """Join the Ray cluster at ``address`` (``auto``: the one ``ray start`` runs on this machine;
    ``host:port``; ``ray://host:port``). Already joined: nothing is done. True when this call joined."""
    ray = _ray()
    if ray.is_initialized():
        return False
    if not address:
        raise ClusterError('[scoring] backend = "ray" needs an address: "auto" or the head\'s host:port')
    start = ("Start one (`ray start --head` on the head, `ray start --address=HEAD:6379` on each worker) or set "
             "[scoring] address")
    why = _unreachable(address)
    if why:
        raise ClusterError(f"no Ray cluster at address {address!r}: {why}. {start}")
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ClusterError(f"no Ray cluster at address {address!r}: {e}. {start}") from None
    return True


def _unreachable(address: str, timeout: float = 5.0) -> str:
    """Why the cluster's head cannot be reached ("" when it answers, or cannot be checked here):
    Ray itself retries an unreachable head for a minute or more before it gives up."""
    import socket

    if address.startswith("ray://"):
        return ""  # Ray Client: checked by ray.init
    try:
        from ray._private.services import canonicalize_bootstrap_address
        resolved = canonicalize_bootstrap_address(address)
    except Exception:  # noqa: BLE001 - a private helper: when it changes, leave the check to ray.init
        return ""
    if not resolved:
        return "no cluster is running on this machine"
    host, _, port = resolved.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        return f"nothing answers at {resolved} ({e})"
    return ""


@dataclass
class NodeReport:
    """What one node said about itself (or why it could not)."""

    node_id: str
    address: str  # the node's IP as Ray knows it
    version: str = ""  # its grpo-env version
    isolated: bool = False  # its sandbox has every namespace (the namespaces mode)
    missing: str = ""  # what it lacks when not isolated
    rows: list = field(default_factory=list)  # its isolation report, as `grpo-env doctor` prints it
    error: str = ""  # it could not answer: grpo-env not importable there, no answer in time

    def problem(self, version: str, allow_unisolated: bool) -> str:
        """Why this node cannot score for a driver at ``version`` ("" when it can)."""
        if self.error:
            return self.error
        if self.version != version:
            return (f"it runs grpo-env {self.version}, this process {version}: install the same version (and the "
                    "same plugins) on every node")
        if not self.isolated and not allow_unisolated:
            return (f"its sandbox cannot isolate (missing: {self.missing}); give it user namespaces, or set "
                    "[scoring] allow_unisolated = true to score there in the fallback mode")
        return ""


def _probe() -> dict:
    """Runs on a node: its grpo-env version and sandbox isolation."""
    import grpo_env
    from grpo_env.sandbox.isolation import detect, isolation_report

    iso = detect()
    return {"version": grpo_env.__version__, "isolated": iso.full, "missing": iso.missing(),
            "rows": [list(r) for r in isolation_report()]}


def _pinned(node_id: str) -> dict:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}


def _why(e: BaseException) -> str:
    """An exception from a node as one plain line (its last line holds the cause)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    cause = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
    return plain(f"{type(e).__name__}: {cause}")[:500]


def scoring_nodes() -> list[tuple[str, str]]:
    """(node id, IP) of every live node with CPUs."""
    ray = _ray()
    return [(n["NodeID"], n.get("NodeManagerAddress", "?")) for n in ray.nodes()
            if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]


def probe_nodes(nodes: list[tuple[str, str]] | None = None, timeout: float = PROBE_S) -> list[NodeReport]:
    """Probe each node (default: every live node with CPUs) with a task pinned to it."""
    ray = _ray()
    nodes = scoring_nodes() if nodes is None else nodes
    task = ray.remote(num_cpus=0, max_retries=0)(_probe)
    refs = [task.options(**_pinned(nid)).remote() for nid, _ in nodes]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout) if refs else ([], [])
    reports = []
    for (nid, ip), ref in zip(nodes, refs):
        rep = NodeReport(nid, ip)
        if ref not in ready:
            ray.cancel(ref, force=True)
            rep.error = f"it did not answer a probe within {timeout:g} s"
        else:
            try:
                got = ray.get(ref)
                rep.version, rep.isolated, rep.missing, rep.rows = (got["version"], got["isolated"], got["missing"],
                                                                    got["rows"])
            except Exception as e:  # noqa: BLE001 - whatever the node raised, it is this node's fault, named
                rep.error = f"grpo-env does not run there ({_why(e)})"
        reports.append(rep)
    live = {nid for nid, _ in scoring_nodes()}
    return [r for r in reports if r.node_id in live or not r.error]  # a node that left meanwhile is no fault


def usable_nodes(reports: list[NodeReport], allow_unisolated: bool) -> list[NodeReport]:
    """The nodes that can score; a ClusterError naming every node that cannot (and why)."""
    from grpo_env import __version__

    bad = [(r, r.problem(__version__, allow_unisolated)) for r in reports]
    bad = [(r, why) for r, why in bad if why]
    if bad:
        raise ClusterError("Ray nodes refused for scoring:\n" + "\n".join(
            f"  node {r.address} ({r.node_id[:12]}): {why}" for r, why in bad))
    if not reports:
        raise ClusterError("the Ray cluster has no live node with CPUs to score on")
    return reports


def start_actors(cls: type, reports: list[NodeReport], args, what: str = "scoring") -> list[tuple[NodeReport, Any]]:
    """One actor of ``cls`` pinned to each node, made with ``args(report)``, each ready; a ClusterError
    naming every node where one could not start (and no actor left running)."""
    ray = _ray()
    remote = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(cls)
    actors = [remote.options(**_pinned(r.node_id)).remote(*args(r)) for r in reports]
    refs = [a.ready.remote() for a in actors]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=START_S) if refs else ([], [])
    started, bad = [], []
    for r, actor, ref in zip(reports, actors, refs):
        try:
            if ref not in ready:
                raise TimeoutError(f"not ready within {START_S:g} s")
            ray.get(ref)
            started.append((r, actor))
        except Exception as e:  # noqa: BLE001 - named below, with the node
            bad.append(f"  node {r.address} ({r.node_id[:12]}): its {what} actor did not start ({_why(e)}); "
                       "are the recipe's plugins installed there?")
    if bad:
        for actor in actors:
            ray.kill(actor)
        raise ClusterError(f"Ray nodes refused for {what}:\n" + "\n".join(bad))
    return started


def stop_actors(actors: list, disconnect: bool = False) -> None:
    """Each actor's ``close`` (its processes stopped and reaped), then the actor killed; ``disconnect``:
    leave the cluster too (this process joined it)."""
    ray = _ray()
    refs = [a.close.remote() for a in actors]
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=15)
    for a in actors:
        ray.kill(a)
    if disconnect:
        ray.shutdown()


# ---------------------------------------------------------------------------------------------
# on a node


class ScoringNode:
    """A Ray actor (made remote when the service starts): the local service on one node."""

    def __init__(self, rewards: Mapping[str, Reward], workers: int, grace: float, unisolated: bool):
        if unisolated:  # the recipe opted in and this node cannot isolate: its sandbox may use the fallback
            os.environ["GRPO_ENV_ALLOW_UNISOLATED"] = "1"
        self.service = ScoringService(rewards, workers=workers, grace=grace)

    def ready(self) -> int:
        return os.getpid()

    def score(self, request: int, items: list[Item]) -> tuple[int, list[tuple[float, str, dict]]]:
        """Score a chunk; the reply echoes the request's id."""
        return request, [(o.score, o.status.value, o.details) for o in self.service.score(items)]

    def pids(self) -> list[int]:
        """This actor's process and its scoring workers (for tests that check nothing is left)."""
        return [os.getpid(), *(w.proc.pid for w in self.service._workers)]

    def close(self) -> None:
        self.service.close()


# ---------------------------------------------------------------------------------------------
# in the trainer


@dataclass
class _Node:
    node_id: str
    address: str
    actor: Any
    flying: int = 0  # chunks sent and not answered
    busy_until: float = 0.0  # monotonic time by which all it holds must have answered (deadlines only)


@dataclass
class _Chunk:
    node: _Node
    request: int
    jobs: list[tuple[int, Item, int]]  # (index in the batch, item, times resent)
    deadline: float


class RayScoringService(Scores):
    """Scores on every usable node of a Ray cluster; the same interface and outcomes as
    :class:`~grpo_env.scoring.local.ScoringService`. ``workers``: scoring processes per node."""

    def __init__(self, rewards: Mapping[str, Reward], address: str = "auto", workers: int = 2, grace: float = 1.0,
                 max_in_flight: int | None = None, allow_unisolated: bool = False, retries: int = RETRIES,
                 answer_slack: float = ANSWER_SLACK_S):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.rewards = dict(rewards)
        self.workers, self.grace, self.retries, self.answer_slack = workers, grace, retries, answer_slack
        self.allow_unisolated = allow_unisolated
        self.counts: Counter[str] = Counter()  # per-status counts over the service's life
        self.lost = 0  # nodes lost (their actor died) or given up (no answer)
        self.resent = 0  # items sent again after their node was lost
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._requests = itertools.count()
        self._nodes: dict[str, _Node] = {}
        self._closed = False
        self._joined = connect(address)
        try:
            self._start(usable_nodes(probe_nodes(), allow_unisolated))
        except BaseException:
            self.close()
            raise
        self.max_in_flight = max_in_flight or 2 * workers * len(self._nodes)

    # -- nodes ---------------------------------------------------------------------------------

    def _start(self, reports: list[NodeReport]) -> None:
        """A scoring actor on each node; a ClusterError naming the nodes where one could not start."""
        started = start_actors(ScoringNode, reports, lambda r: (self.rewards, self.workers, self.grace,
                                                                self.allow_unisolated and not r.isolated))
        self._nodes.update({r.node_id: _Node(r.node_id, r.address, actor) for r, actor in started})

    def _refill(self) -> None:
        """After a node was lost: start actors on live nodes that have none (a node that came back, a
        new one). A node that fails its probe is left out, with a warning."""
        import warnings

        fresh = [(nid, ip) for nid, ip in scoring_nodes() if nid not in self._nodes]
        for rep in probe_nodes(fresh, timeout=10.0) if fresh else []:
            try:
                self._start(usable_nodes([rep], self.allow_unisolated))
            except ClusterError as e:
                warnings.warn(f"scoring: {e}", stacklevel=2)

    def _drop(self, node: _Node) -> None:
        if self._nodes.pop(node.node_id, None) is not None:
            self.lost += 1
            _ray().kill(node.actor)

    def pids(self) -> dict[str, list[int]]:
        """Each node's actor and scoring worker pids."""
        ray = _ray()
        return {nid: ray.get(n.actor.pids.remote(), timeout=30) for nid, n in self._nodes.items()}

    # -- scoring -------------------------------------------------------------------------------

    def score_iter(self, items: Iterable[Item]) -> Iterator[Outcome]:
        """Score a stream of items, yielding outcomes in input order; at most ``max_in_flight``
        items are out at once and at most ``4 * max_in_flight`` results are held."""
        if os.getpid() != self.pid:
            raise RuntimeError(f"this scoring service belongs to process {self.pid}; process {os.getpid()} "
                               "(a forked child) must make its own")
        with self._lock:
            if self._closed:
                raise RuntimeError("the scoring service is closed")
            yield from self._run(iter(items))

    def _run(self, items: Iterator[Item]) -> Iterator[Outcome]:
        flying: dict[Any, _Chunk] = {}  # object ref -> chunk
        try:
            yield from self._dispatch(items, flying)
        finally:  # a consumer that stopped early: its chunks' answers are dropped, their nodes free again
            for chunk in flying.values():
                chunk.node.flying -= 1

    def _dispatch(self, items: Iterator[Item], flying: dict[Any, _Chunk]) -> Iterator[Outcome]:
        ray = _ray()
        pending: deque[tuple[int, Item, int]] = deque()  # (index, item, times resent), resent ones first
        done: dict[int, Outcome] = {}
        out_items = 0  # items in flying chunks
        counter = itertools.count()
        next_out, exhausted = 0, False
        window = 4 * self.max_in_flight
        while True:
            # pull items while the window has room
            while not exhausted and len(pending) + out_items + len(done) < window:
                got = next_known(items, counter, self.rewards, done)
                if got is None:
                    exhausted = True
                else:
                    pending.append((*got, 0))
            # send chunks to the least busy nodes, within the cluster-wide limit
            while pending and out_items < self.max_in_flight:
                if not self._nodes:
                    self._refill()
                if not self._nodes:
                    while pending:
                        idx, (name, _, _), _ = pending.popleft()
                        done[idx] = Outcome.error("no scoring node left in the Ray cluster", reward=name)
                    break
                node = min(self._nodes.values(), key=lambda n: n.flying)
                if node.flying >= PIPELINE:
                    break
                jobs = [pending.popleft() for _ in range(min(self.workers, len(pending),
                                                             self.max_in_flight - out_items))]
                chunk = self._send(node, jobs)
                flying[chunk.node.actor.score.remote(chunk.request, [j[1] for j in jobs])] = chunk
                out_items += len(jobs)
            while next_out in done:
                out = done.pop(next_out)
                self.counts[out.status.value] += 1
                yield out
                next_out += 1
            if not flying:
                if exhausted and not pending and not done:
                    return
                continue
            # wait for a chunk or the nearest deadline
            timeout = max(0.0, min(c.deadline for c in flying.values()) - time.monotonic())
            ready, _ = ray.wait(list(flying), num_returns=1, timeout=timeout)
            now = time.monotonic()
            for ref in list(flying):
                chunk = flying[ref]
                if ref not in ready and now < chunk.deadline:
                    continue
                del flying[ref]
                out_items -= len(chunk.jobs)
                chunk.node.flying -= 1
                if ref in ready:
                    self._receive(ray, ref, chunk, done, pending)
                else:  # neither an answer nor a death within every deadline it held: given up, final
                    for idx, (name, _, _), _ in chunk.jobs:
                        done[idx] = Outcome.of(Status.TIMEOUT, 0.0, reward=name, reason=(
                            f"scoring node {chunk.node.address} gave no answer within the deadlines of all it held "
                            f"(+{self.answer_slack:g} s): given up, not retried"))
                    self._drop(chunk.node)

    def _send(self, node: _Node, jobs: list[tuple[int, Item, int]]) -> _Chunk:
        now = time.monotonic()
        longest = max(self.rewards[item[0]].timeout for _, item, _ in jobs) + self.grace
        node.busy_until = max(now, node.busy_until) + longest
        node.flying += 1
        return _Chunk(node, next(self._requests), jobs, node.busy_until + self.answer_slack)

    def _receive(self, ray, ref, chunk: _Chunk, done: dict[int, Outcome],
                 pending: deque[tuple[int, Item, int]]) -> None:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        try:
            request, outs = ray.get(ref)
        except (ActorDiedError, ActorUnavailableError, RayActorError) as e:  # the node is lost: resend elsewhere
            self._drop(chunk.node)
            for idx, item, resent in reversed(chunk.jobs):
                if resent >= self.retries:
                    done[idx] = Outcome.error(f"its scoring node was lost {resent + 1} times (last: {_why(e)})",
                                              reward=item[0])
                else:
                    self.resent += 1
                    pending.appendleft((idx, item, resent + 1))
            return
        except Exception as e:  # noqa: BLE001 - the node's actor raised (an item it could not unpickle): typed
            for idx, (name, _, _), _ in chunk.jobs:
                done[idx] = Outcome.error(f"scoring node {chunk.node.address} failed the request: {_why(e)}",
                                          reward=name)
            return
        if request != chunk.request or not isinstance(outs, list) or len(outs) != len(chunk.jobs):
            for idx, (name, _, _), _ in chunk.jobs:
                done[idx] = Outcome.error(f"scoring node {chunk.node.address} answered request {request!r:.40} "
                                          f"while running request {chunk.request}: reply discarded", reward=name)
            return
        for (idx, _, _), (score, status, details) in zip(chunk.jobs, outs):
            done[idx] = Outcome(score=score, status=Status(status), details=details)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self.pid:
            return
        stop_actors([n.actor for n in self._nodes.values()], disconnect=self._joined)
        self._nodes.clear()
