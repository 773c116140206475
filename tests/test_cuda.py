"""The CUDA path: a tiny-model GRPO step on the GPU with bf16 autocast (skipped without a GPU)."""

import math

import pytest
import torch

from grpo_env.engine.config import TrainConfig
from grpo_env.engine.model import resolve_device
from grpo_env.engine.sampling import generate
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import train
from grpo_env.types import Example, Scored, Status

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


class Prompts:
    pos = 0

    def sample(self, n):
        self.pos += n
        return [Example(id=f"e{self.pos - n + i}", prompt=f"say {i}", task="t") for i in range(n)]

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, s):
        self.pos = s["pos"]


def score_fn(examples, completions):
    return [Scored(total=float(len(c) % 3), status=Status.PARTIAL, components={}) for c in completions]


def test_auto_device_is_the_gpu():
    assert resolve_device("auto").type == "cuda"


def test_bf16_step_on_cuda(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_model(len(tok)).to("cuda")
    ref = tiny_model(len(tok)).to("cuda").requires_grad_(False)
    ro = generate(model, tok, ["say 1"], 4, max_new_tokens=5)
    assert ro.input_ids.device.type == "cuda" and ro.completion_mask.device.type == "cuda"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(steps=1, group_size=4, prompts_per_step=2, max_new_tokens=8, beta=0.04, lr=1e-2,
                      bf16=True, save_every=0, progress=False, log_samples=0)
    run = train(model, tok, Prompts(), score_fn, cfg, tmp_path / "run", ref_model=ref)
    rec = run.history[0]
    assert not rec["skipped"] and math.isfinite(rec["loss"]) and math.isfinite(rec["grad_norm"])
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
