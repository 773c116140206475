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


def test_unknown_arguments_and_missing_input(plugin, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["check", "--bogus"])
    assert main(["score", "cli_add", "--input", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such input file" in capsys.readouterr().err
