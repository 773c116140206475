"""The ``hf`` backend: our decode loop (:mod:`grpo_env.engine.decode`) on the trained module itself.

It needs no weight sync (it samples from the very parameters the optimiser steps), and an episode's
next turn continues from the KV cache its last turn left (``keep``), so only the environment's new
tokens are prefilled.
"""

from __future__ import annotations

import torch

from grpo_env.engine import cpu_matmul
from grpo_env.engine.decode import KVState, decode, resume
from grpo_env.engine.generation import Sampling


class HFGenerator:
    backend = "hf"
    exact = True

    def __init__(self, model):
        self.model = model
        self.version = 0
        self.syncs = 0
        self._kv: KVState | None = None  # the last kept decode's cache, for resume

    def _run(self, fn, *args, s: Sampling, logprobs: bool, keep: bool, **extra):
        lps: list[torch.Tensor] | None = [] if logprobs else None
        kept: list[KVState] | None = [] if keep else None
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with cpu_matmul.decode_linears(model):  # the products through this machine's fastest kernels
                out = fn(model, *args, max_new_tokens=s.max_new_tokens, eos=list(s.eos), pad_id=s.pad_id,
                         temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, logprobs=lps, keep=kept, **extra)
        finally:
            model.train(was_training)
        self._kv = kept[0] if kept else None
        return out, (torch.stack(lps, 1) if lps else None)

    @torch.no_grad()
    def generate(self, prompt_ids, prompt_mask, group_size, sampling, *, logprobs=False, keep=False):
        return self._run(decode, prompt_ids, prompt_mask, group_size, s=sampling, logprobs=logprobs, keep=keep,
                         min_new_tokens=sampling.min_new_tokens)

    @torch.no_grad()
    def resume(self, rows, seqs, sampling, *, logprobs=False, keep=False):
        if rows is not None and self._kv is not None:  # only the tokens the kept cache does not hold run
            return self._run(resume, self._kv, rows, seqs, s=sampling, logprobs=logprobs, keep=keep)
        device = next(self.model.parameters()).device
        L = max(len(x) for x in seqs)  # each whole sequence prefilled, left-padded
        ids = torch.tensor([[sampling.pad_id] * (L - len(x)) + x for x in seqs], device=device)
        mask = torch.tensor([[0] * (L - len(x)) + [1] * len(x) for x in seqs], device=device)
        return self._run(decode, ids, mask, 1, s=sampling, logprobs=logprobs, keep=keep)

    def sync(self, model, version: int, weights=None) -> None:
        """Nothing to load (``weights`` is never called): this backend samples from the trained
        parameters themselves."""
        self.model = model
        self.version = version
        self.syncs += 1

    def close(self) -> None:
        self._kv = None
