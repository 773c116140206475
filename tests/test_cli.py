"""The grpo-env command line, in-process, against plugins registered for the test."""

import json

import pytest

from grpo_env import Example, Fixture, Reward, Status, Task, hookimpl
from grpo_env.cli import main

import rewards_for_tests as rt


def examples(split, seed, options):
    for i in range(3):
        yield Example(id=f"{split}-{seed}-{i}", prompt=f"What is {i}+{i}?", gold={"answer": str(2 * i)})


def from_row(row, options):
    return Example(id=str(row.get("id", "")), prompt=row["question"], gold={"answer": str(row["answer"])})


EX = Example(id="fx", prompt="What is 2+2?", gold={"answer": "4"})


class Plugin:
    def __init__(self, fixtures):
        self.fixtures = fixtures

    @hookimpl
    def register_rewards(self, register):
        register(Reward(name="cli.exact", fn=rt.exact))
        register(Reward(name="cli.hang", fn=rt.hang, timeout=0.3))
        register(Reward(name="cli.penalty", fn=rt.length_penalty, max_score=0.0))

    @hookimpl
    def register_tasks(self, register):
        register(Task(name="cli_add", description="add", rewards={"cli.exact": 1.0, "cli.penalty": 0.1},
                      examples=examples, from_row=from_row, fixtures=self.fixtures))
        register(Task(name="cli_plain", rewards={"cli.exact": 1.0}, examples=examples))


GOOD_FIXTURES = [
    Fixture(example=EX, completion="4", expect=Status.CORRECT),
    Fixture(example=EX, completion="", expect="zero", reward="cli.penalty", note="no penalty when empty"),
    Fixture(example=EX, completion="5", expect=Status.INCORRECT),
    Fixture(example=EX, completion=" ", expect=Status.UNPARSABLE),
]


@pytest.fixture
def plugin(register_plugin):
    register_plugin(Plugin(GOOD_FIXTURES), name="cliplug")


def test_plugins_lists_registrations(plugin, capsys):
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert "cliplug" in text and "cli_add" in text and "cli.exact" in text


def test_tasks_list_and_show(plugin, capsys):
    assert main(["tasks"]) == 0
    assert "cli_add" in capsys.readouterr().out
    assert main(["tasks", "cli_add", "--split", "test", "--seed", "4"]) == 0
    text = capsys.readouterr().out
    assert "test-4-0" in text and "What is 0+0?" in text
    assert main(["tasks", "cli_ad"]) == 2
    assert "did you mean 'cli_add'" in capsys.readouterr().err


def test_score_file_with_bad_rows(plugin, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "question": "2+2?", "answer": 4, "completion": "4"}),
                "{not json",
                json.dumps({"id": "c", "question": "2+2?", "answer": 4}),
                json.dumps({"id": "d", "answer": 4, "completion": "4"}),
                json.dumps({"id": "e", "question": "1+1?", "answer": 2, "completion": "3"}),
            ]
        )
    )
    dst = tmp_path / "out.jsonl"
    assert main(["score", "cli_add", "--input", str(src), "--output", str(dst)]) == 1  # bad rows -> 1
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert len(rows) == 5
    assert rows[0]["status"] == "correct" and rows[0]["score"] == pytest.approx(1 - 0.1 * 0.01)
    assert rows[0]["rewards"]["cli.exact"]["status"] == "correct" and rows[0]["id"] == "a"
    assert rows[1] == {"line": 2, "status": "invalid_row", "error": rows[1]["error"]}
    assert "line 2: not valid JSON" in rows[1]["error"]
    assert "line 3: needs a string field 'completion'" in rows[2]["error"]
    assert rows[3]["status"] == "invalid_row" and "line 4: KeyError" in rows[3]["error"]
    assert rows[4]["status"] == "incorrect" and rows[4]["score"] == pytest.approx(-0.001)
    out = capsys.readouterr()
    assert "invalid_row" in out.out and "3 invalid row(s)" in out.err


def test_check_passes_good_fixtures_and_fails_bad_ones(register_plugin, capsys):
    bad = GOOD_FIXTURES + [Fixture(example=EX, completion="5", expect="full", note="wrong on purpose")]
    register_plugin(Plugin(bad), name="cliplug")
    assert main(["check", "cli_add"]) == 1
    text = capsys.readouterr().out
    assert "FAIL" in text and "wrong on purpose" in text and "expected full marks" in text
    assert main(["check", "cli_plain"]) == 1
    assert "ships no fixtures" in capsys.readouterr().out


def test_check_ok(plugin, capsys):
    assert main(["check", "cli_add"]) == 0
    assert "ok" in capsys.readouterr().out


def _probes_of(name):
    """Probes: completions that solve nothing, scored by `grpo-env check`."""
    return lambda example: [(f"answer {n}", str(n)) for n in ((0, 4) if name == "cli_weak" else (7, 9))]


class ProbedPlugin:
    @hookimpl
    def register_rewards(self, register):
        register(Reward(name="cli.exact", fn=rt.exact))

    @hookimpl
    def register_tasks(self, register):
        fixtures = [Fixture(example=EX, completion="4", expect=Status.CORRECT),
                    Fixture(example=EX, completion="5", expect=Status.INCORRECT)]
        for name in ("cli_weak", "cli_strong"):
            register(Task(name=name, rewards={"cli.exact": 1.0}, examples=examples, fixtures=fixtures,
                          probes=_probes_of(name)))


def test_check_reports_weak_tests_as_a_warning_with_the_credit_probes_earn(register_plugin, capsys, monkeypatch):
    """Answers 0 and 4 solve nothing, yet are right on the examples whose answer they happen to be
    (i = 0 and i = 2 of each split): 4 of 6 examples pay full marks for them, 0.67 on average. That
    is reported (the row, a warning naming the examples) and the exit status stays 0: the task's
    code is right, its examples are weak. Probes that earn nothing leave the task plain `ok`."""
    import grpo_env.cli

    monkeypatch.setattr(grpo_env.cli.out, "width", 250)  # table cells unfolded
    register_plugin(ProbedPlugin(), name="cliprobed")
    assert main(["check", "cli_weak", "cli_strong"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    weak_row = text[text.index("cli_weak"):text.index("cli_strong")]
    assert "0.67 (6 examples)" in weak_row and "weak tests" in weak_row
    assert "cli_weak: warning: weak tests: submissions that solve nothing" in text and "earn 0.67 of full marks" in text
    assert ("4 of 6 examples pay more than 0.5 of full marks to a submission that solves nothing: "
            "train-0-0 (answer 0: 1.00), train-0-2 (answer 4: 1.00), test-0-0 (answer 0: 1.00), "
            "test-0-2 (answer 4: 1.00)") in text
    assert "0.00 (6 examples)" in text[text.index("cli_strong"):] and "cli_strong: warning" not in text
    assert main(["check", "cli_weak", "--option", "x=1"]) == 2  # the task takes no options: said, not ignored
    assert "task 'cli_weak': invalid options" in capsys.readouterr().err


def test_unknown_arguments_and_missing_input(plugin, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["check", "--bogus"])
    assert main(["score", "cli_add", "--input", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such input file" in capsys.readouterr().err


# --- the real CLI on installed distributions: dropped tasks and failed plugins (issue 11, item 1) -----

import os
import subprocess
import sys

PLUGIN_SRC = """
from grpo_env import Example, Fixture, Outcome, Reward, Status, Task, hookimpl

def exact(completion, example):
    return Outcome.correct() if completion == example.gold["a"] else Outcome.incorrect()

def examples(split, seed, options):
    yield Example(id=f"{split}{seed}", prompt="say hi", gold={"a": "hi"})

EX = Example(id="fx", prompt="say hi", gold={"a": "hi"})

@hookimpl
def register_rewards(register):
    register(Reward(name="NAME.exact", fn=exact, description="the completion is gold['a']"))

@hookimpl
def register_tasks(register):
    register(Task(name="NAME", rewards={"NAME.exact": 1.0}, examples=examples,
                  fixtures=[Fixture(example=EX, completion="hi", expect="full")]))
    register(Task(name="NAME_more", rewards=REWARDS, examples=examples, optional=OPTIONAL,
                  fixtures=[Fixture(example=EX, completion="hi", expect="full")]))
"""


def installed(make_dist, name, rewards, optional=()):
    """A plugin NAME with a good task NAME and a task NAME_more judged by ``rewards``."""
    src = PLUGIN_SRC.replace("NAME", name).replace("REWARDS", repr(rewards)).replace("OPTIONAL", repr(tuple(optional)))
    make_dist(f"tp-{name}-dist", name, f"tp_{name}", src)


def cli(tmp_path, *args, **env):
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "COLUMNS": "250", **env}
    return subprocess.run([sys.executable, "-m", "grpo_env.cli", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def broken_setup(make_dist, tmp_path):
    """typo: a task names a misspelled reward; user: a task uses a reward of the plugin prov, which
    is not in GRPO_ENV_PLUGINS (blocked); both plugins' other tasks are fine."""
    installed(make_dist, "typo", {"typo.exat": 1.0})
    installed(make_dist, "user", {"user.exact": 1.0, "prov.exact": 0.5})
    installed(make_dist, "prov", {"prov.exact": 1.0})
    return {"GRPO_ENV_PLUGINS": "typo,user"}


def test_check_everything_fails_on_dropped_tasks_and_says_why(tmp_path, broken_setup):
    run = cli(tmp_path, "check", **broken_setup)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert any("typo_more" in l and "DROPPED" in l for l in lines), run.stdout
    assert any("user_more" in l and "DROPPED" in l for l in lines), run.stdout
    assert any(" typo " in l and " ok " in l for l in lines), run.stdout  # the good tasks still pass
    assert "task typo_more (plugin typo) dropped" in run.stdout and "did you mean 'typo.exact'" in run.stdout
    assert "task user_more (plugin user) dropped" in run.stdout
    assert "plugin 'prov' is blocked: GRPO_ENV_PLUGINS does not name it" in run.stdout
    named = cli(tmp_path, "check", "typo", **broken_setup)  # naming only good tasks checks only them
    assert named.returncode == 0, named.stdout + named.stderr
    dropped = cli(tmp_path, "check", "typo_more", **broken_setup)
    assert dropped.returncode == 2 and "did you mean 'typo.exact'" in dropped.stderr


def test_plugins_shows_dropped_tasks_and_failed_plugins(tmp_path, make_dist, broken_setup):
    make_dist("tp-bad-dist", "bad", "tp_bad", "import no_such_module_xyz\n")
    run = cli(tmp_path, "plugins", GRPO_ENV_PLUGINS="typo,user,bad")
    assert run.returncode == 1, run.stdout + run.stderr
    row = next(l for l in run.stdout.splitlines() if " tp-typo-dist " in l)
    assert "1 task(s) dropped" in row and "typo_more (dropped)" in row
    assert "task typo_more (plugin typo) dropped: it uses unregistered reward(s): 'typo.exat'" in run.stdout
    assert "plugin bad failed:" in run.stdout and "no_such_module_xyz" in run.stdout
    check = cli(tmp_path, "check", GRPO_ENV_PLUGINS="bad")  # nothing else loaded: the failure alone fails it
    assert check.returncode == 1 and "plugin bad failed:" in check.stdout


def test_check_with_optional_component_absent_passes_with_a_warning(tmp_path, make_dist):
    installed(make_dist, "opt", {"opt.exact": 1.0, "prov.exact": 0.5}, optional=["prov.exact"])
    run = cli(tmp_path, "check", GRPO_ENV_PLUGINS="opt")
    assert run.returncode == 0, run.stdout + run.stderr
    assert any("opt_more" in l and " ok " in l for l in run.stdout.splitlines()), run.stdout
    assert "warning: plugin opt: task 'opt_more': optional reward 'prov.exact'" in run.stderr
    assert "left out" in run.stderr


# --- reasons where they happen (issue 11, item 6) ------------------------------------------------

class RaisingPlugin:
    @hookimpl
    def register_rewards(self, register):
        register(Reward(name="cli.raises", fn=rt.raises))

    @hookimpl
    def register_tasks(self, register):
        fixtures = [Fixture(example=EX, completion="4", expect=Status.CORRECT, note="should be right")]
        register(Task(name="cli_raises", rewards={"cli.raises": 1.0}, examples=examples, fixtures=fixtures))


def test_check_prints_the_error_message_and_a_readable_traceback(register_plugin, capsys):
    register_plugin(RaisingPlugin(), name="raising")
    assert main(["check", "cli_raises"]) == 1
    text = capsys.readouterr().out
    line = next(l for l in text.splitlines() if "should be right" in l)
    assert "got cli.raises (error, excluded): reward 'cli.raises' raised KeyError: 'gold field missing'" in line
    tb = text[text.index(line):].splitlines()[1:]
    assert tb[0].strip() == "Traceback (most recent call last):"
    assert any(l.strip() == 'raise KeyError("gold field missing")' for l in tb)
    assert "\\n" not in text


def test_score_writes_a_completion_with_a_lone_surrogate(tmp_path):
    """JSON may hold a lone surrogate (`"\\ud800"`), UTF-8 may not: the row is scored and written
    back with the same escape, not a traceback."""
    src, dst = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"completion": "<think>a</think><answer>\\ud800</answer>", "id": "s"}\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "grpo_env.cli", "score", "format_demo", "--input", str(src),
                           "--output", str(dst)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
    assert row["completion"] == "<think>a</think><answer>\ud800</answer>" and row["status"] in {"correct", "partial", "incorrect"}
