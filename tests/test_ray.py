"""Scoring on a real Ray cluster started here (issue 20): a head and two worker nodes on this machine.

Same rewards as the local service, a node killed mid-batch, hostile code with the same verdicts,
timeouts never retried, backpressure, nothing left behind, and misconfigured clusters refused before
training: no cluster at the address, a node where grpo-env does not import, a node without namespaces.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from grpo_env import Example, Outcome, Reward, Status, hookimpl  # noqa: E402
from grpo_env.engine.tiny import write_tiny  # noqa: E402
from grpo_env.plugins import get_registry  # noqa: E402
from grpo_env.sandbox import detect  # noqa: E402
from grpo_env.scoring import ScoringService  # noqa: E402
from grpo_env.scoring.ray import RayScoringService  # noqa: E402
from grpo_env.cli.train import main_eval, main_train  # noqa: E402
from grpo_env.environment import Environment, Episode, Step  # noqa: E402
from grpo_env.types import Message, Task  # noqa: E402

import rewards_for_tests as rt  # noqa: E402
from ray_cluster import RemoteCluster  # noqa: E402

TESTS = str(Path(__file__).parent)
GRPO_ENV = Path(sys.executable).with_name("grpo-env")
RAY = Path(sys.executable).with_name("ray")
EX = Example(id="e", prompt="q", gold={"answer": "42"})
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """A head and two worker nodes; their workers import this directory's modules."""
    c = RemoteCluster(2, pythonpath=TESTS)
    try:
        ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@contextlib.contextmanager
def local_then_ray(rewards, items):
    """``items`` scored by the local service, then through the cluster. Yields the local outcomes, the
    Ray outcomes, the seconds the Ray service took to start and score, and that service, still open."""
    with ScoringService(rewards, workers=1) as local:
        want = local.score(items)
    start = time.monotonic()
    with RayScoringService(rewards, workers=1) as service:
        got = service.score(items)
        yield want, got, time.monotonic() - start, service


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def assert_gone(pids, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left behind: {left}"


def kill_node(cluster, node, pids) -> None:
    """A machine dies: its raylet and every process of ours on it (the actor, its workers) at once."""
    cluster.remove_node(node, allow_graceful=False)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def statuses(outs):
    return [(o.score, o.status) for o in outs]


TEST_REWARDS = {
    "exact": Reward(name="exact", fn=rt.exact),
    "hang": Reward(name="hang", fn=rt.hang, timeout=0.5),
    "sleep": Reward(name="sleep", fn=rt.sleep_then_answer, timeout=5),
    "raises": Reward(name="raises", fn=rt.raises),
    "exits": Reward(name="exits", fn=rt.exits),
    "nan_score": Reward(name="nan_score", fn=rt.nan_score),
}


def test_same_outcomes_as_the_local_service_on_every_node_and_nothing_left(cluster):
    reg = get_registry()
    rewards = {**TEST_REWARDS, **{n: reg.reward(n) for n in ("math.answer", "format.think_answer_strict")}}
    math = Example(id="m", prompt="q", gold={"answer": "1/2"})
    items = [("exact", EX, str(40 + i % 4)) for i in range(12)]
    items += [("math.answer", math, c) for c in ("\\boxed{0.5}", "\\boxed{1/2}", "\\boxed{2}", "no answer")]
    items += [("format.think_answer_strict", EX, c) for c in ("<think>a</think><answer>42</answer>", "42")]
    items += [("hang", EX, "x"), ("raises", EX, "x"), ("exits", EX, "x"), ("nan_score", EX, "x"), ("nope", EX, "x")]
    with ScoringService(rewards, workers=1) as local:
        want = local.score(items)
    with RayScoringService(rewards, workers=1) as service:
        assert len(service._nodes) == 3
        pids = [p for ps in service.pids().values() for p in ps]
        got = service.score(items)
        assert service.lost == 0 and service.resent == 0
    assert statuses(got) == statuses(want)
    assert [o.status for o in got[12:16]] == [Status.CORRECT, Status.CORRECT, Status.INCORRECT, Status.UNPARSABLE]
    assert got[-5].status is Status.TIMEOUT and got[-1].status is Status.ERROR
    assert_gone(pids)  # each node's actor and its scoring workers


def test_a_node_lost_mid_batch_is_resent_elsewhere_with_the_same_outcomes(cluster):
    extra = cluster.add_node(num_cpus=1)
    items = [("sleep", EX, "0.5")] * 16 + [("exact", EX, "42"), ("exact", EX, "41")] * 4
    with RayScoringService(TEST_REWARDS, workers=1) as service:
        assert extra.node_id in service._nodes
        lost_pids = service.pids()[extra.node_id]
        threading.Timer(0.5, kill_node, args=(cluster, extra, lost_pids)).start()
        start = time.monotonic()
        got = service.score(items)
        took = time.monotonic() - start
        assert service.lost == 1 and service.resent >= 1, (service.lost, service.resent)
        assert extra.node_id not in service._nodes
        again = service.score(items[-4:])  # the service goes on with the nodes left
    assert [o.status for o in got] == [Status.CORRECT] * 16 + [Status.CORRECT, Status.INCORRECT] * 4
    assert statuses(again) == statuses(got[-4:])
    assert took < 20, took
    assert_gone(lost_pids)


def test_a_timeout_on_a_node_is_final_never_resent(cluster):
    with RayScoringService(TEST_REWARDS, workers=1) as service:
        start = time.monotonic()
        outs = service.score([("hang", EX, "x")] * 3)
        took = time.monotonic() - start
        assert service.resent == 0
    assert [o.status for o in outs] == [Status.TIMEOUT] * 3
    assert took < 5, took  # one deadline (0.5 s + 1 s grace) on each node at once, not three in a row


def test_backpressure_pulls_items_only_as_fast_as_the_cluster_scores(cluster):
    pulled = []

    def stream():
        for i in range(40):
            pulled.append(i)
            yield ("sleep", EX, "0.05")

    with RayScoringService(TEST_REWARDS, workers=1, max_in_flight=2) as service:
        ahead = []
        for n, out in enumerate(service.score_iter(stream())):
            assert out.status is Status.CORRECT
            ahead.append(len(pulled) - n)
        rest = service.score_iter([("sleep", EX, "0.3")] * 6)
        assert next(rest).status is Status.CORRECT
        rest.close()  # a consumer that stops early leaves the nodes free for the next batch
        assert [o.status for o in service.score([("exact", EX, "42")] * 4)] == [Status.CORRECT] * 4
    assert max(ahead) <= 4 * 2 + 1, max(ahead)  # the window: 4 x max_in_flight results held at most


@pytest.mark.skipif(not detect().full, reason="the attacks target the namespaces mode")
def test_hostile_code_gets_the_same_verdicts_through_ray_and_nothing_is_left(cluster):
    from test_sandbox_attacks import ESCAPE, REWARDS, _dev_shm, _sandbox_processes, _sysvipc
    from test_verdict_attacks import CASES, REWARDS as VERDICT_REWARDS, _example

    attacks = [
        "def f():\n    return 'escaped'\n",  # the control
        "import os\ndef f():\n    return 'escaped' if os.path.exists(%r) else 'no'\n" % str(Path(TESTS) / "test_ray.py"),
        "import socket\ndef f():\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    return 'escaped'\n",
        "def f():\n    while True:\n        pass\n",
        "import os\ndef f():\n    while True:\n        os.fork()\n",
        "import os, signal\ndef f():\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 'no'\n",
        "def f():\n    print('{\"v\": \"escaped\"}' * 100000)\n    return 'no'\n",
    ]
    items = [("code.tests", ESCAPE, c) for c in attacks]
    items += [("code.tests", _example(row), f"def {row['entry_point']}(x):\n    {body}\n") for row, body, _ in CASES]
    rewards = {**REWARDS, **VERDICT_REWARDS}
    ipc, shm, before = _sysvipc(), _dev_shm(), set(_sandbox_processes())
    with local_then_ray(rewards, items) as (want, got, took, _):
        pass
    assert statuses(got) == statuses(want)
    assert got[0].status is Status.CORRECT and all(o.score == 0.0 for o in got[1:len(attacks)]), got
    assert took < 60, took
    deadline = time.monotonic() + 10
    while (left := set(_sandbox_processes()) - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left and _sysvipc() == ipc and _dev_shm() <= shm, left


# ---------------------------------------------------------------------------------------------
# the same recipe and seed: the same rewards locally and on Ray


def starts_with_z(completion, example):  # importable on the nodes (this directory is on their path)
    return Outcome.correct() if completion.startswith("z") else Outcome.partial(0.1 * len(set(completion)) / 10)


def _examples(split, seed, options):
    i = 0
    while True:
        yield Example(id=f"{split}-{seed}-{i}", prompt=f"say {i % 5}")
        i += 1


class ZPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(Task(name="ray_z", rewards={"ray.z": 1.0}, examples=_examples))

    @hookimpl
    def register_rewards(self, register):
        register(Reward(name="ray.z", fn=starts_with_z))


def _recipe(tmp_path: Path, model: Path, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
name = "{name}"
seed = 3
[model]
name = "{model}"
[[tasks]]
name = "ray_z"
[[tasks]]
name = "games.guess"
[scoring]
workers = 1
[train]
steps = 2
group_size = 4
prompts_per_step = 2
max_new_tokens = 6
save = false
progress = false
output_dir = "{tmp_path / 'runs' / '{name}'}"
eval = {{ examples_per_task = 4, batch_size = 4, output = "{tmp_path / f'eval-{name}.json'}" }}
""")
    return path


def test_the_same_recipe_and_seed_give_the_same_rewards_locally_and_on_ray(cluster, tmp_path, register_plugin):
    register_plugin(ZPlugin(), name="ray_z")
    model = write_tiny(tmp_path / "tiny")
    rewards = {}
    for backend in ("local", "ray"):
        assert main_train(str(_recipe(tmp_path, model, backend)), [f"--scoring.backend={backend}"]) == 0
        recs = [json.loads(x) for x in (tmp_path / "runs" / backend / "metrics.jsonl").read_text().splitlines()]
        rewards[backend] = [(r["step"], r["reward_mean"], r["reward_by_task"]) for r in recs]
    assert len(rewards["ray"]) == 2 and rewards["ray"] == rewards["local"], rewards
    assert {"ray_z", "games.guess"} <= set().union(*(by for _, _, by in rewards["ray"])), rewards  # a task, episodes
    evals = {}
    for backend in ("local", "ray"):  # grpo-env eval: the same held-out results, episodes on the nodes too
        assert main_eval(str(tmp_path / f"{backend}.toml"), None, [f"--scoring.backend={backend}"]) == 0
        evals[backend] = json.loads((tmp_path / f"eval-{backend}.json").read_text())["results"]
    assert evals["ray"] == evals["local"] and evals["ray"]["games.guess"]["n"] == 4, evals


# ---------------------------------------------------------------------------------------------
# misconfigured clusters: refused, with the node and the reason, before training starts


def test_no_cluster_at_the_address_is_refused_before_the_model_loads(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[model]\nname = "%s"\n[[tasks]]\nname = "math_arith"\n[train]\nsteps = 1\n'
                      % (tmp_path / "no-model-here"))
    start = time.monotonic()
    proc = subprocess.run([str(GRPO_ENV), "train", str(recipe), "--scoring.backend=ray",
                           "--scoring.address=127.0.0.1:9"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GRPO_ENV_PLUGINS": "math"}, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "error: no Ray cluster at address '127.0.0.1:9'" in proc.stderr, proc.stderr
    assert "no-model-here" not in proc.stderr and "Traceback" not in proc.stderr  # the model was never looked at
    assert time.monotonic() - start < 90


def _join(cluster, tmp_path: Path, name: str, prelude: str = "", env: dict | None = None) -> subprocess.Popen:
    """A worker node started by `ray start --block` in a process that first runs ``prelude``."""
    script = (f"import os, sys\n{prelude}\n"
              f"os.execv({str(RAY)!r}, [{str(RAY)!r}, 'start', '--block', '--address', {cluster.address!r}, "
              f"'--num-cpus', '1', '--resources', '{{\"{name}\": 1}}'])\n")
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, **(env or {})}, cwd=tmp_path)


def _wait_nodes(n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len([x for x in ray.nodes() if x["Alive"]]) != n:
        assert time.monotonic() < deadline, f"the cluster did not reach {n} live nodes"
        time.sleep(0.3)


def test_nodes_without_grpo_env_or_namespaces_are_named_and_refused(cluster, tmp_path):
    shadow = tmp_path / "shadow" / "grpo_env"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'grpo_env'\")\n")
    before = len([x for x in ray.nodes() if x["Alive"]])
    nodes = [
        _join(cluster, tmp_path, "no_grpo_env", env={"PYTHONPATH": str(shadow.parent)}),
        _join(cluster, tmp_path, "no_namespaces",  # the filter the sandbox installs refuses every new namespace
              prelude="from grpo_env.sandbox import seccomp\nseccomp.install(seccomp.build())"),
    ]
    try:
        _wait_nodes(before + 2)
        doctor = subprocess.run([str(GRPO_ENV), "doctor", "--ray", "--address", cluster.address], capture_output=True,
                                text=True, timeout=120, cwd=tmp_path)
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        assert "grpo-env does not run there" in doctor.stdout and "No module named 'grpo_env'" in doctor.stdout
        assert "cannot isolate (missing: user namespace" in doctor.stdout, doctor.stdout
        assert "2 of 5 nodes would be refused" in doctor.stdout, doctor.stdout
        recipe = tmp_path / "r.toml"  # a built-in task; the model is never looked at
        recipe.write_text('[model]\nname = "%s"\n[[tasks]]\nname = "math_arith"\n' % (tmp_path / "no-model-here"))
        for opt_in, refused in (("false", 2), ("true", 1)):  # the opt-in covers missing namespaces only
            train = subprocess.run([str(GRPO_ENV), "train", str(recipe), "--scoring.backend=ray",
                                    f"--scoring.address={cluster.address}", f"--scoring.allow_unisolated={opt_in}"],
                                   capture_output=True, text=True, timeout=120, cwd=tmp_path,
                                   env={**os.environ, "GRPO_ENV_PLUGINS": "math"})
            assert train.returncode == 2 and "error: Ray nodes refused for scoring" in train.stderr, train.stderr
            assert train.stderr.count("  node ") == refused and "no-model-here" not in train.stderr, train.stderr
            assert ("allow_unisolated = true" in train.stderr) == (opt_in == "false"), train.stderr
    finally:
        for p in nodes:
            os.killpg(p.pid, signal.SIGTERM)
        for p in nodes:
            p.wait(timeout=30)
    _wait_nodes(before)


# ---------------------------------------------------------------------------------------------
# episodes on the nodes


class PidEcho(Episode):
    """Not deterministic: its observations name the process it runs in."""

    def step(self, turn):
        if turn.number < 3:
            return Step(observations=[Message(role="user", content=f"pid {os.getpid()}")])
        return Step.end(Outcome.correct())


def _episode_envs():
    import envs_for_tests as te

    envs = {k: (env, env.rewards) for k, env in te.environments().items()
            if k in ("tenv_talk", "tenv_secret", "tenv_hang", "tenv_crash")}
    pid = Environment(name="tenv_pid", examples=te._examples, make=PidEcho, max_turns=5, rewards={"tenv_pid": 1.0})
    return {**envs, "tenv_pid": (pid, pid.rewards)}


def _play(host, rows, after_first_turn=None, example=None):
    """Rows of (environment, secret, turns) played as one batch; each row's judgement and observations
    (``example``: every row's example, instead of one made from its secret)."""
    examples = [example or Example(id=f"r{i}", prompt="find it", gold={"secret": s}, task=env,
                                   tools=host.environments[env][0].tool_specs())
                for i, (env, s, _) in enumerate(rows)]
    batch = host.open(examples)
    seen = [[] for _ in rows]
    for t in range(3):
        live = [r for r, s in enumerate(batch.sessions) if s.open and t < len(rows[r][2])]
        if not live:
            break
        for r, obs in zip(live, batch.step(live, [rows[r][2][t] for r in live])):
            seen[r].append(None if obs is None else [(m.role, m.content) for m in obs])
        if t == 0 and after_first_turn is not None:
            after_first_turn(batch)
    return [(j.total, j.status) for j in batch.judge()], seen


def test_episodes_on_ray_are_judged_as_locally_and_a_lost_node_is_replayed(cluster):
    from grpo_env.episodes import EpisodeHost
    from grpo_env.episodes.ray import RayEpisodeHost

    call = '<tool_call>{"name": "get", "arguments": {}}</tool_call>'
    rows = [("tenv_pid", "0", ["a", "b", "c"])] * 4 + [("tenv_talk", "0", ["a", "b", "c"])] * 4
    rows += [("tenv_secret", "7", [call, "it is 7"]), ("tenv_secret", "7", ["it is 3"]),
             ("tenv_hang", "1", ["x"]), ("tenv_crash", "1", ["x"])]
    envs = _episode_envs()
    rewards = {"tenv.contains": Reward(name="tenv.contains", fn=rt.exact)}
    with ScoringService(rewards, workers=1) as service:
        with EpisodeHost(envs, service, workers=2) as local:
            want, want_seen = _play(local, rows)
        extra = cluster.add_node(num_cpus=1)
        lost_rows = []

        def kill_a_node(batch):
            lost_rows.extend(r for r, s in enumerate(batch.sessions) if s.proc is not None and s.proc.node == extra.node_id)
            kill_node(cluster, extra, node_pids[extra.node_id])

        start = time.monotonic()
        with RayEpisodeHost(envs, service, workers=2) as host:
            assert len(host._nodes) == 4
            node_pids = host.pids()
            got, got_seen = _play(host, rows, after_first_turn=kill_a_node)
            assert host.lost == 1 and host.replayed == len(lost_rows) > 0, (host.lost, host.replayed, lost_rows)
        took = time.monotonic() - start
    assert [st for _, st in want[8:]] == [Status.CORRECT, Status.INCORRECT, Status.TIMEOUT, Status.ERROR]
    for r, (row, w, g) in enumerate(zip(rows, want, got)):
        if r in lost_rows and row[0] == "tenv_pid":  # replayed elsewhere: its pid differs, so the episode ends
            assert g[1] is Status.ERROR, (r, g)
        else:
            assert g[1] is w[1] and (g[0] == w[0] or math.isnan(g[0]) and math.isnan(w[0])), (r, row, g, w)
            if row[0] != "tenv_pid":
                assert got_seen[r] == want_seen[r], r
    assert any(rows[r][0] == "tenv_pid" for r in lost_rows) and any(rows[r][0] != "tenv_pid" for r in lost_rows), lost_rows
    assert took < 30, took
    assert_gone([p for ps in node_pids.values() for p in ps])


def test_a_node_that_stops_answering_is_given_up_as_timeout_never_resent(cluster):
    """A node frozen mid-run (SIGSTOP: alive to Ray, answering nothing, as behind a partition): its
    items and episodes end `timeout` once every deadline it held has passed, and are not sent
    anywhere else; the others go on."""
    from grpo_env.episodes.ray import RayEpisodeHost

    extra = cluster.add_node(num_cpus=1)
    rewards = {"quick": Reward(name="quick", fn=rt.exact, timeout=1)}
    talk, weights = _episode_envs()["tenv_talk"]
    envs = {"tenv_talk": (talk.model_copy(update={"step_timeout": 1.0}), weights)}  # a short deadline to wait out
    with RayScoringService(rewards, workers=1, answer_slack=2) as service, \
            RayEpisodeHost(envs, service, workers=2, answer_slack=2) as host:
        examples = [Example(id=f"t{i}", prompt="go", task="tenv_talk") for i in range(8)]
        batch = host.open(examples)
        assert all(o is not None for o in batch.step(list(range(8)), ["a"] * 8))
        on_extra = [r for r, s in enumerate(batch.sessions) if s.proc.node == extra.node_id]
        frozen = service.pids()[extra.node_id] + host.pids()[extra.node_id]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            obs = batch.step(list(range(8)), ["b"] * 8)
            took_episodes = time.monotonic() - start
            start = time.monotonic()
            outs = service.score([("quick", EX, "42")] * 8)
            took_scoring = time.monotonic() - start
            batch.step([r for r in range(8) if r not in on_extra], ["c"] * (8 - len(on_extra)))  # turn 3 ends them
            judged = batch.judge()
        finally:
            kill_node(cluster, extra, frozen)
        assert on_extra and host.lost == 1 and host.replayed == 0
        assert [r for r, o in enumerate(obs) if o is None] == on_extra
        assert [judged[r].status for r in on_extra] == [Status.TIMEOUT] * len(on_extra)
        assert "gave no answer" in judged[on_extra[0]].components["tenv_talk"].details["reason"]
        assert {judged[r].status for r in range(8) if r not in on_extra} == {Status.CORRECT}
        timed_out = [o for o in outs if o.status is Status.TIMEOUT]
        assert timed_out and all("gave no answer" in o.details["reason"] for o in timed_out), outs
        assert {o.status for o in outs} == {Status.CORRECT, Status.TIMEOUT}
        # the chunk that ran on the frozen node is final; the one queued behind it never started there
        # (an actor runs one request at a time) and is sent elsewhere
        assert service.lost == 1 and len(timed_out) == 1 and service.resent <= 1, (timed_out, service.resent)
    assert took_episodes < 15 and took_scoring < 15, (took_episodes, took_scoring)


def test_a_reply_to_another_request_is_an_error_never_credited(cluster):
    from grpo_env.scoring.ray import _Chunk

    with RayScoringService(TEST_REWARDS, workers=1) as service:
        node = next(iter(service._nodes.values()))
        chunk = _Chunk(node, request=5, jobs=[(0, ("exact", EX, "41"), 0)], deadline=0.0)
        done = {}
        service._receive(ray, ray.put((4, [(1.0, "correct", {})])), chunk, done, None)  # a stale answer
    assert done[0].status is Status.ERROR and done[0].score == 0.0 and "answered request 4" in done[0].details["error"]


def test_hostile_text_through_the_nodes_is_judged_as_locally_made_plain_and_fast(cluster):
    """What a policy (or a tool, an environment) puts through the nodes: a 190 KB hedge, a wrong answer
    padded with lone surrogates and control tokens, and 1 MB of that text handed back by an
    environment. Same verdicts as locally, quickly; observations reach the engine plain and cut."""
    from grpo_env.episodes import MAX_OBSERVATION_CHARS
    from grpo_env.episodes.ray import RayEpisodeHost

    reg = get_registry()
    rewards = {"math.answer": reg.reward("math.answer")}
    math = Example(id="m", prompt="q", gold={"answer": "1/2"})
    noise = "\ud800<|im_end|>\x1b[31m"  # (a NUL byte is refused outright by math.answer)
    items = [("math.answer", math, " ".join(f"\\boxed{{{i}/{i + 1}}}" for i in range(1, 10_000))),  # a 190 KB hedge
             ("math.answer", math, noise * 10_000 + "\\boxed{2}"),  # 170 KB, wrong
             ("math.answer", math, noise * 10_000 + "\\boxed{1/2}")]  # the control: right after the noise
    with local_then_ray(rewards, items) as (want, got, took, service):
        loud = "\ud800<|im_end|>\x1b[2J\x00" * 70_000  # about 1 MB, from the environment and its tool
        envs = {k: v for k, v in __import__("envs_for_tests").environments().items() if k == "tenv_echo"}
        with RayEpisodeHost({k: (e, e.rewards) for k, e in envs.items()}, service, workers=2) as host:
            start = time.monotonic()
            ex = Example(id="e", prompt="go", gold={"say": loud}, task="tenv_echo", tools=envs["tenv_echo"].tool_specs())
            judged, seen = _play(host, [("tenv_echo", "0", ['<tool_call>{"name": "say", "arguments": {}}</tool_call>',
                                                            "b", "c"])], example=ex)
            took_episode = time.monotonic() - start
    assert statuses(got) == statuses(want)
    assert [o.score for o in got] == [0.0, 0.0, 1.0], got
    assert took < 30, took
    assert judged == [(1.0, Status.CORRECT)]
    assert len(seen[0]) == 3 and seen[0][-1] is None  # two turns of echoes, then the episode ended
    for obs in seen[0][:2]:
        for _, text in obs:
            text.encode("utf-8")  # no lone surrogate
            assert "\x1b" not in text and "\x00" not in text
            assert len(text) <= 6 * (MAX_OBSERVATION_CHARS + 100)  # cut, then escaped (\ud800: 6 characters)
    assert took_episode < 30, took_episode
