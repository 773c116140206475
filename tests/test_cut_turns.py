"""Turns cut at max_new_tokens: ``on_truncated = "step"`` hands them to the environment, token-exact;
the default ends the episode, and a run whose episodes mostly end cut at turn 1 is warned about once.

A tiny Llama, the real episode processes, the real rollout and episode watch."""

from __future__ import annotations

import io

import pytest
import torch

import envs_for_tests as te
from grpo_env.engine import chat, rollout
from grpo_env.engine.config import TrainConfig
from grpo_env.engine.episode_watch import EpisodeWatch
from grpo_env.engine.tiny import TOOL_CHARS, tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import chunk_logprobs
from grpo_env.episodes import EpisodeHost
from grpo_env.scoring import ScoringService
from grpo_env.types import Example, Message, Status

ENVS = te.cut_turn_environments()
CALL = '<tool_call>{"name": "get", "arguments": {}}</tool_call>'


@pytest.fixture(scope="module")
def host():
    with ScoringService({}, workers=1) as service:
        with EpisodeHost({n: (e, e.rewards) for n, e in ENVS.items()}, service, workers=2, grace=0.5) as h:
            yield h


def example(env: str, prompt: str = "find it") -> Example:
    return Example(id="x", prompt=prompt, gold={"secret": "7"}, task=env, tools=ENVS[env].tool_specs())


def chatty_model(tok, eos_bias: float, seed: int = 0):
    """A tiny model whose turns end with EOS with a chance set by ``eos_bias``."""
    model = tiny_model(len(tok), seed=seed)
    bias = torch.zeros(len(tok))
    bias[tok.eos_token_id] = eos_bias
    model.lm_head.bias = torch.nn.Parameter(bias)
    return model


def segments(ro, r: int) -> list[tuple[int, list[int]]]:
    """Row ``r``'s completion as (1: sampled / 0: environment, its token ids) runs."""
    keep = ro.completion_mask[r].bool()
    comp, mask = ro.completion_ids[r][keep].tolist(), ro.model_mask[r][keep].tolist()
    out: list[tuple[int, list[int]]] = []
    for t, k in zip(comp, mask):
        if out and out[-1][0] == k:
            out[-1][1].append(t)
        else:
            out.append((k, [t]))
    return out


def test_a_cut_turn_goes_to_step_with_its_flag_and_its_tool_calls_not_run(host):
    """Through the real episode process: a cut turn holding a tool call is the step's, flagged."""
    batch = host.open([example("tenv_shorter"), example("tenv_shorter")])
    obs = batch.step([0, 1], [CALL, CALL], [True, False])
    assert [m.content for m in obs[0]] == [te.CUT_REPLY]  # the step answered the cut turn
    assert [(m.role, m.content) for m in obs[1]] == [("tool", "got")]  # a whole turn's call ran
    stats = batch.stats
    assert stats[0]["tool_calls"] == 0 and stats[0]["cut_turns"] == 1
    assert stats[1]["tool_calls"] == 1 and stats[1]["cut_turns"] == 0
    batch.step([0], ["done"], [False])
    judged = batch.judge()
    assert judged[0].status is Status.CORRECT and judged[0].components["tenv_shorter"].details["cuts"] == [1]


def test_step_mode_keeps_the_rollout_token_exact(host):
    """Cut turns answered by the environment: the cut turn's sampled ids stay, an EOS closes them
    outside the model mask, the increment follows; the update's log-probs equal sampling time."""
    tok = tiny_tokenizer(TOOL_CHARS)
    model = chatty_model(tok, eos_bias=2.5)
    cfg = TrainConfig(max_new_tokens=4, max_episode_tokens=400, group_size=8, temperature=1.0)
    torch.manual_seed(0)
    exs = [example("tenv_shorter"), example("tenv_shorter", prompt="another one")]
    ro, judged = rollout.run(model, tok, exs, 8, cfg, host, return_logprobs=True)
    eps = ro.episodes
    assert any(e["cut_turns"] >= 1 and e["ended_by"] == "env" for e in eps), eps  # cut, answered, then finished
    assert any(e["cut_turns"] == 0 for e in eps), eps  # and some whose first turn was whole
    assert all(e["ended_by"] in ("env", "turns", "tokens") for e in eps), eps  # never ended for a cut turn
    for e, j in zip(eps, judged):
        if e["ended_by"] == "env":  # every turn before the whole one was cut and handed to the step
            assert j.status is Status.CORRECT and j.components["tenv_shorter"].details["cuts"] == list(
                range(1, e["cut_turns"] + 1))
            assert e["turns"] == e["cut_turns"] + 1

    lp, _ = chunk_logprobs(model, ro, slice(0, ro.input_ids.shape[0]), cfg)
    m = ro.model_mask.bool()
    torch.testing.assert_close(lp[m], ro.sample_logprobs[m], atol=1e-5, rtol=1e-5)

    eos = tok.eos_token_id
    inc = chat.increment_ids(tok, [Message(role="user", content=te.CUT_REPLY)])
    for r, e in enumerate(eps):
        parts = segments(ro, r)
        model_turns = [t for k, t in parts if k == 1]
        env_parts = [t for k, t in parts if k == 0]
        assert len(model_turns) == e["turns"] and len(env_parts) == e["turns"] - 1
        for turn in model_turns[:-1]:  # each answered turn was cut: all its tokens, no EOS sampled
            assert len(turn) == cfg.max_new_tokens and eos not in turn
        for part in env_parts:  # the EOS the model did not sample, then the tokenised increment
            assert part == [eos] + inc
        if e["ended_by"] == "env":
            assert model_turns[-1][-1] == eos and eos not in model_turns[-1][:-1]
        assert ro.model_mask[r].sum() == sum(len(t) for t in model_turns)


def test_step_mode_episodes_are_the_same_with_or_without_the_kv_cache(host):
    """A cut turn resumes from the cache its decode left (its last sampled token not yet run)."""
    tok = tiny_tokenizer(TOOL_CHARS)
    model = chatty_model(tok, eos_bias=2.5)
    out = {}
    for reuse in (True, False):
        cfg = TrainConfig(max_new_tokens=4, max_episode_tokens=400, group_size=8, episode_kv_cache=reuse)
        torch.manual_seed(5)
        out[reuse], _ = rollout.run(model, tok, [example("tenv_shorter")], 8, cfg, host, return_logprobs=True)
    a, b = out[True], out[False]
    assert max(e["cut_turns"] for e in a.episodes) >= 1
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.model_mask, b.model_mask)
    torch.testing.assert_close(a.sample_logprobs, b.sample_logprobs, atol=1e-5, rtol=1e-5)


def test_end_mode_ends_cut_episodes_and_warns_once_when_most_are_cut_at_turn_one(host, tmp_path):
    tok = tiny_tokenizer(TOOL_CHARS)
    model = chatty_model(tok, eos_bias=0.0)  # EOS is rare: nearly every 3-token turn is cut
    cfg = TrainConfig(max_new_tokens=3, max_episode_tokens=400, group_size=8)
    said = io.StringIO()
    watch = EpisodeWatch(cfg, tmp_path, out=said)
    watched = watch.observe(host)
    torch.manual_seed(0)
    for step in (1, 2):
        ro, judged = rollout.run(model, tok, [example("tenv_shorter_end")], 8, cfg, watched)
        cut = [e for e in ro.episodes if e["ended_by"] == "truncated"]
        assert len(cut) > 4, ro.episodes
        for e, j in zip(ro.episodes, judged):
            if e["ended_by"] == "truncated":  # Episode.end judged it: no credit; the environment never saw it
                assert e["turns"] == 1 and e["cut_turns"] == 1 and j.total == 0.0 and j.status is Status.INCORRECT
        watch.finish(step)
    text = said.getvalue()
    assert text.count("first turn cut at max_new_tokens") == 1, text  # once per run, not per step
    line = next(l for l in text.splitlines() if "first turn cut" in l)
    assert "'tenv_shorter_end'" in line and "[train] max_new_tokens (now 3)" in line
    assert "[train] system_prompt" in line and 'on_truncated = "step"' in line


def test_no_cut_turn_warning_when_episodes_are_answered(host, tmp_path):
    """Under on_truncated="step" no episode ends cut: the warning stays silent."""
    tok = tiny_tokenizer(TOOL_CHARS)
    model = chatty_model(tok, eos_bias=0.0)
    cfg = TrainConfig(max_new_tokens=3, max_episode_tokens=400, group_size=8)
    said = io.StringIO()
    watch = EpisodeWatch(cfg, tmp_path, out=said)
    torch.manual_seed(0)
    ro, _ = rollout.run(model, tok, [example("tenv_shorter")], 8, cfg, watch.observe(host))
    watch.finish(1)
    assert not any(e["ended_by"] == "truncated" for e in ro.episodes)
    assert "first turn cut" not in said.getvalue()
