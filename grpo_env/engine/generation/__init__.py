"""The generator seam: what samples the completions, behind one small interface.

Token ids go in (left-padded prompts, or an episode's exact ids so far); completion ids and each
sampled token's log-prob come out. The trainer, :mod:`~grpo_env.engine.rollout` and ``eval`` call
only this seam. Two backends sit side by side:

- ``hf`` (:mod:`.hf`): our decode loop on the trained module itself. The CPU default; its log-probs
  are the trainer's own (``exact``), so the train-inference gap is ~0.
- ``vllm`` (:mod:`.vllm`): vLLM colocated in the trainer's process, its weights loaded from the
  trainer after every optimiser step (:meth:`Generator.sync`). The default where CUDA and vLLM are
  present. Its log-probs come from another implementation of the model, so the trainer corrects
  the gap with truncated importance sampling (``[train] tis_cap``).

A generator counts the weight versions it loaded: the trainer compares them with its own optimiser
steps every step, so a missed sync is a warning and a metric, never a silent off-policy run.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class Sampling:
    """How to sample: the same settings whichever backend draws."""

    max_new_tokens: int
    eos: tuple[int, ...]  # every id that ends a completion
    pad_id: int
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    min_new_tokens: int = 0  # EOS is forbidden before this many tokens


class GenerationError(RuntimeError):
    """The generation backend cannot run with these settings; the message says why and what to do."""


class Generator(Protocol):
    backend: str  # "hf" | "vllm"
    exact: bool  # samples from the trained module itself: its log-probs are the trainer's
    version: int  # the optimiser step whose weights it holds (0: the weights it started with)
    syncs: int  # weight loads since it started

    def generate(
        self,
        prompt_ids: torch.Tensor,  # (N, P) left-padded
        prompt_mask: torch.Tensor,  # (N, P)
        group_size: int,  # G completions per prompt, rows of a group consecutive
        sampling: Sampling,
        *,
        logprobs: bool = False,
        keep: bool = False,  # keep what :meth:`resume` needs to continue these rows cheaply
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...  # (N*G, T) ids (pad after a row's end), (N*G, T) log-probs

    def resume(
        self,
        rows: list[int] | None,  # which rows of the last kept call go on (None: nothing kept)
        seqs: list[list[int]],  # each row's exact ids so far: prompt, sampled ids, environment increments
        sampling: Sampling,
        *,
        logprobs: bool = False,
        keep: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...  # (len(seqs), T) as from :meth:`generate`

    def sync(self, model, version: int, weights=None) -> None: ...  # load optimiser step ``version``'s weights (``weights()``: the full state)
    def close(self) -> None: ...


BACKENDS = ("auto", "hf", "vllm")


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(name: str, device: torch.device) -> str:
    """``auto``: vLLM where CUDA and vLLM are both present, else our decode loop (``hf``)."""
    if name not in BACKENDS:
        raise GenerationError(f"[generation] backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "auto":
        return "vllm" if device.type == "cuda" and vllm_available() else "hf"
    return name


def make_generator(model, tokenizer, backend: str = "hf", gcfg=None, *, max_model_len: int | None = None,
                   seed: int = 0) -> Generator:
    """The generator for ``backend`` (already resolved), sampling from ``model``'s weights."""
    if backend == "hf":
        from grpo_env.engine.generation.hf import HFGenerator

        return HFGenerator(model)
    from grpo_env.engine.generation.vllm import VLLMGenerator

    return VLLMGenerator(model, tokenizer, gcfg, max_model_len=max_model_len, seed=seed)


def as_generator(model_or_generator) -> Generator:
    """A generator as it is; a model wrapped in the ``hf`` backend (the engine's functions take either)."""
    if isinstance(model_or_generator, torch.nn.Module):
        from grpo_env.engine.generation.hf import HFGenerator

        return HFGenerator(model_or_generator)
    return model_or_generator
