"""Model loading: a local directory, the shipped SmolLM2 GGUF (no download), LoRA, saving."""

import pytest
import torch

from grpo_env.engine.config import ModelConfig
from grpo_env.engine.model import ModelError, load_model, load_tokenizer, resolve_source, save_model, smollm2_dir
from grpo_env.engine.tiny import write_tiny


def test_local_directory_loads_and_round_trips(tmp_path):
    d = write_tiny(tmp_path / "tiny")
    cfg = ModelConfig(name=str(d))
    tok, model = load_tokenizer(cfg), load_model(cfg)
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert not model.training and all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_model(model, tok, tmp_path / "saved")
    again = load_model(ModelConfig(name=str(tmp_path / "saved")), trainable=False)
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n
    assert not any(p.requires_grad for p in again.parameters())


def test_lora_trains_only_adapters_and_saves_merged(tmp_path):
    d = write_tiny(tmp_path / "tiny")
    cfg = ModelConfig(name=str(d), lora=True, lora_r=4)
    model, tok = load_model(cfg), load_tokenizer(cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    save_model(model, tok, tmp_path / "merged")
    plain = load_model(ModelConfig(name=str(tmp_path / "merged")))
    assert not any("lora_" in n for n, _ in plain.named_parameters())


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="cannot load model"):
        load_model(ModelConfig(name=str(tmp_path / "nope")))


@pytest.mark.slow
def test_shipped_smollm2_gguf_loads_offline_and_saves(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory, gguf = resolve_source(ModelConfig(name="smollm2"))
    assert directory == str(smollm2_dir()) and gguf == "SmolLM2-135M-Instruct.Q4_1.gguf"
    cfg = ModelConfig(name="smollm2")
    tok, model = load_tokenizer(cfg), load_model(cfg)
    assert model.config.num_hidden_layers == 30 and not hasattr(model.config, "quantization_config")
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                               add_generation_prompt=True)
    save_model(model, tok, tmp_path / "m")  # a GGUF-loaded model refuses this; the dequantised copy does not
    again = load_model(ModelConfig(name=str(tmp_path / "m")), trainable=False)
    tok2 = load_tokenizer(ModelConfig(name=str(tmp_path / "m")))
    chat = [{"role": "user", "content": "hi"}]
    assert tok2.apply_chat_template(chat, tokenize=False) == tok.apply_chat_template(chat, tokenize=False)
    assert tok2("What is 2 + 2?")["input_ids"] == tok("What is 2 + 2?")["input_ids"]
    ids = tok(["What is 2 + 2?"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-4)
