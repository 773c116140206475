"""Writing an environment from the docs alone (issue 19): a failing environment is visible in
training (its errors written to the run directory and stderr, its failure rates warned about, a run
whose environment never works stopped), every failure names its phase, turn and deadline,
``grpo_env.testing.play_episode`` plays hand-built examples, and scripted episodes check the reward
and the feedback (``score``, ``observations_contain``) through ``grpo-env check``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import envs_for_tests as te
from grpo_env.cli.check import check_environment, describe
from grpo_env.engine.config import TrainConfig
from grpo_env.engine.episode_watch import ERRORS_FILE, EnvironmentFailing
from grpo_env.engine.tiny import TOOL_CHARS, tiny_model, tiny_tokenizer, write_tiny
from grpo_env.engine.trainer import train
from grpo_env.environment import EpisodeFixture
from grpo_env.episodes import EpisodeHost, play
from grpo_env.mixture import MixEntry, TaskMixture
from grpo_env.scoring import ScoringService
from grpo_env.testing import play_episode
from grpo_env.types import Example, Status

ROOT = Path(__file__).parent.parent
FAILING = te.failing_environments()
HAND = Example(id="hand", prompt="find it", gold={"secret": "7"})  # hand-built: no task, no tools
GET = '<tool_call>{"name": "get", "arguments": {}}</tool_call>'

# an outsider's plugin: a right environment, the same with a wrong partial-credit formula and inverted
# feedback (its fixtures are the right ones), and one whose make raises
PLUGIN = '''
from grpo_env import Example, Outcome, hookimpl
from grpo_env.environment import Environment, Episode, EpisodeFixture, Step


def examples(split, seed, options):
    i = 0
    while True:
        yield Example(id=f"{split}-{seed}-{i}", prompt="Guess my number from 1 to 10.", gold={"secret": 3 + i % 5})
        i += 1


def open_board(example):
    raise FileNotFoundError("the board file boards/7.txt is missing")


class HiLo(Episode):
    buggy = False

    def step(self, turn):
        digits = "".join(c for c in turn.text if c.isdigit())[:3]
        guess, secret = int(digits or 0), self.example.gold["secret"]
        if guess == secret:
            score = 1.0 / turn.number if self.buggy else 1.0 - 0.2 * (turn.number - 1)
            return Step.end(Outcome.correct() if turn.number == 1 else Outcome.partial(score))
        low = (guess < secret) != self.buggy
        return Step.reply("too low" if low else "too high")


class BuggyHiLo(HiLo):
    buggy = True


def fixtures():
    ex = Example(id="fx", prompt="Guess my number from 1 to 10.", gold={"secret": 3})
    return [
        EpisodeFixture(example=ex, turns=["3"], expect="full", score=1.0),
        EpisodeFixture(example=ex, turns=["5", "3"], expect="partial", score=0.8, observations_contain=["too high"],
                       note="one wrong guess"),
    ]


@hookimpl
def register_environments(register):
    for name, make in (("authoring.hilo", HiLo), ("authoring.hilo_buggy", BuggyHiLo), ("authoring.broken", open_board)):
        register(Environment(name=name, rewards={name: 1.0}, examples=examples, make=make, max_turns=3,
                             fixtures=fixtures))
'''


@pytest.fixture
def outsider(make_dist, tmp_path):
    """The plugin above installed as a distribution; a function running the CLI in a subprocess
    that finds it (and only it)."""
    make_dist("tp-authoring", "authoring", "tp_authoring", PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "GRPO_ENV_PLUGINS": "authoring", "COLUMNS": "250"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "grpo_env.cli", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    return cli


# ---------------------------------------------------------------------------------------------
# play_episode, and failures that say where they happened


def test_play_episode_plays_a_hand_built_example_an_environment_object_or_a_registered_name(register_plugin):
    played = play_episode(te.environments()["tenv_secret"], [GET, "it is 7"], example=HAND)
    assert played.scored.total == 1.0 and played.scored.status is Status.CORRECT
    assert played.stats["turns"] == 2 and played.stats["tool_calls"] == 1 and played.stats["ended_by"] == "env"
    assert [[(m.role, m.content) for m in obs] for obs in played.observations] == [[("tool", "7")]]
    register_plugin(te.Plugin(), name="tenv")
    by_name = play_episode("tenv_secret", ["it is 5"])  # its first train example: secret "0"
    assert by_name.scored.total == 0.0 and by_name.stats["turns"] == 1
    assert play_episode("tenv_secret", ["it is 0"]).scored.total == 1.0
    with pytest.raises(TypeError, match="list of the assistant's turns"):
        play_episode("tenv_secret", "it is 0")
    # the engine's own play on a task-less example says what to do instead of failing on None
    with ScoringService({}, workers=1) as service, EpisodeHost({"tenv_talk": (te.environments()["tenv_talk"], {})},
                                                               service) as host:
        with pytest.raises(ValueError, match="set its task"):
            play(host, HAND, ["hi"])


@pytest.mark.parametrize("env,turns,status,phase,turn,said", [
    ("tenv_bad_make", ["a"], Status.ERROR, "make", None, "raised FileNotFoundError in make: the board of hand"),
    ("tenv_slow_step", ["a"], Status.TIMEOUT, "step", 1, "timed out in step (turn 1): it ran past its step_timeout of 0.3 s"),
    ("tenv_slow_tool", [GET], Status.TIMEOUT, "call_tool", 1, "timed out in call_tool get (turn 1): it ran past its step_timeout of 0.3 s"),
    ("tenv_raise_later", ["a", "b"], Status.ERROR, "step", 2, "raised KeyError in step (turn 2): 'turn two'"),
    ("tenv_raise_end", ["a"], Status.ERROR, "end", 1, "raised RuntimeError in end (reason 'turns', after turn 1)"),
])
def test_a_failure_names_its_phase_turn_and_deadline(env, turns, status, phase, turn, said):
    played = play_episode(FAILING[env], turns, example=HAND)
    o = played.scored.components[env]
    assert o.status is status and played.stats["ended_by"] == status.value
    assert o.details["phase"] == phase and o.details["turn"] == turn
    message = o.details.get("error") or o.details["reason"]
    assert said in message, message
    assert said in describe(env, o)  # what `grpo-env check` and `grpo-env play` print, timeouts included
    if status is Status.TIMEOUT:
        assert o.details["deadline_s"] == 0.3 and o.details["limit"] == "step"
    else:  # the plugin's own frame travels with the error
        assert "envs_for_tests.py" in o.details["traceback"]


# ---------------------------------------------------------------------------------------------
# fixtures that check the reward and the feedback


def test_check_fails_a_wrong_partial_credit_formula_or_wrong_feedback(outsider):
    good = outsider("check", "authoring.hilo")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = outsider("check", "authoring.hilo", "authoring.hilo_buggy")
    out = " ".join(bad.stdout.split())  # the table may wrap; the messages are plain lines
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "authoring.hilo_buggy: fixture 1 (one wrong guess): expected reward 0.8, got 0.5 (partial)" in out, out
    assert "expected an observation containing 'too high'; the model saw after turn 1: user 'too low'" in out, out
    assert not re.search(r"authoring\.hilo: fixture", out)  # the right environment passes
    with pytest.raises(ValueError, match="empty string"):
        EpisodeFixture(example=HAND, turns=["a"], expect="full", observations_contain=[""])


# ---------------------------------------------------------------------------------------------
# a failing environment in training


@pytest.mark.slow
def test_a_make_that_raises_stops_training_with_its_error_written_down(outsider, tmp_path):
    tiny = write_tiny(tmp_path / "tiny")
    recipe = tmp_path / "broken.toml"
    recipe.write_text(f'''name = "broken"
[model]
name = "{tiny}"
threads = 1
[[tasks]]
name = "authoring.broken"
[train]
steps = 6
group_size = 2
prompts_per_step = 1
max_new_tokens = 4
max_episode_tokens = 32
progress = false
save_every = 0
output_dir = "{tmp_path / 'run'}"
[scoring]
workers = 1
''')
    run = outsider("train", str(recipe))
    assert run.returncode == 2, run.stdout + run.stderr
    assert "done:" not in run.stdout
    assert "the board file boards/7.txt is missing" in run.stderr
    assert "every episode of environment 'authoring.broken' failed (error or timeout) in 3 steps in a row" in run.stderr
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3  # stopped after K = 3 steps
    [rec] = [json.loads(line) for line in (tmp_path / "run" / ERRORS_FILE).read_text().splitlines()]
    assert rec["step"] == 1 and rec["environment"] == "authoring.broken" and rec["ended_by"] == "error"
    assert rec["phase"] == "make" and rec["count"] == 2
    assert "raised FileNotFoundError in make: the board file boards/7.txt is missing" in rec["message"]
    assert "tp_authoring.py" in rec["traceback"] and "in open_board" in rec["traceback"]  # the plugin's frame
    assert "in open_board" in run.stderr  # printed once, with its traceback


def _chatty():
    """A tiny model whose turns end at once, so every episode's first turn reaches its environment."""
    tok = tiny_tokenizer(TOOL_CHARS)
    model = tiny_model(len(tok), seed=0)
    bias = torch.zeros(len(tok))
    bias[tok.eos_token_id] = 8.0
    model.lm_head.bias = torch.nn.Parameter(bias)
    return model, tok


def _train(tmp_path, envs, steps=4, resume=False, **overrides):
    torch.manual_seed(0)
    model, tok = _chatty()
    cfg = TrainConfig(**{**dict(steps=steps, group_size=2, prompts_per_step=1, max_new_tokens=4, max_episode_tokens=40,
                                lr=1e-3, progress=False, save_every=0, micro_batch_size=2), **overrides})
    mix = TaskMixture([MixEntry(e) for e in envs], seed=0)
    with ScoringService({}, workers=1) as service, \
            EpisodeHost({e.name: (e, e.rewards) for e in envs}, service, workers=2, grace=0.2) as host:
        return train(model, tok, mix, lambda exs, texts: [], cfg, tmp_path, env_host=host, resume=resume)


def test_timeouts_in_training_are_written_warned_once_and_stop_the_run(tmp_path, capsys):
    with pytest.raises(EnvironmentFailing, match=r"'tenv_slow_step' failed \(error or timeout\) in 2 steps in a row "
                                                 r"\(steps 1-2\); the last: environment 'tenv_slow_step' timed out in "
                                                 r"step \(turn 1\): it ran past its step_timeout of 0.3 s"):
        _train(tmp_path, [FAILING["tenv_slow_step"]], env_failed_steps=2)
    err = capsys.readouterr().err
    assert err.count("warning: environment 'tenv_slow_step': 2 of 2 episodes timed out at step 1") == 1
    assert "timed out at step 2" not in err  # warned once
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"environment": "tenv_slow_step", "ended_by": "timeout", "share": 1.0, "episodes": 2,
            "threshold": 0.5} in rec["env_alarms"]
    [written] = [json.loads(line) for line in (tmp_path / ERRORS_FILE).read_text().splitlines()]  # distinct: once
    assert (written["ended_by"], written["phase"], written["turn"], written["count"]) == ("timeout", "step", 1, 2)
    # env_failed_steps = 0: the same run goes on to its end
    out = _train(tmp_path / "on", [FAILING["tenv_slow_step"]], steps=2, env_failed_steps=0)
    assert out.step == 2


def test_a_resumed_run_keeps_its_errors_file_and_a_fresh_one_starts_it_again(tmp_path):
    errors = tmp_path / ERRORS_FILE
    _train(tmp_path, [FAILING["tenv_raise_later"]], steps=2, save_every=1, env_failed_steps=0)
    first = errors.read_text()
    assert [json.loads(line)["step"] for line in first.splitlines()] == [1]
    _train(tmp_path, [FAILING["tenv_raise_later"]], steps=3, resume=True, save_every=1, env_failed_steps=0)
    assert errors.read_text() == first  # the same error again after the resume is not written twice
    errors.write_text(first + '{"step": 5, "environment": "x"}\n')  # past the checkpoint (step 3): a killed run's
    _train(tmp_path, [FAILING["tenv_raise_later"]], steps=3, resume=True, save_every=1, env_failed_steps=0)
    assert errors.read_text() == first  # dropped, as metrics.jsonl drops the steps it redoes
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ERRORS_FILE).write_text("an earlier attempt's line\n")
    _train(fresh, [FAILING["tenv_raise_later"]], steps=1, env_failed_steps=0)
    assert [json.loads(line)["step"] for line in (fresh / ERRORS_FILE).read_text().splitlines()] == [1]


def test_dynamic_sampling_does_not_hide_a_failing_environment(tmp_path, capsys):
    """Dynamic sampling drops groups without reward spread, and every group of a failing environment
    is one: the watch sees the episodes before they are dropped."""
    with pytest.raises(EnvironmentFailing, match="'tenv_bad_make' failed"):
        _train(tmp_path, [FAILING["tenv_bad_make"], te.environments()["tenv_talk"]], steps=10,
               dynamic_sampling=True, max_sampling_rounds=2)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) >= 3
    written = [json.loads(line) for line in (tmp_path / ERRORS_FILE).read_text().splitlines()]
    assert written and all(w["phase"] == "make" and "tenv_bad_make" in w["message"] for w in written)
    assert "raised FileNotFoundError in make" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# the docs


def test_the_testing_an_environment_section_runs_as_a_test_file(tmp_path, fresh_plugins):
    text = (ROOT / "docs" / "plugins.md").read_text()
    section = text[text.index("## Testing an environment"):]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    (tmp_path / "test_hilo.py").write_text(code)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_hilo.py")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GRPO_ENV_PLUGINS": ""})
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout + run.stderr
    # and its scripted episodes pass `grpo-env check`
    ns: dict = {}
    exec(compile(code, "plugins.md", "exec"), ns)
    registry = fresh_plugins.get_registry()
    env = ns["HILO"]
    with ScoringService({}, workers=1) as service, EpisodeHost({env.name: (env, env.rewards)}, service) as host:
        result = check_environment(env, registry, host)
    assert result.ok and result.passed == 3, result.problems
