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


def test_decode_on_cuda_equals_generate_and_stops_late_only_by_padding():
    from grpo_env.engine.decode import decode

    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed=3).to("cuda")
    enc = tok(["u:a\na:", "u:a longer prompt\na:"], return_tensors="pt", padding=True, add_special_tokens=False).to("cuda")
    ours = decode(model, enc["input_ids"], enc["attention_mask"], 2, max_new_tokens=40, eos=[1], pad_id=0,
                  temperature=0.0)
    ids, mask = enc["input_ids"].repeat_interleave(2, 0), enc["attention_mask"].repeat_interleave(2, 0)
    hf = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=40, eos_token_id=[1],
                        pad_token_id=0)[:, ids.shape[1]:]
    n = min(ours.shape[1], hf.shape[1])  # ours may run on (padding) up to 15 tokens past the last EOS
    assert torch.equal(ours[:, :n], hf[:, :n]) and (ours[:, n:] == 0).all() and (hf[:, n:] == 0).all()
