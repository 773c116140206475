"""Episode rollout: batched multi-turn sampling, token-exact, beside single-turn :func:`generate`.

Turn 1 of every row is one :func:`~grpo_env.engine.sampling.generate` call (each prompt prefilled
once for its G rows). A row of a single-turn task ends there: with no environment in the batch this
module returns ``generate``'s rollout untouched. Each episode row then loops:

1. its turn goes to its environment (``host``: the engine knows no plugins), which answers with
   observations or ends the episode;
2. the observations become the *increment*, the chat template's text between the model's end-of-turn
   token and its next turn (:func:`grpo_env.engine.chat.increment`), tokenised once;
3. every unfinished episode samples its next turn in one batched call of the generator's ``resume``,
   from exactly its ids so far: prompt, its own sampled ids (never decoded and re-encoded) and the
   increments. Our decode loop goes on from the KV cache the episode's last turn left, so only the
   increment is prefilled (``episode_kv_cache = false`` prefills the whole episode each turn); vLLM
   finds the episode's prefix in its prefix cache.

An episode also ends at its environment's turn limit, when a turn runs out of tokens (no end-of-turn
token: ``truncated``) and when the next turn would pass ``max_episode_tokens``. An environment with
``on_truncated = "step"`` gets a cut turn instead (``Turn.truncated``): when it answers, the cut
turn's sampled ids stay as they are, the end-of-turn token the model did not sample closes them (an
environment token: outside ``model_mask``), and the increment follows. The rollout's
completion part holds each episode's tokens after the prompt; ``model_mask`` marks the sampled ones,
the only tokens the loss covers.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Protocol, Sequence

import torch

from grpo_env.engine import chat
from grpo_env.engine.generation import Sampling, as_generator
from grpo_env.engine.sampling import Rollout, eos_ids, generate, prefill_of, render_prompt
from grpo_env.text import plain
from grpo_env.types import Example, Message, Scored


class EpisodeBatch(Protocol):
    def step(self, rows: Sequence[int], texts: Sequence[str],
             truncated: Sequence[bool] | None = None) -> list[list[Message] | None]: ...
    def stop(self, rows: Sequence[int], reason: str) -> None: ...
    def fail(self, rows: Sequence[int], why: str) -> None: ...
    def judge(self) -> list[Scored | None]: ...
    @property
    def stats(self) -> list[dict[str, Any] | None]: ...


class EpisodeHost(Protocol):
    """What the engine needs of environments (:class:`grpo_env.episodes.EpisodeHost` provides it)."""

    def is_episode(self, example: Example) -> bool: ...
    def max_turns(self, example: Example) -> int: ...
    def on_truncated(self, example: Example) -> str: ...  # "end" (default) or "step"
    def open(self, examples: Sequence[Example]) -> EpisodeBatch: ...


class _Timed:
    """Calls into the environments, their wall time added to ``timer["environment"]``."""

    def __init__(self, timer: Counter):
        self.timer = timer

    def __call__(self, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timer["environment"] += time.perf_counter() - t


def _row_ids(ro: Rollout, r: int) -> tuple[list[int], list[int], list[float]]:
    """Row ``r``'s prompt ids (no padding) and its first turn's ids and log-probs (through its EOS)."""
    P = ro.prompt_len
    prompt = ro.input_ids[r, :P][ro.attention_mask[r, :P].bool()].tolist()
    n = int(ro.completion_mask[r].sum())
    lp = ro.sample_logprobs[r, :n].tolist() if ro.sample_logprobs is not None else [0.0] * n
    return prompt, ro.completion_ids[r, :n].tolist(), lp


def run(model, tokenizer, examples: list[Example], group_size: int, cfg, host: EpisodeHost | None = None, *,
        temperature: float | None = None, return_logprobs: bool = False,
        timer: Counter | None = None) -> tuple[Rollout, list[Scored | None] | None]:
    """Roll out G samples of each example (rows of a group consecutive); returns the rollout and,
    when the batch holds episodes, each row's judgement (None on single-turn rows, which the
    caller scores). ``model`` is the policy or a generator (:mod:`grpo_env.engine.generation`).
    ``cfg`` gives max_new_tokens (per turn), max_episode_tokens, sampling settings.
    ``timer["environment"]`` accumulates the seconds spent waiting on environments."""
    gen = as_generator(model)
    timer = Counter() if timer is None else timer
    temperature = cfg.temperature if temperature is None else temperature
    sample = dict(temperature=temperature, top_p=cfg.top_p, top_k=cfg.top_k)
    texts = [render_prompt(e, tokenizer, cfg.chat_template, cfg.system_prompt) for e in examples]
    episodic = host is not None and any(host.is_episode(e) for e in examples)
    keep = episodic and cfg.episode_kv_cache  # the generator keeps turn 1's KV cache, for the next turns
    ro = generate(gen, tokenizer, texts, group_size, max_new_tokens=cfg.max_new_tokens,
                  return_logprobs=return_logprobs, keep=keep, **sample)
    return_logprobs = return_logprobs and ro.sample_logprobs is not None
    rows_ex = [e for e in examples for _ in range(group_size)]
    if not episodic:
        return ro, None

    B = len(rows_ex)
    env = _Timed(timer)
    batch = env(host.open, rows_ex)
    prompts, ids, mm, lps = [], [], [], []  # per row: prompt ids; completion ids, model mask, log-probs
    for r in range(B):
        p, c, lp = _row_ids(ro, r)
        prompts.append(p)
        ids.append(c)
        mm.append([1] * len(c))
        lps.append(lp)
    truncated = ro.truncated.clone()
    turns = [1] * B
    turn_text = [prefill_of(e) + t for e, t in zip(rows_ex, ro.texts)]
    active = [r for r in range(B) if host.is_episode(rows_ex[r])]
    eos = eos_ids(tokenizer, getattr(gen, "model", None))
    close = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else eos[0]  # ends a cut turn
    steps_cut = [_on_truncated(host, e) == "step" for e in rows_ex]  # a cut turn goes to the environment
    budget = cfg.max_episode_tokens
    kv_rows = list(range(B))  # the episode row of each row of the generator's last decode

    while active:
        # 1. turns that ran out of tokens end their episodes (or, on_truncated="step", go to their
        # environments as they are); the rest go to their environments
        cut = [r for r in active if truncated[r] and not steps_cut[r]]
        if cut:
            env(batch.stop, cut, "truncated")
        active = [r for r in active if not truncated[r] or steps_cut[r]]
        replies = env(batch.step, active, [turn_text[r] for r in active], [bool(truncated[r]) for r in active])
        going, limit, full, broken = [], [], [], []
        for r, obs in zip(active, replies):
            if obs is None:
                continue  # the environment ended the episode (or it failed)
            if turns[r] >= host.max_turns(rows_ex[r]):
                limit.append(r)
                continue
            # 2. the increment: the template's text after the end-of-turn token, tokenised once
            try:
                inc = chat.increment_ids(tokenizer, obs, cfg.chat_template)
                if truncated[r]:  # the cut turn, kept as sampled, is closed as a finished turn is
                    inc = [close] + inc
            except Exception as e:  # observation text is model text: it ends its episode, never the run
                broken.append((r, f"its observation could not be tokenised: {type(e).__name__}: {plain(str(e))[:300]}"))
                continue
            if len(ids[r]) + len(inc) >= budget:
                full.append(r)
                continue
            ids[r] += inc
            mm[r] += [0] * len(inc)
            lps[r] += [0.0] * len(inc)
            going.append(r)
        for r, why in broken:
            env(batch.fail, [r], why)
        if limit:
            env(batch.stop, limit, "turns")
        if full:
            env(batch.stop, full, "tokens")
            truncated[full] = True
        if not going:
            break
        # 3. one batched decode of every unfinished episode's next turn, from its exact ids
        room = [min(cfg.max_new_tokens, budget - len(ids[r])) for r in going]
        at = {r: k for k, r in enumerate(kv_rows)}
        s = Sampling(max(room), tuple(eos), tokenizer.pad_token_id, **sample)
        new, new_lp = gen.resume([at[r] for r in going] if keep else None, [prompts[r] + ids[r] for r in going], s,
                                 logprobs=return_logprobs, keep=keep)
        return_logprobs = return_logprobs and new_lp is not None  # a generator without them: none for the rollout
        new, new_lp = new.tolist(), (new_lp.tolist() if new_lp is not None else [[0.0] * len(x) for x in new.tolist()])
        kv_rows = going
        for k, r in enumerate(going):
            toks = new[k][: room[k]]
            ended = next((i for i, t in enumerate(toks) if t in eos), None)
            toks = toks if ended is None else toks[: ended + 1]
            truncated[r] = ended is None
            ids[r] += toks
            mm[r] += [1] * len(toks)
            lps[r] += new_lp[k][: len(toks)]
            turns[r] += 1
            turn_text[r] = tokenizer.decode(toks, skip_special_tokens=True)
        active = going

    judged = env(batch.judge)
    stats = batch.stats
    for r, st in enumerate(stats):
        if st is not None:
            st["turns"] = turns[r]  # turns sampled (a truncated last turn never reached its environment)
            st["tokens"] = len(ids[r])
            st["model_tokens"] = sum(mm[r])
    out = _assemble(ro, ids, mm, lps, truncated, tokenizer, stats, return_logprobs)
    out.texts = [out.texts[r] if host.is_episode(e) else ro.texts[r] for r, e in enumerate(rows_ex)]
    return out, judged


def _on_truncated(host: EpisodeHost, example: Example) -> str:
    """``step`` when ``example``'s environment takes turns cut at max_new_tokens, else ``end``."""
    if not host.is_episode(example):
        return "end"
    how = getattr(host, "on_truncated", None)  # a host without it ends cut turns' episodes
    return how(example) if how is not None else "end"


def _assemble(ro: Rollout, ids, mm, lps, truncated, tokenizer, stats, with_logprobs: bool) -> Rollout:
    """The episodes as one rollout: turn 1's left-padded prompts, then each row's tokens right-padded."""
    B, T = len(ids), max(len(x) for x in ids)
    dev = ro.input_ids.device
    comp = torch.full((B, T), tokenizer.pad_token_id, dtype=torch.long)
    cmask = torch.zeros(B, T, dtype=ro.completion_mask.dtype)
    model_mask = torch.zeros(B, T, dtype=ro.completion_mask.dtype)
    logp = torch.zeros(B, T)
    for r in range(B):
        n = len(ids[r])
        comp[r, :n] = torch.tensor(ids[r], dtype=torch.long)
        cmask[r, :n] = 1
        model_mask[r, :n] = torch.tensor(mm[r], dtype=cmask.dtype)
        logp[r, :n] = torch.tensor(lps[r])
    P = ro.prompt_len
    texts = tokenizer.batch_decode([x for x in ids], skip_special_tokens=True)
    return Rollout(
        torch.cat([ro.input_ids[:, :P], comp.to(dev)], 1), torch.cat([ro.attention_mask[:, :P], cmask.to(dev)], 1),
        cmask.to(dev), truncated, texts, P, model_mask.to(dev), logp.to(dev) if with_logprobs else None, stats,
    )
