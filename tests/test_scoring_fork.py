"""Scores that cannot cross: a scoring service belongs to the process that made it, and every reply
is checked against the request it answers. Through verl's entry point (``compute_score``) from
forked children, a fork-context process pool and threads; a service used directly in a forked
child; a reply to another request sitting in a worker's pipe."""

from __future__ import annotations

import atexit
import gc
import json
import multiprocessing as mp
import os
import random
import select
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from grpo_env import Example, Reward, Status
from grpo_env.integrations import verl
from grpo_env.scoring import ScoringService

import rewards_for_tests as rt

EX = Example(id="e", prompt="q", gold={"answer": "42"})
N = 30  # items a child scores


def rows(k: int) -> list[tuple[str, str, float]]:
    """Child ``k``'s items: (solution, gold, the right score). Golds differ between children, right and
    wrong answers are mixed, so a score answering another child's item shows."""
    rng = random.Random(k)
    out = []
    for i in range(N):
        gold = 1000 * (k + 1) + i
        right = rng.random() < 0.5
        out.append((f"so #### {gold if right else gold + 7}", str(gold), 1.0 if right else 0.0))
    return out


def score_rows(k: int) -> list[float]:
    """Score child ``k``'s items the way verl's NaiveRewardManager does: one call per response."""
    return [verl.compute_score(data_source="openai/gsm8k", solution_str=s, ground_truth=g,
                               extra_info={"index": i})["score"] for i, (s, g, _) in enumerate(rows(k))]


def expected(k: int) -> list[float]:
    return [want for _, _, want in rows(k)]


def worker_pids(service: ScoringService) -> list[int]:
    return sorted(w.proc.pid for w in service._workers)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone(pids, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


def fork(fn, *args) -> tuple[int, int]:
    """Run ``fn(*args)`` in a child made by ``os.fork``; its JSON result comes back on a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(r)
            try:
                result = {"ok": fn(*args)}
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                result = {"raised": f"{type(e).__name__}: {e}"}
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def results(children: list[tuple[int, int]], timeout: float) -> list[dict]:
    """Each forked child's result, all within ``timeout`` seconds (a hung child fails the test)."""
    deadline = time.monotonic() + timeout
    out = []
    try:
        for pid, r in children:
            data = b""
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([r], [], [], left)[0]:
                    raise AssertionError(f"forked child {pid} gave no result within {timeout} s (hung)")
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                data += chunk
            out.append(json.loads(data))
    finally:
        for pid, r in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            os.close(r)
    return out


# -- verl's compute_score ------------------------------------------------------------------------


def _child_of_a_verl_process(k: int) -> dict:
    scores = score_rows(k)
    mine = worker_pids(verl._service)
    atexit._run_exitfuncs()  # what the child's normal exit runs: must not stop the parent's workers
    return {"scores": scores, "workers": mine}


def test_forked_children_of_a_verl_process_get_their_own_scores():
    assert score_rows(9) == expected(9)  # the parent's service is up, its workers forked
    parent = verl._service
    before = (worker_pids(parent), parent.replaced)
    t0 = time.monotonic()
    got = results([fork(_child_of_a_verl_process, k) for k in range(4)], timeout=60)
    elapsed = time.monotonic() - t0
    for k, g in enumerate(got):
        assert "ok" in g, g
        assert g["ok"]["scores"] == expected(k), f"child {k} got another's scores"
        assert not set(g["ok"]["workers"]) & set(before[0]), "a child used the parent's workers"
    assert elapsed < 30
    # the parent's service is untouched by its children (their use, their exit): still right, on the
    # same workers (a worker a child had stopped would be found dead and replaced here)
    assert score_rows(5) == expected(5)
    assert verl._service is parent and (worker_pids(parent), parent.replaced) == before
    assert gone([p for g in got for p in g["ok"]["workers"]]), "a child's scoring workers outlived it"


def test_a_child_forked_while_the_service_is_being_made_does_not_deadlock():
    """Another thread inside ``compute_score``'s service set-up at the fork (here: this thread holds
    its lock) leaves the child a held lock; the child starts a fresh one and scores."""
    with verl._lock:
        child = fork(lambda: {"scores": score_rows(3)})
    (got,) = results([child], timeout=30)
    assert got == {"ok": {"scores": expected(3)}}


def _pool_task(k: int) -> dict:
    return {"scores": score_rows(k), "workers": worker_pids(verl._service), "pid": os.getpid()}


def test_fork_context_process_pool_scores_are_its_own():
    assert score_rows(9) == expected(9)
    parent = worker_pids(verl._service)
    t0 = time.monotonic()
    with ProcessPoolExecutor(4, mp_context=mp.get_context("fork")) as pool:
        got = list(pool.map(_pool_task, range(8), timeout=60))
    elapsed = time.monotonic() - t0
    assert [g["scores"] for g in got] == [expected(k) for k in range(8)]
    assert all(not set(g["workers"]) & set(parent) for g in got)
    assert elapsed < 30
    assert worker_pids(verl._service) == parent and score_rows(5) == expected(5)
    assert gone([p for g in got for p in g["workers"]]), "a pool process's scoring workers outlived it"


def test_threads_calling_compute_score_concurrently_get_their_own_scores():
    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as threads:
        got = list(threads.map(score_rows, range(4)))
    assert got == [expected(k) for k in range(4)]
    assert time.monotonic() - t0 < 30


# -- the service itself ----------------------------------------------------------------------------


def _use_inherited_service(svc: ScoringService) -> dict:
    t0 = time.monotonic()
    try:
        svc.score([("exact", EX, "41")])
        said = None
    except RuntimeError as e:
        said = str(e)
    seconds = time.monotonic() - t0
    svc.close()  # an inherited copy: closing it (or collecting it) must not stop the owner's workers
    del svc
    gc.collect()
    return {"said": said, "seconds": seconds}


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_a_service_used_in_a_forked_child_refuses_and_leaves_the_parent_workers_alone():
    """The child forks while a parent thread is scoring (the service's lock held): it gets an error
    naming the owner at once, neither a deadlock nor an answer over the parent's pipes."""
    rewards = {"exact": Reward(name="exact", fn=rt.exact), "sleep": Reward(name="sleep", fn=rt.sleep_then_answer)}
    svc = ScoringService(rewards, workers=2)
    try:
        assert svc.score([("exact", EX, "42")])[0].status is Status.CORRECT
        pids = worker_pids(svc)
        busy = {}
        thread = threading.Thread(target=lambda: busy.update(out=svc.score([("sleep", EX, "1.0"), ("exact", EX, "42")])))
        thread.start()
        time.sleep(0.2)
        (got,) = results([fork(_use_inherited_service, svc)], timeout=20)
        thread.join(timeout=10)
        assert "ok" in got, got
        said = got["ok"]["said"]
        assert said is not None and f"belongs to process {os.getpid()}" in said, said
        assert got["ok"]["seconds"] < 0.5
        assert [o.status for o in busy["out"]] == [Status.CORRECT, Status.CORRECT]
        assert worker_pids(svc) == pids and svc.replaced == 0 and all(alive(p) for p in pids)
        assert [o.status for o in svc.score([("exact", EX, "41"), ("exact", EX, "42")])] == [
            Status.INCORRECT, Status.CORRECT]
    finally:
        svc.close()
    assert not set(pids) & set(children(os.getpid()))


def test_a_reply_to_another_request_is_an_error_never_a_score():
    """A reply waiting in a worker's pipe that answers some other request (what a second user of the
    pipe, such as a forked child, leaves there) is an ``error`` and the worker is replaced: it is
    never credited to the item the worker runs now, nor shifts the replies after it."""
    with ScoringService({"exact": Reward(name="exact", fn=rt.exact)}, workers=1) as svc:
        assert svc.score([("exact", EX, "42")])[0].status is Status.CORRECT
        stale = svc._workers[0]
        # another party's request on this worker's pipe, numbered as this service's first request (already
        # answered) and as every batch's first item was before ids were the service's
        stale.conn.send((0, "exact", EX, "42"))
        assert stale.conn.poll(5)  # its reply, a 1.0, is waiting in the pipe
        t0 = time.monotonic()
        outs = svc.score([("exact", EX, "41"), ("exact", EX, "42"), ("exact", EX, "40")])
        assert time.monotonic() - t0 < 5
        assert outs[0].status is Status.ERROR and outs[0].score == 0.0
        assert "answered request" in outs[0].details["error"]
        assert [o.status for o in outs[1:]] == [Status.CORRECT, Status.INCORRECT]
        assert svc.replaced == 1 and svc._workers[0] is not stale
    assert not alive(stale.proc.pid)
