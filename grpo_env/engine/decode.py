"""The decode loop: prefill each prompt once, repeat its KV cache for the G completions, then
sample token by token into a KV cache allocated once at its final length.

``transformers``' ``generate`` grows its cache by concatenation (every layer copies its whole cache
at every token) and samples through a chain of logits processors; here each new key and value is
written in place, and the next token is drawn by one inverse-CDF lookup. Same distribution as
``generate`` with the same temperature / top-k / top-p (tested), not the same random stream.

Rows that have ended leave the batch once they are a quarter of it (``COMPACT_BELOW``), their keys
and values with them, so a batch whose completions end at different lengths stops paying for the
finished ones (``generate`` computes every row until the last ends); the tokens and log-probs are
those of the full batch, sampled or greedy (tested: each step draws a number for every row of
the batch), and each step's log-probs are 0 after a row's EOS either way.
Not when the cache is kept for an episode's next turn, which needs every row's.

An episode's next turn continues from the cache its last turn left (:func:`resume`, given the
:class:`KVState` that ``keep=`` collects): only the environment's new tokens are prefilled.

Models whose cache is not a list of plain key/value layers (sliding-window or state-space layers)
go through ``generate`` instead (:func:`decode` falls back by itself).
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def keep_rows(self, rows: torch.Tensor) -> None:  # rows (b,) to go on with, in their new order
        self._k, self._v = self._k.index_select(0, rows), self._v.index_select(0, rows)
        self.keys, self.values = self._k[:, :, : self.n], self._v[:, :, : self.n]


COMPACT_BELOW = 0.75  # finished rows leave the decoding batch once at most this share of it is still decoding


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
    u: torch.Tensor | None = None,  # (B, 1) uniform draws in [0, 1); None: drawn here
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
    if u is None:
        u = torch.rand(cdf.shape[0], 1, device=cdf.device, dtype=cdf.dtype)
    return torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


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


@dataclass
class KVState:
    """A decode's KV cache, kept so its rows can be continued later (an episode's next turn).

    Row r holds, at the positions where ``mask[r]`` is 1 and in order, the keys and values of the
    first ``mask[r].sum()`` tokens of its sequence: its prompt, then its sampled tokens through EOS.
    Positions the row never used (left padding, tokens after its EOS) are 0 in ``mask``."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (B, heads, L, d)
    mask: torch.Tensor  # (B, L)


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
    logprobs: list[torch.Tensor] | None = None,  # given a list: each step's (B,) sampled-token log-probs appended, 0 after a row's EOS (not on the fallback path)
    keep: list[KVState] | None = None,  # given a list: the final KV cache appended (not on the fallback path)
) -> torch.Tensor:  # (N*G, T') completion tokens, pad after a row's EOS; T' <= max_new_tokens
    """Sample completions; stops early once every row has produced an EOS.

    ``logprobs`` receives log softmax(logits / temperature) of each sampled token (the distribution
    before top-k / top-p), the quantity the update recomputes."""
    base, head = _hidden_and_head(model)
    G, T = group_size, max_new_tokens
    N, P = prompt_ids.shape
    pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)  # (N, P) positions skip left padding
    out = base(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos, use_cache=True)
    cache = preallocated_cache(output_cache(out), G, P + T)
    if cache is None:  # no sampling-time log-probs on this path: ``logprobs`` stays empty
        return _generate_fallback(model, prompt_ids, prompt_mask, G, T, eos, pad_id, temperature, top_k, top_p, min_new_tokens)
    hidden = out.last_hidden_state[:, -1].repeat_interleave(G, 0)  # (B, H) predicts the first token
    mask = torch.ones(N * G, P + T, dtype=prompt_mask.dtype, device=prompt_ids.device)  # (B, P + T)
    mask[:, :P] = prompt_mask.repeat_interleave(G, 0)
    next_pos = pos[:, -1:].repeat_interleave(G, 0) + 1  # (B, 1)
    return _sample(base, head, hidden, cache, mask, P, next_pos, T, eos, pad_id, temperature, top_k, top_p,
                   min_new_tokens, logprobs, keep)


@torch.no_grad()
def resume(
    model,
    state: KVState,  # a kept cache (``decode(..., keep=)`` or ``resume(..., keep=)``)
    rows: list[int],  # which of its rows go on, in output order
    seqs: list[list[int]],  # each such row's whole sequence: the tokens its cache holds, then new ones
    *,
    max_new_tokens: int,
    eos: list[int],
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    logprobs: list[torch.Tensor] | None = None,
    keep: list[KVState] | None = None,
) -> torch.Tensor:  # (len(rows), T') completion tokens, as from decode
    """Continue kept rows: only the tokens their cache does not hold yet (an episode's last EOS and the
    environment's increment) are run, on top of the cache, then sampling goes on as in :func:`decode`.

    The kept positions of each row are gathered right-aligned (a row's unused positions dropped, the
    cache no longer than its longest row), the new tokens follow left-padded, and every position's
    index is its token's index in the row's sequence: the same positions a prefill of the whole
    sequence gives, so the recomputed log-probs match (tested)."""
    base, head = _hidden_and_head(model)
    dev = state.mask.device
    idx = torch.tensor(rows, dtype=torch.long, device=dev)
    mask = state.mask[idx].clone()  # (B, L)
    held = mask.sum(1).tolist()
    for r, (h, s) in enumerate(zip(held, seqs)):
        if h > len(s):
            raise ValueError(f"row {rows[r]}: its cache holds {h} tokens, its sequence has {len(s)}")
        if h == len(s):  # nothing new: the last token runs again, its hidden state starts the turn
            mask[r, int(mask[r].nonzero()[-1])] = 0
            held[r] -= 1
    B, L, C = len(rows), mask.shape[1], max(held)
    order = torch.sort(mask, dim=1, stable=True).indices[:, L - C :]  # (B, C) unused positions first, then held in order
    new = [s[h:] for s, h in zip(seqs, held)]
    K, T = max(len(x) for x in new), max_new_tokens
    full = torch.ones(B, C + K + T, dtype=mask.dtype, device=dev)  # (B, C + K + T)
    full[:, :C] = mask.gather(1, order)
    chunk = torch.full((B, K), pad_id, dtype=torch.long, device=dev)  # (B, K) new tokens, left-padded
    for r, x in enumerate(new):
        full[r, C : C + K - len(x)] = 0
        chunk[r, K - len(x) :] = torch.tensor(x, dtype=torch.long)
    pos = (full.cumsum(-1) - 1).clamp(min=0)  # (B, C + K + T) a token's index in its sequence
    cache = Cache(layers=[
        PreallocatedLayer(*(t[idx].gather(2, order[:, None, :, None].expand(-1, t.shape[1], -1, t.shape[3]))
                            for t in (k, v)), C + K + T)
        for k, v in state.layers
    ])
    kw = cache_kwarg(base)
    out = base(input_ids=chunk, attention_mask=full[:, : C + K], position_ids=pos[:, C : C + K], use_cache=True,
               **{kw: cache})
    hidden = out.last_hidden_state[:, -1]  # (B, H) predicts the first new token
    return _sample(base, head, hidden, cache, full, C + K, pos[:, C + K - 1 : C + K] + 1, T, eos, pad_id,
                   temperature, top_k, top_p, 0, logprobs, keep)


def _sample(base, head, hidden, cache, mask, start, next_pos, T, eos, pad_id, temperature, top_k, top_p,
            min_new_tokens, logprobs, keep) -> torch.Tensor:
    """The token-by-token loop shared by :func:`decode` and :func:`resume`: ``hidden`` (B, H) predicts
    the first token, ``cache`` holds ``start`` positions, ``mask`` (B, start + T) and ``next_pos``
    (B, 1) place the new tokens."""
    kw = cache_kwarg(base)
    B, dev = hidden.shape[0], hidden.device
    eos_t = torch.tensor(eos, device=dev)
    tokens = torch.full((B, T), pad_id, dtype=torch.long, device=dev)  # (B, T)
    # "has every row ended?" reads a value back to the host: each token on CPU (free), every 16 tokens
    # on a GPU (so the GPU is not stalled per token; rows that ended meanwhile just emit padding)
    check_every = 1 if dev.type == "cpu" else 16
    rows = torch.arange(B, device=dev)  # (b,) the rows still computed: finished ones leave the batch
    ended = torch.zeros(B, dtype=torch.bool, device=dev)  # (b,) which of them have ended (those gone all had)
    t = 0
    for t in range(T):
        # 1. next-token distribution from the last hidden state, EOS masked until min_new_tokens
        logits = head(hidden).float()  # (b, V)
        if t < min_new_tokens and eos:
            logits[:, eos_t] = float("-inf")
        # 2. sample; rows already finished emit padding. A draw for every row of the batch, used by
        # those still in it: each row's tokens are the same whether finished rows left or not
        u = torch.rand(B, 1, device=dev, dtype=logits.dtype)[rows] if temperature > 0 else None  # (b, 1)
        tok = sample_next(logits, temperature, top_k, top_p, u).masked_fill_(ended, pad_id)  # (b,)
        tokens[rows, t] = tok
        if logprobs is not None:
            scaled = logits / temperature if temperature > 0 else logits
            lp = scaled.log_softmax(-1).gather(1, tok[:, None]).squeeze(1).masked_fill_(ended, 0.0)  # (b,) 0 after EOS
            logprobs.append(lp if len(rows) == B else lp.new_zeros(B).index_copy_(0, rows, lp))  # (B,)
        ended = ended | torch.isin(tok, eos_t)
        if t == T - 1 or ((t + 1) % check_every == 0 and bool(ended.all())):
            break
        # 3. finished rows leave the batch once they are a share of it (1 - COMPACT_BELOW), their keys
        # and values with them; not when the cache is kept (an episode's next turn needs every row's)
        if keep is None and (t + 1) % check_every == 0:
            live = (~ended).nonzero().squeeze(1)  # (b',) within the batch as it is
            if len(live) <= COMPACT_BELOW * len(rows):
                rows, ended, tok, mask, next_pos = rows[live], ended[live], tok[live], mask[live], next_pos[live]
                for layer in cache.layers:
                    layer.keep_rows(live)
        # 4. one decoder step for the new token, writing its keys and values in place
        out = base(input_ids=tok[:, None], attention_mask=mask[:, : start + t + 1], position_ids=next_pos + t,
                   use_cache=True, **{kw: cache})
        hidden = out.last_hidden_state[:, -1]  # (b, H)
    if keep is not None:  # the cache holds tokens 0 .. t-1; those after a row's EOS are padding
        is_eos = torch.isin(tokens[:, :t], eos_t).int()  # (B, t)
        used = (is_eos.cumsum(-1) - is_eos) == 0  # (B, t) up to and including the first EOS
        keep.append(KVState([(layer.keys, layer.values) for layer in cache.layers],
                            torch.cat([mask[:, :start], used.to(mask.dtype)], 1)))
    return tokens[:, : t + 1]


def _generate_fallback(model, prompt_ids, prompt_mask, G, T, eos, pad_id, temperature, top_k, top_p, min_new_tokens):
    """``transformers``' ``generate`` on the prompts repeated G times (models with other cache kinds)."""
    sample = temperature > 0
    kwargs = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k) if sample else dict(do_sample=False)
    ids = prompt_ids.repeat_interleave(G, 0)
    out = model.generate(input_ids=ids, attention_mask=prompt_mask.repeat_interleave(G, 0), max_new_tokens=T,
                         min_new_tokens=min_new_tokens, eos_token_id=eos, pad_token_id=pad_id, use_cache=True, **kwargs)
    return out[:, ids.shape[1] :]
