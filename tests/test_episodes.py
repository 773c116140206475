"""Episodes: token-exact multi-turn rollout, the loss mask, deadlines, malformed tool calls, judging.

Everything runs through the real pieces: a tiny Llama with a chat template, the episode processes
of :class:`EpisodeHost`, the scoring service for reward components.
"""

from __future__ import annotations

import time

import pytest
import torch

import envs_for_tests as te
from grpo_env.engine import chat, rollout
from grpo_env.engine.config import TrainConfig
from grpo_env.engine.tiny import TOOL_CHARS, tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import chunk_logprobs
from grpo_env.episodes import EpisodeHost, play
from grpo_env.scoring import ScoringService
from grpo_env.types import Example, Status

ENVS = te.environments()


@pytest.fixture(scope="module")
def host():
    with ScoringService({te.ANSWER_REWARD.name: te.ANSWER_REWARD}, workers=2) as service:
        with EpisodeHost({n: (e, e.rewards) for n, e in ENVS.items()}, service, workers=2, grace=0.5) as h:
            yield h


def example(env: str, secret: str = "7", prompt: str = "find it") -> Example:
    return Example(id="x", prompt=prompt, gold={"secret": secret}, task=env, tools=ENVS[env].tool_specs())


def chatty_model(tok, eos_bias: float = 2.5, seed: int = 0):
    """A tiny model whose turns end soon (a bias on EOS), so episodes run several turns."""
    model = tiny_model(len(tok), seed=seed)
    bias = torch.zeros(len(tok))
    bias[tok.eos_token_id] = eos_bias
    model.lm_head.bias = torch.nn.Parameter(bias)
    return model


# ---------------------------------------------------------------------------------------------
# token-exact training sequences


def test_multi_turn_logprobs_equal_sampling_time_and_mask_covers_model_tokens_only(host):
    tok = tiny_tokenizer(TOOL_CHARS)
    model = chatty_model(tok)
    cfg = TrainConfig(max_new_tokens=10, max_episode_tokens=200, group_size=4, temperature=1.0)
    torch.manual_seed(0)
    exs = [example("tenv_talk"), example("tenv_talk", prompt="another one")]
    ro, judged = rollout.run(model, tok, exs, 4, cfg, host, return_logprobs=True)
    turns = [e["turns"] for e in ro.episodes]
    assert max(turns) >= 3, turns  # real multi-turn episodes, with tool messages in between
    assert all(j is not None for j in judged)

    # 1. the log-probs the update computes equal the sampling-time ones on every model token
    lp, _ = chunk_logprobs(model, ro, slice(0, ro.input_ids.shape[0]), cfg)
    m = ro.model_mask.bool()
    assert m.sum() > 0
    torch.testing.assert_close(lp[m], ro.sample_logprobs[m], atol=1e-5, rtol=1e-5)

    # 2. the mask covers exactly the sampled tokens: what is left between them is, turn by turn,
    # the tokenised increment of the environment's observations, and every model turn but a
    # truncated last one ends with EOS
    eos = tok.eos_token_id
    for r in range(ro.input_ids.shape[0]):
        comp = ro.completion_ids[r][ro.completion_mask[r].bool()].tolist()
        mask = ro.model_mask[r][ro.completion_mask[r].bool()].tolist()
        segments, cur, kind = [], [], mask[0]
        for t, k in zip(comp, mask):
            if k != kind:
                segments.append((kind, cur))
                cur, kind = [], k
            cur.append(t)
        segments.append((kind, cur))
        model_turns = [s for k, s in segments if k == 1]
        env_parts = [s for k, s in segments if k == 0]
        assert len(model_turns) == ro.episodes[r]["turns"]
        assert len(env_parts) == len(model_turns) - 1
        for turn in model_turns[:-1]:
            assert turn[-1] == eos and eos not in turn[:-1]
        for n, part in enumerate(env_parts, start=1):
            obs = [te.Message(role="tool", content=f"result {n}"), te.Message(role="user", content="go on")]
            assert part == tok(chat.increment(tok, obs), add_special_tokens=False)["input_ids"]
        assert ro.model_mask[r].sum() == sum(len(t) for t in model_turns)


def test_kv_cache_reuse_across_turns_changes_the_work_not_the_episodes(host):
    """Later turns continue from the episode's KV cache, or prefill the whole episode again
    (``episode_kv_cache = false``): the same seed gives the same episodes, token for token."""
    tok = tiny_tokenizer(TOOL_CHARS)
    model = chatty_model(tok)
    exs = [example("tenv_talk"), example("tenv_talk", prompt="another one")]
    out = {}
    for reuse in (True, False):
        cfg = TrainConfig(max_new_tokens=10, max_episode_tokens=200, group_size=4, episode_kv_cache=reuse)
        torch.manual_seed(3)
        out[reuse], _ = rollout.run(model, tok, exs, 4, cfg, host, return_logprobs=True)
    a, b = out[True], out[False]
    assert max(e["turns"] for e in a.episodes) >= 3
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.model_mask, b.model_mask)
    assert a.texts == b.texts
    untimed = [[{k: v for k, v in e.items() if k != "env_seconds"} for e in x.episodes] for x in (a, b)]
    assert untimed[0] == untimed[1]
    torch.testing.assert_close(a.sample_logprobs, b.sample_logprobs, atol=1e-5, rtol=1e-5)


def test_a_batch_without_episodes_is_generate_unchanged(host):
    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    cfg = TrainConfig(max_new_tokens=8, group_size=2)
    exs = [Example(id="a", prompt="hi", task="some_task")]
    torch.manual_seed(1)
    a, judged = rollout.run(model, tok, exs, 2, cfg, host)
    torch.manual_seed(1)
    b, _ = rollout.run(model, tok, exs, 2, cfg, None)
    assert judged is None and a.model_mask is None and a.episodes is None
    assert torch.equal(a.input_ids, b.input_ids) and a.texts == b.texts


def test_turn_and_token_limits_end_episodes_and_are_recorded(host):
    tok = tiny_tokenizer(TOOL_CHARS)
    model = chatty_model(tok, eos_bias=6.0)  # turns of a token or two
    cfg = TrainConfig(max_new_tokens=6, max_episode_tokens=400, group_size=4)
    ro, judged = rollout.run(model, tok, [example("tenv_talk")], 4, cfg, host)
    assert {e["ended_by"] for e in ro.episodes} <= {"env", "truncated"}
    assert all(e["turns"] <= 3 for e in ro.episodes)
    tight = cfg.model_copy(update={"max_episode_tokens": 12})  # the first increment does not fit
    ro, judged = rollout.run(model, tok, [example("tenv_talk")], 4, tight, host)
    for e, j, trunc in zip(ro.episodes, judged, ro.truncated.tolist()):
        assert e["ended_by"] in ("tokens", "truncated") and trunc
        assert j.total == 0.0 and j.status is Status.INCORRECT  # stopped by the core: Episode.end, no credit
        assert ro.completion_mask.sum(-1).max() <= 12


# ---------------------------------------------------------------------------------------------
# deadlines and failures: typed outcomes, the trainer never hangs


@pytest.mark.parametrize("env,status,why", [
    ("tenv_hang", Status.TIMEOUT, "deadline_s"),
    ("tenv_crash", Status.ERROR, "died"),
    ("tenv_raise", Status.ERROR, "broken environment"),
    ("tenv_wrong", Status.ERROR, "expected grpo_env.environment.Step"),
])
def test_a_failing_environment_is_a_typed_outcome_within_its_deadline(host, env, status, why):
    t = time.monotonic()
    got = play(host, example(env), ["one turn"])
    assert time.monotonic() - t < 5
    assert got.scored.status is status
    assert why in str(got.scored.components[env].details)
    if status is Status.ERROR:
        assert got.scored.total != got.scored.total  # NaN: no signal, never a silent 0
    else:
        assert got.scored.total == 0.0
    assert got.stats["ended_by"] == status.value


def test_a_hung_environment_does_not_hang_the_rollout(host):
    tok = tiny_tokenizer(TOOL_CHARS)
    model = chatty_model(tok, eos_bias=8.0)  # every first turn ends, so every episode reaches its environment
    cfg = TrainConfig(max_new_tokens=4, group_size=4)
    t = time.monotonic()
    ro, judged = rollout.run(model, tok, [example("tenv_hang"), example("tenv_talk")], 4, cfg, host)
    took = time.monotonic() - t
    assert took < 10, took  # 4 hung steps, 2 at a time, 0.5 s + 0.5 s grace each: ~2 s
    hung = [j.status for j, e in zip(judged, ro.episodes) if e["ended_by"] != "truncated"][:4]
    assert Status.TIMEOUT in hung
    assert all(j.status is not Status.TIMEOUT for j in judged[4:])  # the healthy episodes are untouched


def test_no_episode_process_outlives_its_episode(host):
    import psutil

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    for env in ("tenv_talk", "tenv_hang", "tenv_crash"):
        play(host, example(env), ["a", "b", "c"])
    left = {p.pid for p in me.children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE} - before
    assert not left


# ---------------------------------------------------------------------------------------------
# tool calls: malformed ones are observations, never crashes


@pytest.mark.parametrize("turn,message", [
    ('<tool_call>{"name": "get", "arguments": {}', "not closed"),
    ('<tool_call>{"name": "get", "arguments": }</tool_call>', "not valid JSON"),
    ('<tool_call>["get"]</tool_call>', "JSON object"),
    ('<tool_call>{"name": "rm", "arguments": {}}</tool_call>', "unknown tool"),
    ('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>', "missing required"),
    ('<tool_call>{"name": "add", "arguments": {"a": "1", "b": 2}}</tool_call>', "must be of type integer"),
    ('<tool_call>{"name": "add", "arguments": {"a": true, "b": 2}}</tool_call>', "must be of type integer"),
    ('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2, "c": 3}}</tool_call>', "unknown argument"),
    ('<tool_call>{"name": "add", "arguments": {"a": -1, "b": 2}}</tool_call>', "must not be negative"),
    ('<tool_call>{"name": "get", "arguments": {"x": ' + "[" * 100 + "]" * 100 + "}}</tool_call>", "nest deeper"),
    ('<tool_call>{"name": "get", "arguments": {"x": ' + "[" * 9_000 + "]" * 9_000 + "}}</tool_call>", "not valid JSON"),
    ("<tool_call>" + " " * 30_000 + "</tool_call>", "longer than"),
])
def test_a_malformed_or_failed_tool_call_is_an_observation(host, turn, message):
    got = play(host, example("tenv_secret"), [turn, "it is 7"])
    assert got.stats["tool_errors"] == 1 and got.stats["tool_calls"] == 1
    assert got.observations[0][0].role == "tool" and got.observations[0][0].content.startswith("error:")
    assert message in got.observations[0][0].content
    assert got.scored.status is Status.CORRECT and got.scored.total == 1.0  # the episode went on


def test_tool_calls_run_in_order_and_their_results_come_back(host):
    turn = ('<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call> and '
            '<tool_call>{"name": "get", "arguments": "{}"}</tool_call>')
    got = play(host, example("tenv_secret", secret="4"), [turn, "4"])
    assert [m.content for m in got.observations[0]] == ["5", "4"]
    assert got.stats == {**got.stats, "tool_calls": 2, "tool_errors": 0, "turns": 2, "ended_by": "env"}


def test_parsing_tool_calls_is_linear_on_hostile_text():
    from grpo_env.tools import MAX_CALLS, parse_calls

    tools = te.SECRET_TOOLS
    for text in ["<tool_call>" * 200_000, "<tool_call>{" * 200_000 + "</tool_call>",
                 "<tool_call>" + '{"a": ' * 100_000 + "</tool_call>", "x" * 2_000_000]:
        t = time.perf_counter()
        calls = parse_calls(text, tools)
        assert time.perf_counter() - t < 0.5
        assert len(calls) <= MAX_CALLS + 1


def test_components_judge_only_an_episode_the_environment_ended(host):
    echo = '<tool_call>{"name": "echo", "arguments": {"text": "the secret is 7"}}</tool_call> 7'
    ended = play(host, example("tenv_answer"), [echo, "the answer is 7"])
    assert ended.scored.total == 1.0 and ended.scored.components["tenv.contains"].status is Status.CORRECT
    # the turn limit stops the episode on a tool call that holds the secret: no final answer, no credit
    stopped = play(host, example("tenv_answer"), [echo, echo])
    assert stopped.stats["ended_by"] == "turns"
    assert stopped.scored.total == 0.0 and "tenv.contains" not in stopped.scored.components


def test_tools_go_in_the_system_prompt_when_the_template_has_none():
    tok = tiny_tokenizer(TOOL_CHARS)
    assert chat.probe(tok) == (False, True)  # the tiny template ignores tools, renders any role
    text = chat.render(tok, [{"role": "user", "content": "hi"}], ENVS["tenv_secret"].tool_specs())
    assert text.startswith("s:You can call tools.") and '"name": "add"' in text and text.endswith("u:hi\na:")
    inc = chat.increment(tok, [te.Message(role="tool", content="5")])
    assert inc == "\nt:5\na:"  # the rest of the closed turn, the observation, the opened turn


def test_hundreds_of_kb_of_hostile_turns_through_grpo_env_play_are_fast_and_score_nothing(tmp_path):
    import subprocess
    import sys

    call = '<tool_call>{"name": "python", "arguments": {"code": "' + "a" * 300_000 + '"}}</tool_call>'
    numbers = " ".join(str(i % 8 + 1) for i in range(100_000))  # every candidate, again and again
    for env, turns, expect in (("math_python", [call, "x " * 150_000], "longer than 20000"),
                               ("games.guess", [numbers], "games.guess=0 (incorrect)")):
        t = time.monotonic()
        got = subprocess.run([sys.executable, "-m", "grpo_env.cli", "play", env], input="\n".join(turns) + "\n",
                             capture_output=True, text=True, timeout=120, cwd=tmp_path, env={"COLUMNS": "250", "PATH": ""})
        assert time.monotonic() - t < 30
        assert got.returncode == 0, got.stderr[-2000:]
        assert expect in got.stdout and "reward 0 " in got.stdout
        assert f"after {len(turns)} turn(s)" in got.stdout
        assert not list(tmp_path.iterdir())  # nothing left in the working directory
