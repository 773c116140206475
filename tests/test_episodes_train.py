"""The trainer on a mix of a single-turn task and environments: every loss type and KL estimator,
dynamic sampling, several passes (mu), the KL reference, and an exact resume; metrics per
environment; a recipe through the CLI (train, eval, report)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import envs_for_tests as te
from grpo_env.engine.config import TrainConfig
from grpo_env.engine.tiny import TOOL_CHARS, tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import train
from grpo_env.episodes import EpisodeHost
from grpo_env.mixture import MixEntry, TaskMixture
from grpo_env.scoring import ScoringService
from grpo_env.types import Example, Outcome, Scored, Task

ENVS = te.environments()


def _say(split, seed, options):
    i = 0
    while True:
        yield Example(id=f"{split}-{seed}-{i}", prompt=f"say {i % 7}")
        i += 1


SAY = Task(name="say", rewards={"vowels": 1.0}, examples=_say)


def vowels(examples, completions):
    outs = [Outcome.partial(min(sum(ch in "aeiou" for ch in c) / 4, 1.0)) for c in completions]
    return [Scored(total=o.score, status=o.status, components={"vowels": o}) for o in outs]


def model_and_tok(seed=0):
    tok = tiny_tokenizer(TOOL_CHARS)
    model = tiny_model(len(tok), seed=seed)
    bias = torch.zeros(len(tok))
    bias[tok.eos_token_id] = 3.0  # short turns: episodes run several turns
    model.lm_head.bias = torch.nn.Parameter(bias)
    return model, tok


def run(tmp_path, steps=2, resume=False, ref=True, **overrides):
    torch.manual_seed(0)
    model, tok = model_and_tok()
    reference = model_and_tok()[0].requires_grad_(False) if ref else None
    cfg = TrainConfig(steps=steps, group_size=4, prompts_per_step=3, max_new_tokens=6, max_episode_tokens=60,
                      lr=1e-2, progress=False, save_every=2, log_samples=1, micro_batch_size=4, **overrides)
    mix = TaskMixture([MixEntry(SAY), MixEntry(ENVS["tenv_talk"]), MixEntry(ENVS["tenv_secret"])], seed=3)
    envs = {n: (ENVS[n], ENVS[n].rewards) for n in ("tenv_talk", "tenv_secret")}
    with ScoringService({}, workers=2) as service, EpisodeHost(envs, service, workers=2) as host:
        out = train(model, tok, mix, vowels, cfg, tmp_path, ref_model=reference, resume=resume, env_host=host)
    return out, model


@pytest.mark.parametrize("loss_type,kl", [("grpo", "k1"), ("bnpo", "k2"), ("dr_grpo", "k3"), ("dapo", "k3")])
def test_every_loss_and_kl_estimator_trains_on_episodes(tmp_path, loss_type, kl):
    out, _ = run(tmp_path, steps=1, loss_type=loss_type, kl_estimator=kl, beta=0.1, mu=2)
    rec = out.history[-1]
    assert not rec["skipped"] and math.isfinite(rec["loss"]) and rec["kl"] is not None
    assert set(rec["reward_by_task"]) <= {"say", "tenv_talk", "tenv_secret"}
    for env, m in rec["episodes_by_env"].items():
        assert m["episodes"] % 4 == 0 and m["turns"] >= 1 and m["env_errors"] == 0 and m["env_timeouts"] == 0
    logged = [json.loads(l) for l in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert any(e is not None and e["turns"] >= 1 for e in logged[-1]["episodes"])


def test_dynamic_sampling_keeps_groups_with_spread_of_episodes_too(tmp_path):
    out, _ = run(tmp_path, steps=2, dynamic_sampling=True, max_sampling_rounds=3, ref=False)
    for rec in out.history:
        assert rec["sampling_rounds"] >= 1
        if rec["sequences"]:
            assert rec["zero_spread_frac"] == 0.0  # every kept group has spread


def test_a_resumed_run_with_episodes_matches_an_uninterrupted_one(tmp_path):
    full, model_full = run(tmp_path / "full", steps=4)
    run(tmp_path / "cut", steps=2)
    resumed, model_resumed = run(tmp_path / "cut", steps=4, resume=True)
    a = [(r["reward_mean"], r["loss"]) for r in full.history[2:]]
    b = [(r["reward_mean"], r["loss"]) for r in resumed.history]
    assert a == b
    for (n, p), (_, q) in zip(model_full.named_parameters(), model_resumed.named_parameters()):
        assert torch.equal(p, q), n
