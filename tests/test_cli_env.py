"""The command line for environment authors (issue 19, items 7, 8 and 10): commands that know
environments (their own column in `plugins`, their own outcome in `rewards` and `check`), recipe
footguns caught with a close name, and the smaller items (play, check, lookups, bars, the train
lines, save = false, verl_rows by name, --help, tables in a pipe).

Through the real command line: ``grpo_env.cli.main`` in-process (plugins registered for the test)
or ``python -m grpo_env.cli`` in a subprocess where stdin, a pipe or a fresh process matters."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from pydantic import BaseModel, ConfigDict, Field

import rewards_for_tests as rt
import unprivileged
from grpo_env import Example, Fixture, Monitor, Outcome, Reward, Status, Task, hookimpl
from grpo_env.cli import build_parser, main
from grpo_env.environment import Environment, Episode, EpisodeFixture, Step
from grpo_env.plugins import PluginError, get_registry


# --- a test plugin: a single-turn task, environments, a reward and a monitor ----------------------

def examples(split, seed, options):
    for i in range(options.get("count", 50) if options else 50):
        yield Example(id=f"{split}-{seed}-{i}", prompt=f"find {i % 10}", gold={"secret": str((seed + i) % 10)})


class HiloOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_turns: int = Field(2, ge=1, le=2)
    count: int = Field(50, ge=1)


class Hilo(Episode):
    """Correct when a turn holds the secret; a wrong first turn gets "no", a wrong second ends incorrect."""

    def step(self, turn):
        if self.example.gold["secret"] in turn.text:
            return Step.end(Outcome.correct(found_at=turn.number))
        if turn.number >= 2:
            return Step.end(Outcome.incorrect(reason="wrong twice"))
        return Step.reply("no")

    def end(self, reason):
        return Outcome.incorrect(reason=reason, guesses="unfinished")


class Overpays(Episode):
    def step(self, turn):
        return Step.end(Outcome.correct(score=2.0))


class Halves(Episode):
    def step(self, turn):
        return Step.end(Outcome.partial(0.5))


def mentions_secret(completion, example):
    return Outcome.correct() if example.gold.get("secret", "?") in completion else Outcome.incorrect()


def shouting(completion, example):
    return {"shouting": float(completion.isupper())}


EX = Example(id="fx", prompt="find it", gold={"secret": "7"})
SUM = Example(id="sum", prompt="What is 2+2?", gold={"answer": "4"})


def hilo(name="clienv.hilo", make=Hilo, **kw):
    kw.setdefault("fixtures", [
        EpisodeFixture(example=EX, turns=["7"], expect="full", turns_played=1, note="right at once"),
        EpisodeFixture(example=EX, turns=["3", "it is 7"], expect="full", turns_played=2, note="wrong, then right"),
        EpisodeFixture(example=EX, turns=["3"], expect="zero", turns_played=1, note="the script stops early"),
    ])
    return Environment(name=name, description="find the secret digit in two turns", rewards={name: 1.0},
                       examples=examples, make=make, max_turns=2, options=HiloOptions,
                       outcome_statuses=(Status.CORRECT, Status.INCORRECT), **kw)


class EnvPlugin:
    @hookimpl
    def register_rewards(self, register):
        register(Reward(name="clienv.mentions", fn=mentions_secret, description="the final turn holds the secret",
                        min_score=0.0, statuses=(Status.CORRECT, Status.INCORRECT)))
        register(Reward(name="clienv.raises", fn=rt.raises))

    @hookimpl
    def register_tasks(self, register):
        register(Task(name="clienv_task", rewards={"clienv.mentions": 1.0}, examples=examples,
                      fixtures=[Fixture(example=EX, completion="7", expect=Status.CORRECT)]))
        register(Task(name="clienv_raises", rewards={"clienv.raises": 1.0}, examples=examples,
                      fixtures=[Fixture(example=SUM, completion="4", expect=Status.CORRECT, note="should be right")]))

    @hookimpl
    def register_environments(self, register):
        register(hilo())
        register(hilo("clienv_over", Overpays, fixtures=[
            EpisodeFixture(example=EX, turns=["7"], expect="full", note="pays 2 for a correct episode")]))
        register(hilo("clienv_halves", Halves, fixtures=[
            EpisodeFixture(example=EX, turns=["7"], expect=Status.PARTIAL, note="half credit, undeclared")]))

    @hookimpl
    def register_monitors(self, register):
        register(Monitor(name="clienv.watch", fn=shouting, signals={"shouting": "the completion is all capitals"}))


class TypoPlugin:
    """An environment whose rewards misspell its own name: dropped, with the close name."""

    @hookimpl
    def register_environments(self, register):
        register(Environment(name="clienv_typo", rewards={"clienv_typ": 1.0}, examples=examples, make=Hilo))


@pytest.fixture
def env_plugin(register_plugin):
    register_plugin(EnvPlugin(), name="clienv")


def cells(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first`` (a piped table: one line per row)."""
    line = next(l for l in text.splitlines() if l.startswith(f"│ {first} "))
    return [c.strip() for c in line.split("│")[1:-1]]


def cli(*args, stdin=None, **env):
    """``python -m grpo_env.cli ARGS`` with stdout a pipe, at 80 columns."""
    env = {**os.environ, "COLUMNS": "80", **env}
    return subprocess.run([sys.executable, "-m", "grpo_env.cli", *args], input=stdin, env=env, capture_output=True,
                          text=True, timeout=300)


# --- item 7: commands that know environments ------------------------------------------------------

def test_plugins_lists_environments_and_monitors_in_their_own_columns(env_plugin, capsys):
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    head = next(l for l in text.splitlines() if l.startswith("┃ plugin "))
    assert [c.strip() for c in head.split("┃")[1:-1]] == ["plugin", "distribution", "version", "status", "tasks",
                                                          "environments", "rewards", "monitors"]
    row = cells(text, "clienv")
    assert row[4] == "clienv_task, clienv_raises"  # single-turn tasks only
    assert row[5] == "clienv.hilo, clienv_over, clienv_halves"
    assert row[6] == "clienv.mentions, clienv.raises" and row[7] == "clienv.watch"
    games = cells(text, "games")  # a built-in plugin that registers only an environment
    assert games[4] == "" and games[5] == "games.guess"


def test_rewards_describes_an_environments_own_outcome(env_plugin, capsys):
    assert main(["rewards", "clienv.hilo"]) == 0
    text = capsys.readouterr().out
    assert "## `clienv.hilo` (an environment's own outcome)" in text
    assert "find the secret digit in two turns" in text and "- score: 0 to 1" in text
    assert "- statuses: `correct`, `incorrect`; and always possible: `error`" in text
    assert "weight 1 under its own name" in text and "no reward named" not in text
    assert main(["rewards", "math_python"]) == 0  # a built-in environment judged by a reward component
    text = capsys.readouterr().out
    assert "- score: 0 to 0" in text and "weight 0: its rewards (math.answer = 1) leave it out" in text
    assert main(["rewards"]) == 0  # the list has the environments' outcomes too
    row = cells(capsys.readouterr().out, "clienv.hilo")
    assert row[1:3] == ["clienv", "0 to 1"] and "(an environment's own outcome)" in row[4]
    assert main(["rewards", "clienv.hil"]) == 2
    assert "did you mean 'clienv.hilo', an environment's own outcome?" in capsys.readouterr().err


def test_check_fails_an_outcome_outside_the_declared_range_or_statuses(env_plugin, capsys):
    assert main(["check", "clienv.hilo", "clienv_over", "clienv_halves"]) == 1
    text = capsys.readouterr().out
    assert cells(text, "clienv.hilo")[-1] == "ok"
    assert cells(text, "clienv_over")[-1] == "FAIL" and cells(text, "clienv_halves")[-1] == "FAIL"
    assert ("clienv_over: fixture 0 (pays 2 for a correct episode): the environment's outcome clienv_over=2 "
            "(correct): score 2 is outside its outcome_range 0 to 1") in text
    assert ("clienv_halves: fixture 0 (half credit, undeclared): the environment's outcome clienv_halves=0.5 "
            "(partial): status partial is not among its outcome_statuses (correct, incorrect)") in text
    with pytest.raises(ValueError, match="outcome_range"):
        hilo(outcome_range=(1.0, 0.0))


def test_builtin_environments_declare_their_outcomes_and_pass_check(capsys):
    envs = get_registry().environments
    assert envs["games.guess"].outcome_statuses == (Status.CORRECT, Status.INCORRECT)
    assert envs["math_python"].outcome_range == (0.0, 0.0)
    assert Status.PARTIAL in envs["code_feedback"].outcome_statuses
    assert main(["check", "games.guess"]) == 0
    assert cells(capsys.readouterr().out, "games.guess")[-1] == "ok"


# --- item 8: recipe footguns -----------------------------------------------------------------------

def recipe(tmp_path, rewards: str = "", model: str = "no-such-model", **train) -> str:
    path = tmp_path / "r.toml"
    settings = {"steps": 2, "group_size": 2, "prompts_per_step": 2, "max_new_tokens": 4, "max_episode_tokens": 24,
                "output_dir": str(tmp_path / "run"), **train}
    lines = ['name = "clienv"', "[model]", f'name = "{model}"', 'device = "cpu"', "[[tasks]]",
             'name = "clienv.hilo"', "options = { count = 8 }"]
    if rewards:
        lines.append(f"rewards = {{ {rewards} }}")
    lines += ["[scoring]", "workers = 1", "[train]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_misspelled_own_outcome_gets_the_environments_name(env_plugin, tmp_path, capsys, register_plugin):
    assert main(["train", recipe(tmp_path, '"clienv.hil" = 1.0')]) == 2
    err = capsys.readouterr().err
    assert "tasks.clienv.hilo.rewards: no reward named 'clienv.hil' (did you mean 'clienv.hilo' (the " \
           "environment's own outcome)?)" in err
    assert "install the plugin" not in err
    reg = register_plugin(TypoPlugin(), name="clityp")  # the same slip in a plugin: the environment is dropped
    why = reg.plugins["clityp"].dropped["clienv_typo"]
    assert "'clienv_typ' (no such reward; did you mean 'clienv_typo' (the environment's own outcome)?)" in why
    assert "install the plugin" not in why


def test_a_misspelled_option_gets_a_close_name_not_pydantics_text(env_plugin, tmp_path, capsys):
    assert main(["train", recipe(tmp_path), "--tasks.0.options.max_turn=2"]) == 2
    err = capsys.readouterr().err
    assert ("tasks.clienv.hilo.options: unknown option 'max_turn' (did you mean 'max_turns'?); the options are "
            "max_turns, count") in err
    assert "extra_forbidden" not in err and "pydantic" not in err and "validation error" not in err
    assert main(["train", recipe(tmp_path), "--tasks.0.options.max_turns=9"]) == 2
    assert "option 'max_turns': Input should be less than or equal to 2 (got 9)" in capsys.readouterr().err
    # every task's options, single-turn ones and every command that takes --option
    assert main(["tasks", "math_arith", "--option", "dificulty=2"]) == 2
    assert "unknown option 'dificulty' (did you mean 'difficulty'?)" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"did you mean 'difficulty'\?"):
        get_registry().task("math_arith").parse_options({"dificulty": 2})


@pytest.mark.slow
def test_a_smoke_run_warns_of_a_left_out_outcome_prints_steps_and_saves_nothing(env_plugin, tmp_path, capsys):
    """A real run of a tiny model: the recipe's rewards leave out the environment's own outcome
    (a warning, not an error), `progress = false` prints a plain line per step, `save = false`
    writes no checkpoint (so `--resume` has nothing to resume), and the last line's reward is rounded."""
    from grpo_env.engine.tiny import write_tiny

    model = write_tiny(tmp_path / "tiny")
    path = recipe(tmp_path, '"clienv.mentions" = 1.0', model=str(model), progress=False, save=False)
    assert main(["train", path]) == 0
    out, err = capsys.readouterr()
    assert ("warning: tasks.clienv.hilo.rewards leaves out the environment's own outcome 'clienv.hilo' (weight 1 "
            "by default), so it weighs 0") in err
    steps = [l for l in err.splitlines() if l.startswith("step ")]
    assert [l.split()[1] for l in steps] == ["1/2", "2/2"]
    assert all(re.search(r"reward (-|\d+\.\d{3}) .* \d+\.\ds/step", l) for l in steps), steps
    done = next(l for l in out.splitlines() if l.startswith("done: "))
    assert re.search(r"last reward (-|-?\d+\.\d{3});", done), done
    assert "no checkpoints: [train] save = false" in done
    run = tmp_path / "run"
    assert (run / "metrics.jsonl").exists() and not list((run / "checkpoints").glob("*"))
    assert main(["train", path, "--resume", "--train.steps=0"]) == 0
    assert "nothing to resume" in capsys.readouterr().err


# --- item 10: smaller items ------------------------------------------------------------------------

def test_play_says_input_ended_shows_details_and_reveals_the_gold():
    only = {"GRPO_ENV_PLUGINS": "games"}
    run = cli("play", "games.guess", "--reveal", stdin="4\n", **only)
    assert run.returncode == 0, run.stderr
    assert "episode stopped (input ended) after 1 turn(s)" in run.stdout and "ended by turns" not in run.stdout
    assert 'games.guess details: {"reason": "turns", "guesses": 1, "malformed": 0}' in run.stdout
    gold = json.loads(next(l for l in run.stdout.splitlines() if l.startswith("gold: "))[len("gold: "):])
    assert set(gold) == {"secret", "high", "max_turns"}
    secret = str(gold["secret"])
    won = cli("play", "games.guess", stdin=f"{secret}\n", **only)  # the environment ends it: as before
    assert "episode ended by env after 1 turn(s)" in won.stdout and '{"guesses": 1}' in won.stdout
    assert "gold: " not in won.stdout  # only with --reveal


def test_check_shows_an_error_component_as_excluded(env_plugin, capsys):
    assert main(["check", "clienv_raises"]) == 1
    line = next(l for l in capsys.readouterr().out.splitlines() if "should be right" in l)
    assert "got clienv.raises (error, excluded): reward 'clienv.raises' raised KeyError" in line
    assert "=0 (error)" not in line


def test_check_checks_every_name_it_can_and_reports_the_others(env_plugin, register_plugin, capsys):
    register_plugin(TypoPlugin(), name="clityp")
    assert main(["check", "clienv.hilo", "clienv.hil", "clienv_typo"]) == 1
    text = capsys.readouterr().out
    assert cells(text, "clienv.hilo")[-1] == "ok"
    assert cells(text, "clienv.hil")[-1] == "UNKNOWN" and cells(text, "clienv_typo")[-1] == "UNAVAILABLE"
    assert "clienv.hil: not checked: no task named 'clienv.hil' (did you mean 'clienv.hilo'?)" in text
    assert "clienv_typo: not checked: task 'clienv_typo' of plugin 'clityp' is unavailable" in text
    assert main(["check", "nope"]) == 2  # nothing at all to check: an error, as before
    assert "no task named 'nope'" in capsys.readouterr().err


def test_a_misspelled_name_gets_the_hint_and_a_count_not_every_name(env_plugin, capsys):
    assert main(["tasks", "clienv.hil"]) == 2
    err = capsys.readouterr().err
    n = len(get_registry().tasks)
    assert f"no task named 'clienv.hil' (did you mean 'clienv.hilo'?); {n} tasks are registered " \
           "(`grpo-env tasks` lists them)" in err
    assert "math_arith" not in err and "known:" not in err
    with pytest.raises(PluginError, match=r"did you mean 'clienv.mentions'\?\); \d+ rewards are registered "
                                          r"\(`grpo-env rewards` lists them\)"):
        get_registry().reward("clienv.mention")


def test_loading_and_saving_a_model_draws_no_progress_bars(tmp_path, capfd):
    from transformers import AutoModelForCausalLM
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    from grpo_env.engine.config import ModelConfig
    from grpo_env.engine.model import load_model, load_tokenizer, quiet_bars, save_model
    from grpo_env.engine.tiny import write_tiny

    tiny = write_tiny(tmp_path / "tiny")
    AutoModelForCausalLM.from_pretrained(tiny)  # transformers' own calls draw bars (they are what we quiet)
    assert "Loading weights" in capfd.readouterr().err
    cfg = ModelConfig(name=str(tiny), device="cpu")
    model, tok = load_model(cfg), load_tokenizer(cfg)
    save_model(model, tok, tmp_path / "saved")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err and "it/s" not in err
    assert (tmp_path / "saved" / "config.json").exists()
    with quiet_bars():  # the GGUF conversion's own tqdm too ("Converting and de-quantizing GGUF tensors")
        assert gguf_utils.tqdm([1], desc="Converting and de-quantizing GGUF tensors...").disable
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # restored after
    assert not gguf_utils.tqdm([1], file=open(os.devnull, "w")).disable


def test_verl_rows_takes_a_task_name():
    from grpo_env.integrations.verl import verl_rows

    by_name = verl_rows("math_arith", "train", 2, seed=5)
    assert by_name == verl_rows(get_registry().task("math_arith"), "train", 2, seed=5)
    assert by_name[0]["data_source"] == "math_arith" and len(by_name) == 2
    with pytest.raises(PluginError, match="did you mean 'math_arith'"):
        verl_rows("math_arit", "train", 1)


def test_every_option_has_help_and_train_help_names_overrides(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in [("", parser), *sub.choices.items()]:
        bare = [a.dest for a in command._actions if not a.help]
        assert not bare, f"grpo-env {name}: {bare} have no --help text"
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--key=value" in text and "--train.lr=1e-5" in text and "--resume" in text


@pytest.mark.slow
def test_piped_tables_print_names_whole():
    """In a pipe at 80 columns no cell wraps: `grpo-env rewards | grep repetition_penalty` finds the
    whole name, and every task and reward name appears whole in `tasks` and `plugins`."""
    reg = get_registry()
    rewards, tasks, plugins = cli("rewards"), cli("tasks"), cli("plugins")
    for run in (rewards, tasks, plugins):
        assert run.returncode == 0, run.stderr
    assert [l.split("│")[1].strip() for l in rewards.stdout.splitlines() if "repetition_penalty" in l] \
        == ["format.repetition_penalty"]
    for name in reg.tasks:
        assert re.search(rf"(^|[ ,│]){re.escape(name)}([ ,│]|$)", tasks.stdout, re.M), name
        assert re.search(rf"(^|[ ,│]){re.escape(name)}([ ,│]|$)", plugins.stdout, re.M), name
    for name in reg.rewards:
        assert re.search(rf"(^|[ ,│]){re.escape(name)}([ ,│]|$)", plugins.stdout, re.M), name


@unprivileged.AS_ROOT_AND_UNPRIVILEGED
def test_score_plays_an_environments_turns_and_hedges_and_huge_turns_earn_nothing(user, tmp_path):
    """`grpo-env score ENV`, as root and as an unprivileged user: each row's `turns` played as one
    episode through the real processes. A wrong guess, every number in one turn (a hedge), and a
    300 KB turn of surrogates, control and special-token text earn nothing; a row with a completion
    instead is refused with the reason; nothing is left behind (no process, no /dev/shm object, no
    file but the scored rows), and it stays fast."""
    import time

    gold = {"secret": 5, "high": 10, "max_turns": 4}
    rows = [dict(id="wrong", prompt="guess", turns=["1", "2", "3", "4"], **gold),
            dict(id="hedge", prompt="guess", turns=[" ".join(str(i) for i in range(1, 11))], **gold),
            dict(id="huge", prompt="guess", turns=["\ud800\x1b[2J<|im_end|>" + "7" * 300_000], **gold),
            dict(id="right", prompt="guess", turns=["3", "5"], **gold),
            dict(id="completion", prompt="guess", completion="5", **gold)]
    work = tmp_path / "work"
    work.mkdir()
    src = work / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = set(os.listdir("/dev/shm"))
    argv = ["score", "games.guess", "-i", str(src)]
    t = time.monotonic()
    p = unprivileged.grpo_env_as(user, argv, work, timeout=120)
    assert time.monotonic() - t < 60
    assert p.returncode == 1 and "1 invalid row(s)" in p.stderr, p.stdout + p.stderr  # the completion row
    out = {r["id"]: r for r in map(json.loads, (work / "in.scored.jsonl").read_text().splitlines())}
    assert [(out[i]["status"], out[i]["score"]) for i in ("wrong", "hedge", "huge")] == [("incorrect", 0.0)] * 3
    assert (out["right"]["status"], out["right"]["score"]) == ("correct", 1.0)
    assert "is an environment: a row needs 'turns'" in out["completion"]["error"]
    assert set(os.listdir("/dev/shm")) <= before
    leftover = subprocess.run(["pgrep", "-f", str(src)], capture_output=True, text=True).stdout.split()
    assert not leftover
    harness = {"python", "home"}  # the unprivileged user's interpreter and home (matplotlib's cache: docs/reasoning_gym.md)
    assert sorted(p.name for p in work.iterdir() if p.name not in harness) == ["in.jsonl", "in.scored.jsonl"]
