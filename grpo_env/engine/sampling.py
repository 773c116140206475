"""Rollouts: render prompts, sample G completions per prompt (:mod:`grpo_env.engine.decode`), and
compute per-token log-probs of completion tokens (the LM head only on completion positions,
through :mod:`grpo_env.engine.head`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from grpo_env.engine import chat
from grpo_env.engine.cpu_matmul import onednn_linear
from grpo_env.engine.decode import _hidden_and_head, cache_kwarg, output_cache
from grpo_env.engine.generation import Sampling
from grpo_env.engine.head import head_logprobs
from grpo_env.types import Example


@dataclass
class Rollout:
    """A batch of B = prompts * G sequences: left-padded prompts then right-padded completions."""

    input_ids: torch.Tensor  # (B, P + T) prompt then completion tokens
    attention_mask: torch.Tensor  # (B, P + T) 0 on left prompt padding and after a completion's EOS
    completion_mask: torch.Tensor  # (B, T) 1 on completion tokens up to and including EOS
    truncated: torch.Tensor  # (B,) bool: no EOS within max_new_tokens
    texts: list[str]  # (B,) decoded completions, special tokens dropped
    prompt_len: int  # P
    # (B, T) 1 on the tokens the model sampled; None: every completion token (single-turn). In an
    # episode the completion also holds the environment's tokens, which are context, not trained on.
    model_mask: torch.Tensor | None = None
    sample_logprobs: torch.Tensor | None = None  # (B, T) log-probs at sampling time (when asked for)
    episodes: list[dict | None] | None = None  # (B,) per-episode stats (None: a single-turn row)

    @property
    def completion_ids(self) -> torch.Tensor:  # (B, T)
        return self.input_ids[:, self.prompt_len :]

    @property
    def trained_mask(self) -> torch.Tensor:  # (B, T) the tokens the loss covers
        return self.completion_mask if self.model_mask is None else self.model_mask

    def select(self, rows: torch.Tensor | list[int]) -> "Rollout":
        rows = torch.as_tensor(rows, dtype=torch.long)
        dev = rows.to(self.input_ids.device)
        idx = rows.tolist()
        return Rollout(
            self.input_ids[dev],
            self.attention_mask[dev],
            self.completion_mask[dev],
            self.truncated[rows],
            [self.texts[i] for i in idx],
            self.prompt_len,
            None if self.model_mask is None else self.model_mask[dev],
            None if self.sample_logprobs is None else self.sample_logprobs[dev],
            None if self.episodes is None else [self.episodes[i] for i in idx],
        )


def gradient_checkpointing(model) -> bool:
    """True when gradient checkpointing is on (transformers sets the flag on the layer stacks)."""
    return any(m.__dict__.get("gradient_checkpointing") is True for m in model.modules())


def _products(model):
    """fp32 products on the CPU through oneDNN where this machine chose it (:mod:`cpu_matmul`), except in a forward that gradient
    checkpointing recomputes in backward: that runs on autograd's thread, outside this block, and
    must save the same tensors as the original forward."""
    if torch.is_grad_enabled() and gradient_checkpointing(model):
        return contextlib.nullcontext()
    return onednn_linear()


def prefill_of(example: Example) -> str:
    """The text the assistant's turn starts with: the content of a final assistant message in the
    prompt ("" when the prompt ends with another role). It is prompt, not completion: the model is
    not trained on it, and rewards are given it followed by the completion."""
    last = example.prompt[-1]
    return last.content if last.role == "assistant" else ""


def render_prompt(example: Example, tokenizer, chat_template: bool = True, system_prompt: str | None = None) -> str:
    """The prompt text the model sees: the chat template with the assistant turn opened, or plain text;
    then the prefill (a final assistant message), verbatim. The prefill is appended to the opened
    turn rather than rendered by the template, so no template can close the turn or rewrite it.
    An environment's tools are offered by the template, or in the system message (:mod:`chat`)."""
    prompt = example.prompt[:-1] if example.prompt[-1].role == "assistant" else example.prompt
    messages = [{"role": m.role, "content": m.content} for m in prompt]
    if system_prompt is not None and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    if example.tools:
        return chat.render(tokenizer, messages, example.tools, chat_template) + prefill_of(example)
    if chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n\n".join(m["content"] for m in messages) + "\n\n"
    return text + prefill_of(example)


def eos_ids(tokenizer, model) -> list[int]:
    """Every token id that ends a completion (tokenizer EOS plus the model's generation config EOS)."""
    ids: set[int] = set()
    for src in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(src, int):
            ids.add(src)
        elif src:
            ids.update(int(i) for i in src)
    return sorted(ids)


def completion_masks(completions: torch.Tensor, eos: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) token ids -> (mask (B, T) up to and including the first EOS, truncated (B,) no EOS)."""
    is_eos = torch.isin(completions, torch.tensor(eos, device=completions.device))  # (B, T)
    has_eos = is_eos.any(-1)  # (B,)
    first = torch.where(has_eos, is_eos.int().argmax(-1), torch.full_like(has_eos, completions.shape[1], dtype=torch.long))
    pos = torch.arange(completions.shape[1], device=completions.device).unsqueeze(0)  # (1, T)
    mask = (pos <= first.unsqueeze(-1)).long()  # (B, T)
    return mask, ~has_eos


@torch.no_grad()
def generate(
    model,  # the policy, or a generator (:mod:`grpo_env.engine.generation`)
    tokenizer,
    prompts: list[str],
    group_size: int,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    min_new_tokens: int | None = None,
    share_prefix: bool = True,
    return_logprobs: bool = False,
    keep: bool = False,
) -> Rollout:
    """G completions for each prompt (B = prompts * G rows), sampled by the generator seam (a model
    is sampled by our decode loop, :mod:`grpo_env.engine.decode`).

    With ``share_prefix`` each prompt is prefilled once and its KV cache repeated G times, so the
    prompt costs 1/G of a plain batched prefill; the completions are the same either way.
    ``min_new_tokens`` (default: the model's ``generation_config``) forbids EOS before that length.
    ``return_logprobs`` keeps each sampled token's log-prob (``Rollout.sample_logprobs``).
    ``keep`` asks the generator to keep what an episode's next turn continues from.
    """
    from grpo_env.engine.generation import as_generator

    gen = as_generator(model)
    policy = getattr(gen, "model", None)
    device = next(policy.parameters()).device if policy is not None else torch.device("cpu")
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    prompt_ids, prompt_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)  # (N, P)
    if not share_prefix:  # each prompt prefilled G times: rows are already one per completion
        prompt_ids, prompt_mask = prompt_ids.repeat_interleave(group_size, 0), prompt_mask.repeat_interleave(group_size, 0)
    if min_new_tokens is None:
        min_new_tokens = getattr(getattr(policy, "generation_config", None), "min_new_tokens", None) or 0
    eos = eos_ids(tokenizer, policy)
    s = Sampling(max_new_tokens, tuple(eos), tokenizer.pad_token_id, temperature, top_p, top_k, min_new_tokens)
    completions, sample_lp = gen.generate(prompt_ids, prompt_mask, group_size if share_prefix else 1, s,
                                          logprobs=return_logprobs, keep=keep)  # (B, T') each
    if share_prefix:
        prompt_ids, prompt_mask = prompt_ids.repeat_interleave(group_size, 0), prompt_mask.repeat_interleave(group_size, 0)
    mask, truncated = completion_masks(completions, eos)
    texts = tokenizer.batch_decode(completions * mask + tokenizer.pad_token_id * (1 - mask), skip_special_tokens=True)
    sample_lp = sample_lp * mask if sample_lp is not None else None  # (B, T')
    return Rollout(torch.cat([prompt_ids, completions], 1), torch.cat([prompt_mask, mask], 1), mask, truncated.cpu(),
                   texts, prompt_ids.shape[1], sample_logprobs=sample_lp)


def token_logprobs(
    model,
    input_ids: torch.Tensor,  # (B, P + T)
    attention_mask: torch.Tensor,  # (B, P + T)
    prompt_len: int,  # P
    temperature: float = 1.0,  # the sampling temperature: log-probs of the distribution sampled from
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, T) of the completion tokens under ``model``, and optionally per-token entropy.

    Positions follow the attention mask (as ``generate`` did with left padding). The LM head runs
    only on the T positions that predict completion tokens, and the full-vocabulary softmax is never
    stored: log p(token) = logit[token] - logsumexp(logits).
    """
    base, head = _hidden_and_head(model)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, L)
    with _products(model):
        hidden = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    hidden = hidden.last_hidden_state if hasattr(hidden, "last_hidden_state") else hidden[0]  # (B, L, H)
    h = hidden[:, prompt_len - 1 : -1]  # (B, T, H) the positions that predict completion tokens
    return head_logprobs(head, h, input_ids[:, prompt_len:], temperature, with_entropy)


def group_logprobs(
    model,
    prompt_ids: torch.Tensor,  # (N, P) each group's prompt once, left-padded
    prompt_mask: torch.Tensor,  # (N, P)
    completion_ids: torch.Tensor,  # (N*G, T) groups on consecutive rows
    completion_mask: torch.Tensor,  # (N*G, T)
    group_size: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Like :func:`token_logprobs`, but each prompt runs once per group, not G times.

    The prompt's keys and values are computed once (with gradient), repeated for the G completions
    (``repeat_interleave`` is differentiable: its backward sums the G copies), and the completions
    run on top of that cache. Same values and gradients as the plain path, with the prompt's share of
    the forward and backward work divided by G.
    """
    base, head = _hidden_and_head(model)
    G = group_size
    pos_p = (prompt_mask.cumsum(-1) - 1).clamp(min=0)  # (N, P)
    with _products(model):
        out = base(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos_p, use_cache=True)
        cache = output_cache(out)
        cache.batch_repeat_interleave(G)  # (N*G, heads, P, d) per layer
        last = out.last_hidden_state[:, -1:].repeat_interleave(G, 0)  # (N*G, 1, H) predicts completion token 0
        full_mask = torch.cat([prompt_mask.repeat_interleave(G, 0), completion_mask], 1)  # (N*G, P + T)
        pos_c = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, prompt_ids.shape[1] :]  # (N*G, T)
        out_c = base(input_ids=completion_ids, attention_mask=full_mask, position_ids=pos_c, use_cache=True,
                     **{cache_kwarg(base): cache})
    h = torch.cat([last, out_c.last_hidden_state[:, :-1]], 1)  # (N*G, T, H) positions predicting completion tokens
    return head_logprobs(head, h, completion_ids, temperature, with_entropy)
