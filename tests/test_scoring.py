"""The scoring service: hard deadlines by kill, worker replacement, order, determinism, threads."""

import os
import threading
import time

import pytest

from grpo_env import Example, Reward, Status
from grpo_env.scoring import ScoringService

import rewards_for_tests as rt

EX = Example(id="e", prompt="q", gold={"answer": "42"})


def rewards(**extra):
    base = {
        "exact": Reward(name="exact", fn=rt.exact),
        "hang": Reward(name="hang", fn=rt.hang, timeout=0.5),
        "sleep": Reward(name="sleep", fn=rt.sleep_then_answer, timeout=0.5),
        "raises": Reward(name="raises", fn=rt.raises),
        "returns_float": Reward(name="returns_float", fn=rt.returns_float),
        "nan_score": Reward(name="nan_score", fn=rt.nan_score),
        "exits": Reward(name="exits", fn=rt.exits),
        "penalty": Reward(name="penalty", fn=rt.length_penalty, max_score=0.0),
        "unpicklable": Reward(name="unpicklable", fn=rt.unpicklable_details),
    }
    return {**base, **extra}


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def test_hung_reward_times_out_within_deadline_and_pool_keeps_serving():
    with ScoringService(rewards(), workers=2, grace=0.3) as svc:
        t0 = time.monotonic()
        outs = svc.score([("hang", EX, "x"), ("exact", EX, "42"), ("hang", EX, "y"), ("exact", EX, "41")])
        elapsed = time.monotonic() - t0
        assert [o.status for o in outs] == [Status.TIMEOUT, Status.CORRECT, Status.TIMEOUT, Status.INCORRECT]
        assert outs[0].score == 0.0 and outs[0].details["deadline_s"] == pytest.approx(0.8)
        assert elapsed < 0.8 * 2 + 2.0  # two deadlines, in parallel at best, plus slack for forking
        assert svc.replaced == 2
        # the replaced workers serve later items normally
        assert [o.status for o in svc.score([("exact", EX, "42")] * 6)] == [Status.CORRECT] * 6
        assert svc.counts["timeout"] == 2 and svc.counts["correct"] == 7


def test_reward_just_inside_deadline_is_not_killed():
    with ScoringService(rewards(), workers=1, grace=0.5) as svc:
        assert svc.score([("sleep", EX, "0.3")])[0].status is Status.CORRECT
        assert svc.score([("sleep", EX, "1.5")])[0].status is Status.TIMEOUT


@pytest.mark.parametrize(
    "name, needle",
    [
        ("raises", "reward 'raises' raised KeyError"),
        ("returns_float", "returned float, expected grpo_env.Outcome"),
        ("nan_score", "reward 'nan_score' raised ValidationError"),
        ("exits", "scoring worker died running reward 'exits' (exit code 7)"),
        ("missing", "no reward named 'missing'"),
    ],
)
def test_reward_failures_are_errors_naming_the_reward_never_zero(name, needle):
    with ScoringService(rewards(), workers=1) as svc:
        bad, good = svc.score([(name, EX, "42"), ("exact", EX, "42")])
    assert bad.status is Status.ERROR and needle in bad.details["error"]
    assert good.status is Status.CORRECT


def test_unserialisable_details_cross_the_pipe_as_text():
    with ScoringService(rewards(), workers=1) as svc:
        out = svc.score([("unpicklable", EX, "")])[0]
    assert out.status is Status.CORRECT and "TextIOWrapper" in out.details["handle"]


def test_results_in_input_order_and_deterministic():
    items = [("exact", EX, str(i % 50)) for i in range(200)] + [("sleep", EX, "0.01")] * 5
    with ScoringService(rewards(), workers=2, window=3) as svc:
        a = [o.model_dump() for o in svc.score(items)]
        b = [o.model_dump() for o in svc.score(items)]
    assert a == b
    assert [o["status"] for o in a[:50]] == [Status.CORRECT if i == 42 else Status.INCORRECT for i in range(50)]


def test_score_examples_combines_weights_and_excludes_errors():
    with ScoringService(rewards(), workers=2) as svc:
        s_ok, s_pen, s_err = svc.score_examples(
            [{"exact": 1.0, "penalty": 0.5}, {"exact": 1.0, "penalty": 0.5}, {"exact": 1.0, "raises": 1.0}],
            [EX, EX, EX],
            ["42", "4" * 100, "42"],
        )
    assert s_ok.total == pytest.approx(1.0 - 0.5 * 0.02) and s_ok.status is Status.CORRECT
    assert s_pen.total == pytest.approx(-0.5) and s_pen.status is Status.INCORRECT
    assert s_err.total != s_err.total and s_err.status is Status.ERROR  # NaN: no signal, not 0


def test_usable_from_threads_concurrently():
    results = {}
    with ScoringService(rewards(), workers=2) as svc:
        def run(k):
            results[k] = [o.status for o in svc.score([("exact", EX, "42"), ("hang", EX, "")] * 2)]

        threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert all(results[k] == [Status.CORRECT, Status.TIMEOUT] * 2 for k in range(3))


def test_close_leaves_no_worker_processes():
    svc = ScoringService(rewards(), workers=3)
    svc.score([("exact", EX, "42"), ("hang", EX, "")])
    pids = [w.proc.pid for w in svc._workers]
    assert all(os.path.exists(f"/proc/{p}") for p in pids)
    svc.close()
    assert not any(p in children(os.getpid()) for p in pids)
    with pytest.raises(RuntimeError, match="closed"):
        svc.score([("exact", EX, "42")])


def test_workers_die_with_a_killed_parent(tmp_path):
    import signal
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from grpo_env import Reward\nfrom grpo_env.scoring import ScoringService\nimport rewards_for_tests as rt\n"
        "svc = ScoringService({'exact': Reward(name='exact', fn=rt.exact)}, workers=2)\n"
        "print(' '.join(str(w.proc.pid) for w in svc._workers), flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(os.path.exists(f"/proc/{p}") for p in pids)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_abandoned_stream_does_not_leak_results_into_the_next_batch():
    with ScoringService(rewards(), workers=2) as svc:
        stream = svc.score_iter([("sleep", EX, "0.2")] * 6)
        assert next(stream).status is Status.CORRECT
        stream.close()  # stop early with jobs still in flight
        outs = svc.score([("exact", EX, "41"), ("exact", EX, "42"), ("exact", EX, "")])
    assert [o.status for o in outs] == [Status.INCORRECT, Status.CORRECT, Status.UNPARSABLE]
