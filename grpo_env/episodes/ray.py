"""Episodes on a Ray cluster (``[scoring] backend = "ray"``): each node runs the local episode host.

An :class:`EpisodeNode` actor on every usable node (probed as for scoring: the same grpo-env, a
sandbox that isolates) holds the environments and runs each episode it is given in a process of its
own under the same per-step and per-episode deadlines as on one machine
(:class:`~grpo_env.episodes.local.EpisodeHost`); a deadline kills on the node where the episode runs.
:class:`RayEpisodeHost` is the engine's episode host in the trainer: it places each new episode on
the least loaded node, sends each node its episodes' messages in one request, and keeps every
episode's history (each message with the reply it got).

An episode is a deterministic function of its example and the turns it was sent (``grpo-env check``
plays each fixture twice to hold plugins to that). So an episode whose node is lost (its actor died)
is **replayed** on another node: its history is sent again, each reply is checked against the one
recorded, and then the pending message. A reply that differs means the environment is not
deterministic: the episode ends ``error`` (saying so), never trains on a state the model did not
see. An episode is replayed at most :data:`RETRIES` times. A node that neither answers nor dies
within the deadlines of all it was sent (plus :data:`ANSWER_SLACK_S`) is given up: its episodes end
``timeout``, not replayed (a deadline's worth of work is never spent twice).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from grpo_env.environment import Environment
from grpo_env.episodes.local import EpisodeHost, _Session
from grpo_env.scoring.ray import (ANSWER_SLACK_S, RETRIES, _ray, _why, connect, probe_nodes, start_actors,
                                  stop_actors, usable_nodes)
from grpo_env.types import Outcome, Status

Message = tuple  # a message to an episode process: ("make", example), ("turn", ...), ("end", ...)


# ---------------------------------------------------------------------------------------------
# on a node


class EpisodeNode:
    """A Ray actor: the local episode host on one node, its sessions named by the trainer's keys."""

    def __init__(self, environments: Mapping[str, Environment], workers: int, grace: float, unisolated: bool):
        if unisolated:
            os.environ["GRPO_ENV_ALLOW_UNISOLATED"] = "1"
        self.host = EpisodeHost({k: (env, {}) for k, env in environments.items()}, None, workers=workers,
                                grace=grace, forks="direct")  # this small process forks the episodes itself
        self.sessions: dict[int, _Session] = {}

    def ready(self) -> int:
        return os.getpid()

    def exchange(self, request: int, jobs: list[tuple[int, str, list[tuple[Message, Any]], Message]]) -> tuple:
        """Each job: (key, environment, history to replay first, message). Replies in job order: (reply,
        None) or (None, outcome) when the episode ended here (deadline, death, error, a replay that
        diverged), each with the seconds its environment worked on the message."""
        results: dict[int, tuple] = {}
        sessions = {}
        for key, env_name, history, msg in jobs:
            if key not in self.sessions:
                env = self.host.environments[env_name][0]
                self.sessions[key] = _Session(env, {}, history[0][0][1] if history else msg[1])
            sessions[key] = self.sessions[key]
        # replay: the k-th recorded message of every replaying episode together, each reply checked
        depth = max((len(h) for _, _, h, _ in jobs), default=0)
        for k in range(depth):
            step = [(key, h[k]) for key, _, h, _ in jobs if len(h) > k and key not in results]
            got = self.host.exchange([sessions[key] for key, _ in step], [m for _, (m, _) in step])
            for (key, (m, want)), reply in zip(step, got):
                s = sessions[key]
                if not s.open:
                    results[key] = (None, s.outcome, 0.0)
                elif reply != want:
                    self.host._fail(s, Outcome.error(f"environment {s.env.name!r} is not deterministic: replayed on "
                                                     f"another node after its node was lost, message {k + 1} "
                                                     f"({m[0]}) got a different reply; the episode ends here"))
                    results[key] = (None, s.outcome, 0.0)
        live = [(key, msg) for key, _, _, msg in jobs if key not in results]
        before = {key: sessions[key].stats.env_seconds for key, _ in live}
        got = self.host.exchange([sessions[key] for key, _ in live], [m for _, m in live])
        for (key, _), reply in zip(live, got):
            s = sessions[key]
            took = s.stats.env_seconds - before[key]
            results[key] = (reply, None, took) if s.open else (None, s.outcome, took)
        for key, (_, ended, _) in results.items():
            if ended is not None:
                self.sessions.pop(key).kill()
        return request, [results[key] for key, _, _, _ in jobs]

    def release(self, keys: list[int]) -> None:
        """These episodes are over: their processes stopped and reaped."""
        for key in keys:
            s = self.sessions.pop(key, None)
            if s is not None:
                s.stop()

    def pids(self) -> list[int]:
        return [os.getpid(), *(s.proc.pid for s in self.sessions.values() if s.proc is not None)]

    def close(self) -> None:
        self.release(list(self.sessions))
        self.host.close()


# ---------------------------------------------------------------------------------------------
# in the trainer


@dataclass
class _Place:
    """Where a trainer-side session's episode lives; ``end`` (called by ``_Session.kill``) releases it."""

    host: "RayEpisodeHost"
    key: int
    node: str = ""  # node id, "" before placement
    history: list[tuple[Message, Any]] = field(default_factory=list)  # each message and the reply it got
    replays: int = 0
    synced: bool = True  # its node holds the episode's state (False after its node was lost: replay)

    def end(self, wait: float = 0.0) -> None:
        self.host._release(self)


@dataclass
class _Node:
    node_id: str
    address: str
    actor: Any
    episodes: int = 0  # live episodes placed here


class RayEpisodeHost(EpisodeHost):
    """The engine's episode host with every episode on a node of a Ray cluster. ``workers``: episode
    steps a node runs at once."""

    def __init__(self, environments, service, workers: int = 2, grace: float = 1.0, address: str = "auto",
                 allow_unisolated: bool = False, retries: int = RETRIES, answer_slack: float = ANSWER_SLACK_S):
        super().__init__(environments, service, workers=workers, grace=grace, forks="direct")
        self.allow_unisolated, self.retries, self.answer_slack = allow_unisolated, retries, answer_slack
        self.lost = 0  # nodes lost or given up
        self.replayed = 0  # episodes replayed on another node
        self._keys = itertools.count()
        self._requests = itertools.count()
        self._nodes: dict[str, _Node] = {}
        self._joined = connect(address)
        try:
            envs = {k: env for k, (env, _) in self.environments.items()}
            started = start_actors(EpisodeNode, usable_nodes(probe_nodes(), allow_unisolated),
                                   lambda r: (envs, workers, grace, allow_unisolated and not r.isolated), "episodes")
            self._nodes = {r.node_id: _Node(r.node_id, r.address, a) for r, a in started}
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        stop_actors([n.actor for n in self._nodes.values()], disconnect=getattr(self, "_joined", False))
        self._nodes.clear()
        super().close()

    def pids(self) -> dict[str, list[int]]:
        ray = _ray()
        return {nid: ray.get(n.actor.pids.remote(), timeout=30) for nid, n in self._nodes.items()}

    # -- placement -------------------------------------------------------------------------------

    def _place(self, s: _Session) -> _Place | None:
        """``s`` on the least loaded node: a new episode, or one whose node was lost (replayed there,
        at most ``retries`` times). None when it cannot be placed: ``s`` is ended ``error``."""
        place = s.proc if isinstance(s.proc, _Place) else _Place(self, 0)
        if place.node:  # its node was lost
            if place.replays >= self.retries:
                self._fail(s, Outcome.error(f"environment {s.env.name!r}: its episode's node was lost "
                                            f"{place.replays + 1} times"))
                return None
            place.replays, place.synced = place.replays + 1, False
            self.replayed += 1
        if not self._nodes:
            self._fail(s, Outcome.error(f"environment {s.env.name!r}: no episode node left in the Ray cluster"))
            return None
        node = min(self._nodes.values(), key=lambda n: n.episodes)
        node.episodes += 1
        place.node, place.key = node.node_id, next(self._keys)
        s.proc = place
        return place

    def _release(self, place: _Place) -> None:
        node = self._nodes.get(place.node)
        if node is not None and place.node:
            node.episodes -= 1
            node.actor.release.remote([place.key])
        place.node = ""

    def _drop(self, node_id: str) -> None:
        node = self._nodes.pop(node_id, None)
        if node is not None:
            self.lost += 1
            _ray().kill(node.actor)

    # -- the exchange --------------------------------------------------------------------------

    def exchange(self, sessions: list[_Session], messages: list[tuple]) -> list[Any]:
        """As the local host's: each open session's message to its episode, the replies (None for a
        session that ended, its outcome set), with each node's episodes in one request."""
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        ray = _ray()
        replies: list[Any] = [None] * len(sessions)
        todo = [i for i, s in enumerate(sessions) if s.open]
        while todo:
            by_node: dict[str, list[int]] = {}
            for i in todo:
                s = sessions[i]
                place = s.proc if isinstance(s.proc, _Place) and s.proc.node in self._nodes else self._place(s)
                if place is None:
                    continue
                by_node.setdefault(place.node, []).append(i)
            calls = {}
            now = time.monotonic()
            for nid, idxs in by_node.items():
                jobs = []
                for i in idxs:
                    place = sessions[i].proc
                    jobs.append((place.key, sessions[i].env.name, [] if place.synced else place.history, messages[i]))
                per_round = max(min(sessions[i].env.step_timeout, sessions[i].env.episode_timeout) + self.grace
                                for i in idxs)
                rounds = math.ceil(len(idxs) / self.workers) * (1 + max(len(j[2]) for j in jobs))
                request = next(self._requests)
                ref = self._nodes[nid].actor.exchange.remote(request, jobs)
                calls[ref] = (nid, idxs, request, now + rounds * per_round + self.answer_slack)
            todo = []
            while calls:
                timeout = max(0.0, min(c[3] for c in calls.values()) - time.monotonic())
                ready, _ = ray.wait(list(calls), num_returns=1, timeout=timeout)
                now = time.monotonic()
                for ref in list(calls):
                    nid, idxs, request, deadline = calls[ref]
                    if ref not in ready and now < deadline:
                        continue
                    del calls[ref]
                    if ref not in ready:  # no answer within all its deadlines: given up, final
                        self._drop(nid)
                        for i in idxs:
                            s = sessions[i]
                            self._fail(s, Outcome.of(Status.TIMEOUT, 0.0, reason=(
                                f"environment {s.env.name!r}: its node gave no answer within the deadlines of all "
                                f"it was sent (+{self.answer_slack:g} s); given up, not replayed")), status="timeout")
                        continue
                    try:
                        answered, results = ray.get(ref)
                    except (ActorDiedError, ActorUnavailableError, RayActorError):
                        self._drop(nid)
                        todo += idxs  # replayed on another node in the next round
                        continue
                    except Exception as e:  # noqa: BLE001 - the node failed the request: typed, per episode
                        for i in idxs:
                            self._fail(sessions[i], Outcome.error(f"environment {sessions[i].env.name!r}: its node "
                                                                  f"failed the request: {_why(e)}"))
                        continue
                    if answered != request or len(results) != len(idxs):
                        for i in idxs:
                            self._fail(sessions[i], Outcome.error(f"environment {sessions[i].env.name!r}: its node "
                                                                  f"answered another request; reply discarded"))
                        continue
                    for i, (reply, ended, took) in zip(idxs, results):
                        s = sessions[i]
                        s.stats.env_seconds += took
                        if ended is not None:
                            self._fail(s, ended, status="timeout" if ended.status is Status.TIMEOUT else "error")
                        else:
                            s.proc.history.append((messages[i], reply))
                            s.proc.synced = True
                            replies[i] = reply
        return replies
