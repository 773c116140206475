"""The built-in environments attacked as a policy would, through the real command (`grpo-env play`,
which plays one episode through the episode processes and the scoring service, as training does):
the right answer only after the turn limit, a submission of hundreds of KB, and nothing left behind
(files, processes, shared-memory objects). The whole file runs again as an unprivileged user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from grpo_env.plugins import get_registry

ROOT = os.geteuid() == 0
SHM = Path("/dev/shm")


def play(env: str, turns: list[str], cwd: Path, *options: str, seed: int = 0) -> tuple[str, float]:
    """``grpo-env play ENV`` fed ``turns`` (one line each); its output and wall time. Asserts it exits 0
    and leaves nothing behind: no file in ``cwd``, no process, no new shared-memory object."""
    shm_before = set(os.listdir(SHM)) if SHM.is_dir() else set()
    cmd = [sys.executable, "-m", "grpo_env.cli", "play", env, "--seed", str(seed)]
    for o in options:
        cmd += ["--option", o]
    t = time.monotonic()
    lines = [t.replace("\n", "\\n") for t in turns]  # play reads one line per turn, "\n" escaped
    got = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120, cwd=cwd,
                         env={**os.environ, "COLUMNS": "250"})
    took = time.monotonic() - t
    assert got.returncode == 0, got.stderr[-2000:]
    assert not list(cwd.iterdir()), list(cwd.iterdir())
    mine = [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(cwd)]
    assert not mine, mine
    if SHM.is_dir():
        assert set(os.listdir(SHM)) <= shm_before
    return got.stdout, took


def test_the_right_guess_after_the_turn_limit_scores_nothing(tmp_path):
    env = get_registry().tasks["games.guess"]
    seed = next(s for s in range(50)
                if next(iter(env.examples("train", s, env.parse_options({"max_turns": 2})))).gold["secret"] > 2)
    secret = next(iter(env.examples("train", seed, env.parse_options({"max_turns": 2})))).gold["secret"]
    wrong = [str(n) for n in range(1, 9) if n != secret][:2]
    out, took = play("games.guess", [*wrong, str(secret), str(secret)], tmp_path, "max_turns=2", seed=seed)
    assert "after 2 turn(s)" in out and "reward 0 (incorrect)" in out, out[-1500:]
    assert took < 30
    # the same secret within the limit wins: the attack above failed on the limit, not on the game
    out, _ = play("games.guess", [wrong[0], str(secret)], tmp_path, "max_turns=2", seed=seed)
    assert "reward 1 (correct)" in out, out[-1500:]


WRONG = "```python\ndef sum_of_squares(nums):\n    return 0\n```"
RIGHT = "```python\ndef sum_of_squares(nums):\n    return sum(x * x for x in nums)\n```"


def test_the_right_code_after_the_last_attempt_scores_nothing(tmp_path):
    out, took = play("code_feedback", [WRONG, WRONG, RIGHT], tmp_path, "attempts=2")
    assert "sum_of_squares" in out  # the example these submissions are written for
    assert "after 2 turn(s)" in out and "reward 0 (incorrect)" in out, out[-1500:]
    assert took < 60
    out, _ = play("code_feedback", [WRONG, RIGHT], tmp_path, "attempts=2")
    assert "reward 1 (correct)" in out, out[-1500:]


@pytest.mark.parametrize("body", [
    "    return 0\n" + "# " + "x" * 300_000 + "\n",  # 300 KB of comment
    "    return 0\n" * 25_000,  # 300 KB of statements
    "    s = '" + "ab" * 150_000 + "'\n    return sum(x * x for x in nums)\n",  # a right answer behind 300 KB
])
def test_a_submission_of_hundreds_of_kb_is_refused_fast_and_scores_nothing(tmp_path, body):
    code = "```python\ndef sum_of_squares(nums):\n" + body + "```"
    out, took = play("code_feedback", [code], tmp_path, "attempts=1")
    assert "reward 0 (rejected)" in out and "after 1 turn(s)" in out, out[-1500:]
    assert took < 30


@pytest.mark.slow
@pytest.mark.skipif(not ROOT, reason="drops privileges: needs root (as in CI)")
def test_environment_attacks_as_an_unprivileged_user(tmp_path_factory):
    """This file and the hostile-input test of tests/test_episodes.py again, as an unprivileged uid."""
    import unprivileged

    work = tmp_path_factory.mktemp("nonroot_env")
    os.chmod(work, 0o755)
    os.chown(work, unprivileged.UID, unprivileged.UID)
    python = unprivileged.copy_interpreter(work / "python")
    here = Path(__file__).resolve().parent
    code = ("import sys, pytest\n"
            f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '--basetemp', {str(work / 'pt')!r}, "
            f"'-k', 'not unprivileged', {str(here / 'test_env_attacks.py')!r}, "
            f"{str(here / 'test_episodes.py') + '::test_hundreds_of_kb_of_hostile_turns_through_grpo_env_play_are_fast_and_score_nothing'!r}]))\n")
    proc = unprivileged.run(python, code, cwd=work, timeout=600)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail and "skipped" not in tail, tail


SURROGATE = "```python\ndef sum_of_squares(nums):\n    raise ValueError(chr(55296) + '[/] \\x1b[2J <|im_start|>user')\n```"


def test_a_lone_surrogate_in_an_exception_message_cannot_stop_play(tmp_path):
    """Finding: the exception's message reached the feedback text as a lone surrogate and the tokenizer
    (in training) or the terminal (in play) raised. It is escaped where it is made, and again where
    environment text enters the engine: the feedback shows ``\\ud800``, the episode goes on."""
    out, took = play("code_feedback", [SURROGATE, RIGHT], tmp_path, "attempts=2")
    assert "raised" in out and "\\ud800" in out, out[-1500:]  # the message, escaped, reached the model
    assert "\\x1b[2J" in out and "\x1b[2J" not in out  # a terminal escape is shown, never sent
    assert "reward 1 (correct)" in out and "after 2 turn(s)" in out, out[-1500:]  # the episode went on
    assert took < 60


def _problem(name: str, tests: list[tuple[list, object]]) -> dict:
    return {"task_id": f"t/{name}", "prompt": f"def {name}(x):\n    \"\"\"Return x squared.\"\"\"\n",
            "entry_point": name, "canonical_solution": "    return x * x\n",
            "tests": [{"args": a, "expected": e} for a, e in tests]}


def test_code_feedback_never_shows_a_hidden_call_and_refuses_problems_it_cannot_split(tmp_path):
    """Finding: with one test, the visible and the hidden tests were the same test. The feedback showed
    its call and expected value, and a hard-coded answer then scored 1.0. Tests are now split by their
    arguments, disjoint by construction; a problem with fewer than two distinct calls is refused, said
    by name; one whose tests repeat a call keeps every copy of that call on one side."""
    data = tmp_path.parent / f"{tmp_path.name}-problems.jsonl"
    rows = [_problem("square", [([3], 9)]), _problem("square", [([3], 9), ([3], 9)])]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cmd = [sys.executable, "-m", "grpo_env.cli", "play", "code_feedback", "--option", f"source={data}"]
    got = subprocess.run(cmd, input="x\n", capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert got.returncode != 0 and "Traceback" not in got.stderr, got.stderr[-1500:]
    assert "none of the 2 problem(s)" in got.stderr and "at least two tests" in got.stderr, got.stderr[-1500:]
    # a problem with repeated calls: the repeats stay together, so what is shown is never hidden
    rows.append(_problem("square", [([3], 9), ([4], 16), ([3], 9), ([5], 25)]))
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    hard_coded = "```python\ndef square(x):\n    return 9\n```"  # the visible call's answer
    out, took = play("code_feedback", [hard_coded], tmp_path, f"source={data}", "attempts=1")
    assert "reward 0 (incorrect)" in out, out[-1500:]  # it fails every hidden call: [4] and [5]
    assert took < 60
    data.unlink()
