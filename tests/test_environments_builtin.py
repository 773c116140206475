"""The built-in environments (math_python, code_feedback, games.guess), loaded through the real plugin
registry and played through the real episode processes: every scripted episode gets the judgement,
tool-error count and length it declares, and the attacks a model would try fail."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from grpo_env.cli.check import check_environment, judge
from grpo_env.environment import Environment, EpisodeFixture
from grpo_env.episodes import EpisodeHost, Played, play
from grpo_env.plugins import get_registry
from grpo_env.sandbox import codec, detect
from grpo_env.scoring import ScoringService
from grpo_env.types import Example, Status

needs_sandbox = pytest.mark.skipif(not detect().full, reason="the python tool and code tests need namespaces "
                                   "isolation (see grpo-env doctor)")


@contextmanager
def hosted(name: str):
    """The registry's environment ``name`` with a real scoring service for its components."""
    reg = get_registry()
    env = reg.task(name)
    assert isinstance(env, Environment)
    with ScoringService({n: reg.reward(n) for n in env.components}, workers=2) as service, \
            EpisodeHost({env.name: (env, env.rewards)}, service, workers=2) as host:
        yield env, host


def run(host: EpisodeHost, env: Environment, example: Example, turns: list[str]) -> Played:
    return play(host, example.model_copy(update={"task": env.name, "tools": env.tool_specs()}), turns)


def assert_fixture(env: Environment, f: EpisodeFixture, played: Played) -> list[str]:
    """Why ``played`` misses the fixture's declaration (empty when it meets it)."""
    reg = get_registry()
    s, label = played.scored, f.note or f.example.id
    comps, whys = s.components, []
    if f.expect == "full":
        for name in env.components:
            if name not in comps or comps[name].score != reg.reward(name).max_score:
                whys.append(f"{name} below full: {comps.get(name)}")
        own = comps[env.name]
        # the environment's own outcome is correct, or absent (not_applicable) when only components judge
        if not (own.status is Status.CORRECT or (own.status is Status.NOT_APPLICABLE and not env.rewards.get(env.name))):
            whys.append(f"environment outcome {own}")
        if math.isnan(s.total) or s.status is Status.ERROR:
            whys.append(f"no signal: {s}")
    elif f.expect == "zero":
        if s.total != 0:
            whys.append(f"total {s.total} ({s.status})")
    else:
        name = next(iter(env.rewards))
        name = name if name in comps else env.name
        if comps[name].status is not Status(f.expect):
            whys.append(f"{name} status {comps[name].status}, expected {f.expect}")
    core = judge(f, s, env, reg)  # grpo-env check's own rule agrees
    if core:
        whys.append(core)
    if f.tool_errors is not None and played.stats["tool_errors"] != f.tool_errors:
        whys.append(f"tool errors {played.stats['tool_errors']}, expected {f.tool_errors}")
    if f.turns_played is not None and played.stats["turns"] != f.turns_played:
        whys.append(f"turns {played.stats['turns']}, expected {f.turns_played}")
    return [f"{label}: {w}" for w in whys]


def play_fixtures(name: str, kinds: set[str]) -> None:
    with hosted(name) as (env, host):
        fixtures = env.get_fixtures()
        assert {f.expect if isinstance(f.expect, str) and f.expect in ("full", "zero") else "status"
                for f in fixtures} >= kinds
        problems = [w for f in fixtures for w in assert_fixture(env, f, run(host, env, f.example, f.turns))]
    assert not problems, "\n".join(problems)


def test_plugins_register_the_environments():
    reg = get_registry()
    assert reg.origin[("task", "math_python")] == "math"
    assert reg.origin[("task", "code_feedback")] == "code"
    assert reg.origin[("task", "games.guess")] == "games"
    ep = {e.name: e for e in importlib.metadata.entry_points(group="grpo_env")}["games"]
    assert ep.value == "grpo_env_games" and ep.dist.metadata["Name"] == "grpo-env-games"
    assert reg.plugins["games"].status == "loaded" and reg.plugins["games"].environments == ["games.guess"]
    envs = reg.environments
    assert envs["math_python"].rewards == {"math.answer": 1.0} and envs["math_python"].max_turns == 4
    assert [t.name for t in envs["math_python"].tools] == ["python"]
    assert envs["code_feedback"].rewards == {"code_feedback": 1.0}
    assert envs["games.guess"].rewards == {"games.guess": 1.0}


# ---- every scripted episode -------------------------------------------------------------------


@needs_sandbox
def test_math_python_fixtures():
    play_fixtures("math_python", {"full", "zero", "status"})


@needs_sandbox
def test_code_feedback_fixtures():
    play_fixtures("code_feedback", {"full", "zero", "status"})


def test_guess_fixtures():
    play_fixtures("games.guess", {"full", "zero"})


def test_guess_passes_grpo_env_check():
    """The same episodes through `grpo-env check`: judged alike twice, streams deterministic."""
    reg = get_registry()
    with hosted("games.guess") as (env, host):
        result = check_environment(env, reg, host)
    assert result.ok, result.problems


# ---- examples ---------------------------------------------------------------------------------


def test_example_streams():
    reg = get_registry()
    guess = reg.task("games.guess")
    opts = guess.parse_options({"count": 64})

    def secrets(split, seed):
        return [e.gold["secret"] for e in guess.examples(split, seed, opts)]

    assert secrets("train", 0) == secrets("train", 0) and len(secrets("train", 0)) == 64
    assert secrets("train", 0) != secrets("test", 0) and secrets("train", 1) != secrets("train", 0)
    assert all(1 <= s <= 8 for s in secrets("test", 3))
    wide = [e.gold for e in guess.examples("train", 0, guess.parse_options({"high": 100, "max_turns": 7, "count": 5}))]
    assert all(1 <= g["secret"] <= 100 and g["max_turns"] == 7 for g in wide)
    with pytest.raises(ValueError):
        next(iter(guess.examples("validation", 0, opts)))

    mp = reg.task("math_python")
    ex = list(mp.examples("train", 0, mp.parse_options({"difficulty": 3, "count": 5})))
    assert len(ex) == 5 and ex == list(mp.examples("train", 0, mp.parse_options({"difficulty": 3, "count": 5})))
    assert "python" in ex[0].prompt[-1].content and "\\boxed" in ex[0].prompt[-1].content
    test_ids = {e.id for e in mp.examples("test", 0, mp.parse_options({"difficulty": 3, "count": 50}))}
    assert not test_ids & {e.id for e in mp.examples("train", 0, mp.parse_options({"difficulty": 3, "count": 50}))}

    cf = reg.task("code_feedback")
    problems = list(cf.examples("train", 0, cf.parse_options({"attempts": 2})))
    assert len(problems) >= 20 and all(p.gold["kind"] == "function" and p.gold["tests"] for p in problems)
    assert all(p.gold["attempts"] == 2 for p in problems) and "2 attempt(s)" in problems[0].prompt[-1].content


# ---- attacks: math_python's python tool --------------------------------------------------------


def _call(code: str) -> str:
    return "<tool_call>" + json.dumps({"name": "python", "arguments": {"code": code}}) + "</tool_call>"


@needs_sandbox
def test_python_tool_cannot_read_host_files(tmp_path, monkeypatch):
    secret = "host-secret-4f1c9a"
    host_file = tmp_path / "secret.txt"
    host_file.write_text(secret)
    monkeypatch.setenv("GRPO_ENV_TEST_SECRET", secret)  # the episode process inherits it; the sandbox must not
    paths = ["/root/.bashrc", "/root/.gitconfig", "/etc/passwd", "/etc/hostname", str(host_file), __file__]
    probe = (
        "import json, os\nres = {}\n"
        f"for p in {paths!r}:\n"
        "    try:\n        res[p] = 'READ ' + open(p).read()[:40]\n"
        "    except Exception as e:\n        res[p] = type(e).__name__\n"
        "try:\n    res['/root'] = sorted(os.listdir('/root'))\nexcept Exception as e:\n    res['/root'] = type(e).__name__\n"
        "res['env'] = sorted(os.environ)\nres['secret'] = os.environ.get('GRPO_ENV_TEST_SECRET')\n"
        "print(json.dumps(res))\n"
    )
    with hosted("math_python") as (env, host):
        ex = env.get_fixtures()[0].example
        played = run(host, env, ex, [_call(probe)])
    assert played.stats["tool_errors"] == 0, played.observations
    out = played.observations[0][0].content
    assert secret not in out
    res = json.loads(out)
    for p in paths:
        assert not res[p].startswith("READ"), (p, res[p])
    # /root may show only the directory holding this interpreter (the sandbox exposes its stdlib)
    allowed = set()
    if sys.base_prefix.startswith("/root/"):
        allowed.add(Path(sys.base_prefix).relative_to("/root").parts[0])
    if isinstance(res["/root"], list):
        try:
            host_entries = set(os.listdir("/root"))
        except OSError:
            host_entries = set()
        assert not (set(res["/root"]) & (host_entries - allowed)), res["/root"]
        assert ".bashrc" not in res["/root"]
    assert res["secret"] is None and "GRPO_ENV_TEST_SECRET" not in res["env"]
    assert played.scored.total == 0  # a tool call as the last turn: no final answer


@needs_sandbox
def test_python_tool_infinite_loop_is_a_tool_error():
    with hosted("math_python") as (env, host):
        ex = env.get_fixtures()[0].example
        start = time.monotonic()
        played = run(host, env, ex, [_call("while True:\n    pass"), "\\boxed{396}"])
        elapsed = time.monotonic() - start
    assert elapsed < 12, elapsed  # the sandbox's 3 s wall, well inside the step deadline
    assert played.stats["tool_errors"] == 1 and played.stats["ended_by"] == "env"
    assert played.observations[0][0].role == "tool" and played.observations[0][0].content.startswith("error: timeout")
    assert played.scored.total == 1.0  # the episode goes on after the tool error


# ---- attacks: games.guess ----------------------------------------------------------------------


def test_guess_enumerating_numbers_never_wins():
    from grpo_env_games.guess import guess_example, read_guess

    lists = ["1 2 3 4 5 6 7 8", "8,7,6,5,4,3,2,1", "It is 1 or 2 or 3 or 4 or 5 or 6 or 7 or 8", "1.2.3.4.5.6.7.8",
             "12345678"]
    with hosted("games.guess") as (env, host):
        for secret in range(1, 9):
            ex = guess_example(f"attack-{secret}", secret)
            for text in lists:
                played = run(host, env, ex, [text] * 4)
                assert played.scored.total == 0, (secret, text, played.scored)
            played = run(host, env, ex, ["1 2 3 4 5 6 7 8"])
            assert played.scored.total == 0 and played.observations[0][0].content.startswith("Reply with exactly one")
    # linear and capped: megabytes of digits or of one repeated number are read in well under a second
    for text in ["9" * 2_000_000, "7 " * 1_000_000, "x" * 2_000_000 + "5", "1 2 " + "3" * 2_000_000]:
        start = time.monotonic()
        read_guess(text)
        assert time.monotonic() - start < 1.0
    assert read_guess("9" * 13) == (None, "too_long") and read_guess("007") == (7, "")
    assert read_guess("Is it 5? I say 5!") == (5, "") and read_guess("4.5")[0] is None
    assert read_guess("5 " * 16) == (5, "") and read_guess("5 " * 17) == (None, "many")
    assert read_guess("\u0665")[0] is None  # only ASCII digits: an Arabic-Indic five is no number


# ---- attacks: code_feedback --------------------------------------------------------------------


def _lookup_submission(entry: str, visible: list[dict]) -> str:
    """A function that prints the visible tests' answers and returns them from a table."""
    table = {repr(tuple(codec.decode(t["args"]))): codec.decode(t.get("expected")) for t in visible}
    return (f"```python\nTABLE = {table!r}\n"
            f"def {entry}(*args):\n    for v in TABLE.values():\n        print(v)\n"
            "    return TABLE.get(repr(args))\n```\n")


@needs_sandbox
def test_code_feedback_visible_answers_never_reach_full_hidden_score():
    from grpo_env_code.feedback_env import split_tests

    reg = get_registry()
    cf = reg.task("code_feedback")
    problems = list(cf.examples("train", 0, cf.parse_options({"timeout": 1.5})))[:12]
    with hosted("code_feedback") as (env, host):
        for ex in problems:
            visible, hidden = split_tests(ex.gold["tests"])
            played = run(host, env, ex, [_lookup_submission(ex.gold["entry_point"], visible)])
            own = played.scored.components["code_feedback"]
            # it passes every visible test (the episode ends at once) and never earns full hidden credit
            assert played.stats["turns"] == 1 and own.details["visible_passed"] == len(visible), (ex.id, own)
            assert played.scored.total < 1.0 and own.status is not Status.CORRECT, (ex.id, own)


@needs_sandbox
def test_code_feedback_never_shows_hidden_tests():
    from grpo_env_code.feedback_env import split_tests

    reg = get_registry()
    cf = reg.task("code_feedback")
    ex = next(e for e in cf.examples("train", 0, cf.parse_options({"timeout": 1.5}))
              if e.gold["entry_point"] == "sum_of_squares")
    visible, hidden = split_tests(ex.gold["tests"])
    assert len(visible) == 2 and len(hidden) == 3
    leak = "```python\ndef sum_of_squares(nums):\n    raise ValueError('args=' + repr(nums))\n```\n"
    with hosted("code_feedback") as (env, host):
        played = run(host, env, ex, [leak] * 3)
    seen = "\n".join(m.content for obs in played.observations for m in obs)
    assert "args=[1, 2, 3]" in seen  # a visible test's failure is shown
    for t in hidden:
        assert f"args={codec.decode(t['args'])[0]!r}" not in seen
    assert played.scored.total == 0 and played.stats["turns"] == 3
