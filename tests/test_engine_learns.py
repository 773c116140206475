"""A tiny model learns a trivially learnable reward with the real loop on CPU."""

import json
import math

import pytest
import torch

from grpo_env.engine.config import TrainConfig
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import train
from grpo_env.mixture import MixEntry, TaskMixture
from grpo_env.types import Example, Outcome, Scored, Status, Task

TARGET = "z"


def _examples(split, seed, options):
    i = 0
    while True:
        yield Example(id=f"{split}-{seed}-{i}", prompt=f"say {i % 7}")
        i += 1


TASK = Task(name="starts_z", rewards={"starts_z": 1.0}, examples=_examples)


def score_starts_with_target(examples, completions):
    out = []
    for c in completions:
        o = Outcome.correct() if c.startswith(TARGET) else Outcome.incorrect()
        out.append(Scored(total=o.score, status=o.status, components={"starts_z": o}))
    return out


def run_tiny(tmp_path, steps, **overrides):
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    cfg = TrainConfig(steps=steps, group_size=8, prompts_per_step=8, max_new_tokens=3, lr=3e-3,
                      progress=False, save_every=0, **overrides)
    mix = TaskMixture([MixEntry(TASK)], seed=0)
    return train(model, tok, mix, score_starts_with_target, cfg, tmp_path)


@pytest.mark.slow
def test_reward_rises_far_above_chance(tmp_path):
    chance = 1 / len(tiny_tokenizer())  # about 2%
    run = run_tiny(tmp_path, 40)
    rewards = [r["reward_mean"] for r in run.history]
    assert rewards[0] < 0.15
    assert sum(rewards[-5:]) / 5 > 0.6, rewards  # far above chance
    assert sum(rewards[-5:]) / 5 > 20 * chance
    # every step left a complete JSONL record
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(1, 41))
    for key in ("reward_std", "reward_by_task", "reward_by_component", "status_by_task", "completion_len_mean",
                "truncated_frac", "clip_low_frac", "clip_high_frac", "entropy", "zero_spread_frac", "grad_norm"):
        assert key in recs[-1], key
    assert set(recs[-1]["time"]) >= {"generation", "scoring", "update", "total"}
    assert recs[-1]["status_by_task"]["starts_z"]["correct"] > 0
    assert (tmp_path / "samples.log").read_text().count("=== step") == 2 * 40


def test_kl_and_mu_and_dynamic_sampling_run(tmp_path):
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    ref = tiny_model(len(tok)).requires_grad_(False)
    model = tiny_model(len(tok))
    cfg = TrainConfig(steps=3, group_size=4, prompts_per_step=2, max_new_tokens=3, lr=1e-2, beta=0.1, mu=2,
                      epsilon_high=0.28, dynamic_sampling=True, max_sampling_rounds=6, loss_type="grpo",
                      progress=False, save_every=0, temperature=1.5)
    run = train(model, tok, TaskMixture([MixEntry(TASK)], seed=1), score_starts_with_target, cfg, tmp_path,
                ref_model=ref)
    recs = run.history
    assert len(recs) == 3
    for r in recs:
        if r["sequences"]:
            assert r["kl"] is not None and r["kl"] >= 0  # k3 is never negative
            assert r["sequences"] % 4 == 0
            assert r["zero_spread_frac"] == 0.0  # dynamic sampling kept only groups with spread
        assert 1 <= r["sampling_rounds"] <= 6


def test_beta_zero_needs_no_reference_and_beta_positive_without_one_is_refused(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    cfg = TrainConfig(steps=1, group_size=2, prompts_per_step=1, max_new_tokens=2, beta=0.1, progress=False)
    with pytest.raises(ValueError, match="reference"):
        train(model, tok, TaskMixture([MixEntry(TASK)]), score_starts_with_target, cfg, tmp_path)


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path):
    from grpo_env.engine.trainer import TrainingDiverged

    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def inf_scores(examples, completions):  # finite scores whose spread overflows the advantages
        out = []
        for i, _ in enumerate(completions):
            o = Outcome.of(Status.CORRECT, 1e308 if i % 2 else -1e308)
            out.append(Scored(total=o.score, status=o.status, components={"x": o}))
        return out

    cfg = TrainConfig(steps=10, group_size=2, prompts_per_step=1, max_new_tokens=2, progress=False,
                      max_bad_steps=2, scale_rewards="none", save_every=0)
    with pytest.raises(TrainingDiverged, match="2 steps in a row"):
        train(model, tok, TaskMixture([MixEntry(TASK)]), inf_scores, cfg, tmp_path)
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in recs] == [True, True]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no update applied
    assert recs[0]["grad_norm"] is None or not math.isfinite(recs[0]["grad_norm"])


def test_lora_with_kl_uses_the_base_as_reference_and_checkpointing_runs(tmp_path):
    from grpo_env.engine.config import ModelConfig
    from grpo_env.engine.model import load_model
    from grpo_env.engine.tiny import write_tiny

    d = write_tiny(tmp_path / "tiny")
    tok = tiny_tokenizer()
    model = load_model(ModelConfig(name=str(d), lora=True, lora_r=4, gradient_checkpointing=True))
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    cfg = TrainConfig(steps=3, group_size=4, prompts_per_step=2, max_new_tokens=3, lr=5e-2, beta=0.1,
                      progress=False, save_every=0, bf16=False, micro_batch_size=4)
    run = train(model, tok, TaskMixture([MixEntry(TASK)], seed=2), score_starts_with_target, cfg, tmp_path / "run")
    kls = [r["kl"] for r in run.history]
    assert kls[0] == pytest.approx(0.0, abs=1e-6)  # adapters start at zero: policy == reference
    assert all(k >= 0 for k in kls)
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if not p.requires_grad)
