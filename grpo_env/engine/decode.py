"""The decode loop: prefill each prompt once, repeat its KV cache for the G completions, then
sample token by token into a KV cache allocated once at its final length.

``transformers``' ``generate`` grows its cache by concatenation (every layer copies its whole cache
at every token) and samples through a chain of logits processors; here each new key and value is
written in place, and the next token is drawn by one inverse-CDF lookup. Same distribution as
``generate`` with the same temperature / top-k / top-p (tested), not the same random stream.

Models whose cache is not a list of plain key/value layers (sliding-window or state-space layers)
go through ``generate`` instead (:func:`decode` falls back by itself).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values (B, heads, capacity, d), written in place; reads are views of
    the filled part, so attention and masks see exactly the tokens so far, as with ``DynamicLayer``."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int):  # (B, heads, n, d) each
        super().__init__()
        B, h, n, _ = keys.shape
        self.device = keys.device
        self._k = keys.new_empty(B, h, capacity, keys.shape[-1])
        self._v = values.new_empty(B, h, capacity, values.shape[-1])
        self._k[:, :, :n], self._v[:, :, :n] = keys, values
        self.n = n
        self.keys, self.values = self._k[:, :, :n], self._v[:, :, :n]
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        m = self.n + key_states.shape[-2]
        if m > self._k.shape[2]:
            raise RuntimeError(f"KV cache full: {m} positions, capacity {self._k.shape[2]}")
        self._k[:, :, self.n : m], self._v[:, :, self.n : m] = key_states, value_states
        self.n = m
        self.keys, self.values = self._k[:, :, :m], self._v[:, :, :m]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.n


def preallocated_cache(prefill: Cache, group_size: int, capacity: int) -> Cache | None:
    """A cache of ``capacity`` positions holding ``prefill``'s keys and values repeated G times per
    row (rows of a group consecutive); None when ``prefill`` has layers of another kind."""
    layers = getattr(prefill, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return Cache(layers=[
        PreallocatedLayer(layer.keys.repeat_interleave(group_size, 0), layer.values.repeat_interleave(group_size, 0), capacity)
        for layer in layers
    ])


def sample_next(
    logits: torch.Tensor,  # (B, V) float
    temperature: float = 1.0,  # 0: greedy
    top_k: int = 0,  # 0: off
    top_p: float = 1.0,  # 1: off
) -> torch.Tensor:  # (B,) token ids
    """One token per row: greedy at temperature 0, else a draw from softmax(logits / temperature)
    restricted to the top-k tokens and then to the smallest set whose probability reaches top-p
    (``transformers``' warpers' rule: drop tokens whose ascending cumulative probability is at most
    1 - top_p, always keeping the most likely one)."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature if temperature != 1.0 else logits
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, -1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        asc, order = torch.sort(logits, -1)
        drop = asc.softmax(-1).cumsum(-1) <= 1 - top_p  # (B, V) in ascending order
        drop[:, -1] = False
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    cdf = torch.softmax(logits, -1).cumsum(-1)  # (B, V)
    u = torch.rand(cdf.shape[0], 1, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]  # (B, 1)
    return torch.searchsorted(cdf, u).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


def _hidden_and_head(model):
    """(base model producing hidden states, LM head), so the head runs only where it is needed."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrapper
    return inner.get_decoder() if hasattr(inner, "get_decoder") else inner.model, inner.get_output_embeddings()


def cache_kwarg(base) -> str:
    """The forward argument that takes a KV cache: ``cache`` (newer transformers) or ``past_key_values``."""
    import inspect

    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def output_cache(out) -> Cache:
    """The KV cache a forward returned (``cache`` in newer transformers, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@torch.no_grad()
def decode(
    model,
    prompt_ids: torch.Tensor,  # (N, P) left-padded
    prompt_mask: torch.Tensor,  # (N, P)
    group_size: int,  # G completions per prompt: output rows n*G .. n*G+G-1 continue prompt n
    *,
    max_new_tokens: int,
    eos: list[int],
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_new_tokens: int = 0,  # EOS is forbidden before this many tokens
    logprobs: list[torch.Tensor] | None = None,  # given a list: each step's (B,) sampled-token log-probs appended
) -> torch.Tensor:  # (N*G, T') completion tokens, pad after a row's EOS; T' <= max_new_tokens
    """Sample completions; stops early once every row has produced an EOS.

    ``logprobs`` receives log softmax(logits / temperature) of each sampled token (the distribution
    before top-k / top-p), the quantity the update recomputes."""
    base, head = _hidden_and_head(model)
    kw = cache_kwarg(base)
    G, T = group_size, max_new_tokens
    N, P = prompt_ids.shape
    pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)  # (N, P) positions skip left padding
    out = base(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos, use_cache=True)
    cache = preallocated_cache(output_cache(out), G, P + T)
    if cache is None:
        if logprobs is not None:
            raise ValueError("sampling-time log-probs need the preallocated-cache decode path")
        return _generate_fallback(model, prompt_ids, prompt_mask, G, T, eos, pad_id, temperature, top_k, top_p, min_new_tokens)
    hidden = out.last_hidden_state[:, -1].repeat_interleave(G, 0)  # (B, H) predicts the first token
    B, dev = N * G, prompt_ids.device
    mask = torch.ones(B, P + T, dtype=prompt_mask.dtype, device=dev)  # (B, P + T)
    mask[:, :P] = prompt_mask.repeat_interleave(G, 0)
    next_pos = pos[:, -1:].repeat_interleave(G, 0) + 1  # (B, 1)
    eos_t = torch.tensor(eos, device=dev)
    tokens = torch.full((B, T), pad_id, dtype=torch.long, device=dev)  # (B, T)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    # "has every row ended?" reads a value back to the host: each token on CPU (free), every 16 tokens
    # on a GPU (so the GPU is not stalled per token; rows that ended meanwhile just emit padding)
    check_every = 1 if dev.type == "cpu" else 16
    t = 0
    for t in range(T):
        # 1. next-token distribution from the last hidden state, EOS masked until min_new_tokens
        logits = head(hidden).float()  # (B, V)
        if t < min_new_tokens and eos:
            logits[:, eos_t] = float("-inf")
        # 2. sample; rows already finished emit padding
        tok = sample_next(logits, temperature, top_k, top_p).masked_fill_(done, pad_id)  # (B,)
        tokens[:, t] = tok
        if logprobs is not None:
            scaled = logits / temperature if temperature > 0 else logits
            logprobs.append(scaled.log_softmax(-1).gather(1, tok[:, None]).squeeze(1))
        done |= torch.isin(tok, eos_t)
        if t == T - 1 or ((t + 1) % check_every == 0 and bool(done.all())):
            break
        # 3. one decoder step for the new token, writing its keys and values in place
        out = base(input_ids=tok[:, None], attention_mask=mask[:, : P + t + 1], position_ids=next_pos + t,
                   use_cache=True, **{kw: cache})
        hidden = out.last_hidden_state[:, -1]  # (B, H)
    return tokens[:, : t + 1]


def _generate_fallback(model, prompt_ids, prompt_mask, G, T, eos, pad_id, temperature, top_k, top_p, min_new_tokens):
    """``transformers``' ``generate`` on the prompts repeated G times (models with other cache kinds)."""
    sample = temperature > 0
    kwargs = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k) if sample else dict(do_sample=False)
    ids = prompt_ids.repeat_interleave(G, 0)
    out = model.generate(input_ids=ids, attention_mask=prompt_mask.repeat_interleave(G, 0), max_new_tokens=T,
                         min_new_tokens=min_new_tokens, eos_token_id=eos, pad_token_id=pad_id, use_cache=True, **kwargs)
    return out[:, ids.shape[1] :]
