"""Episode processes forked from the episode zygote (issue 19 item 11): a small process started
before the model loads forks each episode's process, so an episode never copies the trainer.

Through the real host: a normal episode, a deadline kill, an environment that raises and one that
dies behave as with direct forks; the episode processes are the zygote's children, not the
trainer's, and small while the trainer holds a large tensor; nothing is left behind when the zygote
or its host closes, when the zygote dies (episodes then fork directly) or when the trainer dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch

import envs_for_tests as te
from grpo_env import hookimpl
from grpo_env.cli.train import main_eval
from grpo_env.engine.tiny import write_tiny
from grpo_env.environment import Environment, Episode, Step
from grpo_env.episodes import FORKS_ENV, EpisodeHost, EpisodeZygote, play
from grpo_env.scoring import ScoringService
from grpo_env.types import Example, Message, Outcome, Status

BIG_MIB = 768  # the "model" the trainer holds once the zygote has started


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Probe(Episode):
    """Says who it is (pid, parent, resident size) on turn 1; ends correct on turn 2."""

    def step(self, turn):
        if turn.number == 1:
            me = {"pid": os.getpid(), "ppid": os.getppid(), "rss_mib": _rss_mib()}
            return Step(observations=[Message(role="user", content=json.dumps(me))])
        return Step.end(Outcome.correct())


def _examples(split, seed, options):
    i = 0
    while True:
        yield Example(id=f"{split}-{seed}-{i}", prompt="hi", gold={"secret": "7"})
        i += 1


PROBE = Environment(name="tfork_probe", rewards={"tfork_probe": 1.0}, examples=_examples, make=Probe, max_turns=3)
ENVS = {**te.environments(), PROBE.name: PROBE}


def example(env: str, secret: str = "7") -> Example:
    return Example(id="x", prompt="find it", gold={"secret": secret}, task=env, tools=ENVS[env].tool_specs())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone(pids, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def zygote():
    with EpisodeZygote(ENVS) as z:  # started while this process is small ...
        big = torch.ones(BIG_MIB * 2**20 // 4)  # ... then the trainer loads its "model"
        yield z
        del big


@pytest.fixture(scope="module")
def service():
    with ScoringService({te.ANSWER_REWARD.name: te.ANSWER_REWARD}, workers=1) as svc:
        yield svc


@pytest.fixture
def host(zygote, service):
    with EpisodeHost({n: (e, e.rewards) for n, e in ENVS.items()}, service, workers=2, grace=0.5,
                     forks=zygote) as h:
        yield h
    assert h.started["direct"] == 0, h.started  # every episode came from the zygote


def probe(host: EpisodeHost) -> dict:
    batch = host.open([example(PROBE.name)])
    obs = batch.step([0], ["who are you"])[0]
    batch.close()
    return json.loads(obs[0].content)


# ---------------------------------------------------------------------------------------------
# the same episodes as with direct forks


def test_a_normal_episode_and_tool_calls_through_the_zygote(host):
    got = play(host, example("tenv_talk"), ["a", "b", "c"])
    assert got.scored.status is Status.CORRECT and got.stats["turns"] == 3
    call = '<tool_call>{"name": "get", "arguments": {}}</tool_call>'
    got = play(host, example("tenv_secret"), [call, "it is 7"])
    assert got.scored.status is Status.CORRECT and got.stats["tool_calls"] == 1
    assert [m.content for m in got.observations[0]] == ["7"]
    got = play(host, example("tenv_answer"), ['<tool_call>{"name": "echo", "arguments": {"text": "7"}}</tool_call>',
                                              "the answer is 7"])
    assert got.scored.status is Status.CORRECT  # judged by a reward component, in the scoring service
    assert host.started["zygote"] == 3


def test_a_deadline_kills_the_episode_process_and_the_zygote_reaps_it(host, zygote):
    batch = host.open([example("tenv_hang")])
    pid = batch.sessions[0].proc.pid
    assert psutil.Process(pid).ppid() == zygote.pid
    t = time.monotonic()
    assert batch.step([0], ["one turn"]) == [None]
    took = time.monotonic() - t
    assert 0.5 <= took < 3, took  # step_timeout 0.5 s + grace 0.5 s
    judged = batch.judge()[0]
    assert judged.status is Status.TIMEOUT and judged.total == 0.0
    details = judged.components["tenv_hang"].details
    assert details["limit"] == "step" and details["phase"] == "step" and "was killed" in details["reason"]
    assert not psutil.pid_exists(pid) or not alive(pid)
    assert [c.pid for c in psutil.Process(zygote.pid).children()] == []  # killed and reaped


@pytest.mark.parametrize("env,why", [
    ("tenv_raise", "raised ValueError in step (turn 1): broken environment"),
    ("tenv_wrong", "expected grpo_env.environment.Step"),
    ("tenv_crash", "its process died (exit 3) in step (turn 1)"),
])
def test_an_environment_that_raises_or_dies_is_an_error(host, env, why):
    got = play(host, example(env), ["one turn"])
    assert got.scored.status is Status.ERROR and got.scored.total != got.scored.total  # NaN
    assert why in got.scored.components[env].details["error"]
    assert got.stats["ended_by"] == "error"


# ---------------------------------------------------------------------------------------------
# whose the episode processes are, and how big


def test_episode_processes_are_the_zygotes_children_and_small(host, zygote, service):
    trainer = _rss_mib()
    me = probe(host)
    assert me["ppid"] == zygote.pid != os.getpid()
    assert psutil.Process(zygote.pid).ppid() == os.getpid()
    assert me["rss_mib"] < trainer - BIG_MIB / 2, (me, trainer)  # the trainer's large tensor is not in it
    # the same episode forked from the trainer carries the trainer's memory: the comparison is real
    with EpisodeHost({PROBE.name: (PROBE, PROBE.rewards)}, service, forks="direct") as direct:
        them = probe(direct)
    assert them["ppid"] == os.getpid() and them["rss_mib"] > trainer - BIG_MIB / 4, (them, trainer)
    assert direct.started == {"zygote": 0, "direct": 1}


def test_an_environment_the_zygote_does_not_hold_forks_directly(zygote, service):
    other = Environment(name=PROBE.name, rewards=PROBE.rewards, examples=_examples, make=Probe, max_turns=3)
    with EpisodeHost({other.name: (other, other.rewards)}, service, forks=zygote) as h:
        assert probe(h)["ppid"] == os.getpid()  # same name, another object: not the zygote's
    assert h.started == {"zygote": 0, "direct": 1}


def test_a_forked_copy_of_the_zygote_is_not_used(zygote):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a child of the trainer: the handle it inherited is the trainer's
        try:
            os.write(w, b"1" if zygote.holds(PROBE) else b"0")
            zygote.close()  # leaves the trainer's zygote alone
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"0"
    os.close(r)
    os.waitpid(pid, 0)
    assert zygote.alive and zygote.holds(PROBE)


# ---------------------------------------------------------------------------------------------
# nothing left behind


def test_closing_the_host_leaves_no_zygote_and_no_episode_process(service, monkeypatch):
    monkeypatch.setenv(FORKS_ENV, "zygote")  # the default: a zygote of the host's own
    mine = psutil.Process()
    before = {p.pid for p in mine.children(recursive=True)}
    host = EpisodeHost({n: (e, e.rewards) for n, e in ENVS.items()}, service, workers=2, grace=0.5)
    zpid = host.zygote.pid
    assert psutil.Process(zpid).ppid() == os.getpid()
    assert play(host, example("tenv_talk"), ["a", "b", "c"]).scored.status is Status.CORRECT
    batch = host.open([example("tenv_talk"), example("tenv_hang")])  # left open: two live episode processes
    pids = [s.proc.pid for s in batch.sessions]
    assert all(psutil.Process(p).ppid() == zpid for p in pids)
    host.close()
    assert gone([zpid, *pids])
    left = {p.pid for p in mine.children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE} - before
    assert not left, left
    assert host.started == {"zygote": 3, "direct": 0}


def test_a_dead_zygote_takes_its_episodes_and_the_host_forks_directly(service):
    with EpisodeZygote(ENVS) as z, EpisodeHost({n: (e, e.rewards) for n, e in ENVS.items()}, service,
                                               grace=0.5, forks=z) as h:
        batch = h.open([example("tenv_talk")])
        pid = batch.sessions[0].proc.pid
        os.kill(z.pid, signal.SIGKILL)
        assert gone([z.pid, pid])  # the episode died with its parent
        with pytest.warns(RuntimeWarning, match="episode zygote .* failed"):  # said once
            assert batch.step([0], ["a"]) == [None]
        assert "its process" in batch.judge()[0].components["tenv_talk"].details["error"]
        got = play(h, example("tenv_talk"), ["a", "b", "c"])  # forked from this process now
        assert got.scored.status is Status.CORRECT
        assert h.started == {"zygote": 1, "direct": 1} and not z.alive


TRAINER = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, {tests!r})
    import envs_for_tests as te
    from grpo_env.episodes import EpisodeHost, EpisodeZygote
    from grpo_env.scoring import ScoringService
    from grpo_env.types import Example

    envs = te.environments()
    zygote = EpisodeZygote(envs)
    svc = ScoringService({{}}, workers=1)
    host = EpisodeHost({{n: (e, e.rewards) for n, e in envs.items()}}, svc, forks=zygote)
    batch = host.open([Example(id="x", prompt="p", gold={{"secret": "7"}}, task=n) for n in ("tenv_talk", "tenv_hang")])
    batch.sessions[1].conn.send(("turn", 1, "hang"))  # one episode busy in its environment
    print(zygote.pid, *[s.proc.pid for s in batch.sessions], flush=True)
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGKILL)  # the trainer dies without closing anything
""")


def test_the_trainers_death_kills_the_zygote_and_its_episodes(tmp_path):
    code = TRAINER.format(tests=str(Path(__file__).parent))
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert got.returncode == -signal.SIGKILL, got.stderr[-2000:]
    pids = [int(p) for p in got.stdout.split()]
    assert len(pids) == 3
    assert gone(pids), [psutil.Process(p) for p in pids if alive(p)]


# ---------------------------------------------------------------------------------------------
# grpo-env eval: its episodes fork from a zygote started before the model loads, as in training

EVAL_PID = os.getpid()  # the process main_eval runs in (this one)


class Parentage(Episode):
    """Judges where its process came from: correct when its parent is not the evaluating process
    (the zygote forked it), incorrect when it is (a direct fork of the process holding the model)."""

    def step(self, turn):
        return Step.end(Outcome.correct() if os.getppid() != EVAL_PID else Outcome.incorrect())


class ParentagePlugin:
    @hookimpl
    def register_environments(self, register):
        register(Environment(name="tfork_parent", rewards={"tfork_parent": 1.0}, examples=_examples,
                             make=Parentage, max_turns=2, on_truncated="step"))  # the tiny model's turns are cut


def test_grpo_env_eval_plays_its_episodes_from_the_zygote_and_leaves_nothing(tmp_path, register_plugin):
    register_plugin(ParentagePlugin(), name="tfork_eval")
    out = tmp_path / "eval.json"
    recipe = tmp_path / "r.toml"
    recipe.write_text(textwrap.dedent(f"""\
        name = "tfork_eval"
        [model]
        name = "{write_tiny(tmp_path / 'tiny')}"
        device = "cpu"
        [[tasks]]
        name = "tfork_parent"
        [scoring]
        workers = 1
        [train]
        max_new_tokens = 4
        output_dir = "{tmp_path / 'run'}"
        eval = {{ examples_per_task = 3, batch_size = 3, output = "{out}" }}
        """))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    assert main_eval(str(recipe)) == 0
    result = json.loads(out.read_text())["results"]["tfork_parent"]
    assert result["n"] == 3 and result["accuracy"] == 1.0, json.dumps(result)  # no episode was a fork of this process
    assert gone({p.pid for p in psutil.Process().children(recursive=True)} - before)  # the zygote closed
    # a model that cannot load, after the zygote started: a clear error, and the zygote closed too
    assert main_eval(str(recipe), overrides=[f"--model.name={tmp_path / 'no-model'}"]) == 2
    assert gone({p.pid for p in psutil.Process().children(recursive=True)} - before)
