"""The decode loop against `transformers`' `generate`: same greedy tokens, same sampling distribution,
min_new_tokens, early stop, padding after EOS, and the fallback for caches of another kind; resuming a
kept KV cache (an episode's next turn) against a prefill of the whole sequence."""

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from grpo_env.engine.decode import decode, preallocated_cache, resume, sample_next
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer

PROMPTS = ["u:a\na:", "u:a much longer prompt\na:"]


def _prompts(tok):
    enc = tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def _hf_greedy(model, ids, mask, G, T, **kw):
    out = model.generate(input_ids=ids.repeat_interleave(G, 0), attention_mask=mask.repeat_interleave(G, 0),
                         do_sample=False, max_new_tokens=T, eos_token_id=[1], pad_token_id=0, **kw)
    return out[:, ids.shape[1]:]


def _sharp_model(tok, seed):
    """A tiny Llama with larger weights than the default init, so every position and mask entry
    moves the argmax (with the default init greedy decoding barely depends on the context)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, pad_token_id=0, eos_token_id=1, bos_token_id=2, initializer_range=0.2,
    )).eval()


@pytest.mark.parametrize("seed", [0, 3])
def test_greedy_decode_equals_generate_token_for_token(seed):
    tok = tiny_tokenizer()
    model = _sharp_model(tok, seed)
    ids, mask = _prompts(tok)
    ours = decode(model, ids, mask, 3, max_new_tokens=12, eos=[1], pad_id=0, temperature=0.0)
    assert torch.equal(ours, _hf_greedy(model, ids, mask, 3, 12))


def test_min_new_tokens_forbids_eos_and_rows_pad_after_their_eos():
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed=1)
    ids, mask = _prompts(tok)
    free = decode(model, ids, mask, 1, max_new_tokens=8, eos=[1], pad_id=0, temperature=0.0)
    eos = [int(free[0, 0])]  # call the first greedy token of row 0 "EOS": row 0 stops at once
    stopped = decode(model, ids, mask, 1, max_new_tokens=8, eos=eos, pad_id=0, temperature=0.0)
    assert stopped[0, 0] == eos[0] and (stopped[0, 1:] == 0).all()
    held = decode(model, ids, mask, 1, max_new_tokens=8, eos=eos, pad_id=0, temperature=0.0, min_new_tokens=4)
    assert not (held[:, :4] == eos[0]).any()
    hf = _hf_greedy(model, ids, mask, 1, 8, min_new_tokens=4)
    hf_eos = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=8, min_new_tokens=4,
                            eos_token_id=eos, pad_token_id=0)[:, ids.shape[1]:]
    assert hf.shape[1] == 8 and torch.equal(held, hf_eos)


def test_decode_stops_once_every_row_has_ended():
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed=1)
    ids, mask = _prompts(tok)
    first = decode(model, ids, mask, 2, max_new_tokens=8, eos=[1], pad_id=0, temperature=0.0)[:, 0]
    out = decode(model, ids, mask, 2, max_new_tokens=8, eos=sorted(set(first.tolist())), pad_id=0, temperature=0.0)
    assert out.shape == (4, 1)  # every row's first token is an EOS: one step, not eight


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.3, 4, 1.0), (1.0, 0, 0.8), (0.9, 6, 0.7)])
def test_sampler_draws_from_the_distribution_generate_samples_from(temperature, top_k, top_p):
    torch.manual_seed(0)
    logits = torch.randn(1, 12) * 2
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    want = torch.softmax(warpers(None, logits.clone()), -1)[0]  # (V,)
    n = 40_000
    draws = sample_next(logits.expand(n, -1).contiguous(), temperature, top_k, top_p)
    freq = torch.bincount(draws, minlength=12).float() / n
    assert (freq[want == 0] == 0).all()  # nothing outside top-k / top-p is ever drawn
    assert torch.allclose(freq, want, atol=0.012), (freq, want)


def test_sampler_is_greedy_at_temperature_zero_and_follows_the_seed():
    logits = torch.randn(5, 30)
    assert torch.equal(sample_next(logits, 0.0), logits.argmax(-1))
    torch.manual_seed(4)
    a = sample_next(logits)
    torch.manual_seed(4)
    assert torch.equal(a, sample_next(logits))


def test_caches_of_another_kind_fall_back_to_generate():
    from transformers import MistralConfig, MistralForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, sliding_window=4, pad_token_id=0,
                        eos_token_id=1, bos_token_id=2)
    model = MistralForCausalLM(cfg).eval()
    ids, mask = _prompts(tok)
    prefill = model.model(input_ids=ids, attention_mask=mask, use_cache=True).past_key_values
    assert preallocated_cache(prefill, 2, 20) is None  # sliding-window layers: not ours to preallocate
    out = decode(model, ids, mask, 2, max_new_tokens=6, eos=[1], pad_id=0, temperature=0.0)
    assert torch.equal(out, _hf_greedy(model, ids, mask, 2, 6))


def _fresh(model, seqs, T, eos):
    """Greedy tokens and log-probs continuing each whole sequence, prefilled from scratch (left-padded)."""
    L = max(len(s) for s in seqs)
    ids = torch.tensor([[0] * (L - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (L - len(s)) + [1] * len(s) for s in seqs])
    lp = []
    out = decode(model, ids, mask, 1, max_new_tokens=T, eos=eos, pad_id=0, temperature=0.0, logprobs=lp)
    return out, torch.stack(lp, 1)


def _through_eos(row: torch.Tensor, eos: int) -> list[int]:
    toks = row.tolist()
    return toks[: toks.index(eos) + 1] if eos in toks else toks


@pytest.mark.parametrize("seed", [0, 1])
def test_resume_continues_kept_rows_as_a_prefill_of_their_whole_sequences_would(seed):
    tok = tiny_tokenizer()
    model = _sharp_model(tok, seed)
    ids, mask = _prompts(tok)
    G, T = 2, 6
    eos = [int(decode(model, ids, mask, G, max_new_tokens=T, eos=[1], pad_id=0, temperature=0.0)[0, 2])]
    kept = []  # with this EOS row 0 ends at its third token (its EOS in the cache), other rows run on or not
    out = decode(model, ids, mask, G, max_new_tokens=T, eos=eos, pad_id=0, temperature=0.0, keep=kept)
    prompts = [p[m.bool()].tolist() for p, m in zip(ids.repeat_interleave(G, 0), mask.repeat_interleave(G, 0))]
    seqs = [p + _through_eos(o, eos[0]) for p, o in zip(prompts, out)]

    # hop 1: a subset of rows, out of order, new tokens of different lengths, none at all for row 0
    inc = [tok("u:ok\na:", add_special_tokens=False)["input_ids"], [], tok("x", add_special_tokens=False)["input_ids"]]
    rows = [3, 0, 1]
    seqs1 = [seqs[r] + x for r, x in zip(rows, inc)]
    lp, kept1 = [], []
    got = resume(model, kept[0], rows, seqs1, max_new_tokens=5, eos=eos, pad_id=0, temperature=0.0, logprobs=lp,
                 keep=kept1)
    want, want_lp = _fresh(model, seqs1, 5, eos)
    assert torch.equal(got, want)
    torch.testing.assert_close(torch.stack(lp, 1), want_lp, atol=1e-5, rtol=1e-5)
    # the cache holds each row's sequence so far, no more: compacted, not grown by padding
    assert kept1[0].mask.shape[1] <= max(map(len, seqs1)) + 5

    # hop 2: from the resumed cache, again a subset
    seqs2 = [seqs1[k] + _through_eos(got[k], eos[0]) + tok("u:y\na:", add_special_tokens=False)["input_ids"]
             for k in (2, 0)]
    lp2 = []
    got2 = resume(model, kept1[0], [2, 0], seqs2, max_new_tokens=4, eos=eos, pad_id=0, temperature=0.0, logprobs=lp2)
    want2, want_lp2 = _fresh(model, seqs2, 4, eos)
    assert torch.equal(got2, want2)
    torch.testing.assert_close(torch.stack(lp2, 1), want_lp2, atol=1e-5, rtol=1e-5)


def test_resume_refuses_a_sequence_shorter_than_its_cache():
    tok = tiny_tokenizer()
    model = _sharp_model(tok, 0)
    ids, mask = _prompts(tok)
    kept = []
    decode(model, ids, mask, 1, max_new_tokens=3, eos=[1], pad_id=0, temperature=0.0, keep=kept)
    with pytest.raises(ValueError, match="its cache holds"):
        resume(model, kept[0], [0], [[5, 6]], max_new_tokens=2, eos=[1], pad_id=0)


def test_finished_rows_leave_the_batch_and_nothing_else_changes(monkeypatch):
    """Rows that end early stop being computed (the batch the model sees shrinks as they finish); the
    tokens are generate's greedy tokens and those of the full batch, and the log-probs the full batch's;
    sampled tokens are the full batch's too."""
    import grpo_env.engine.decode as decode_mod
    from grpo_env.engine.sampling import completion_masks

    tok = tiny_tokenizer()
    model = _sharp_model(tok, 0)
    prompts = [f"u:{w}\na:" for w in ("a", "bb", "a much longer prompt", "c d", "eee", "f g h", "ij", "k")]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    free = decode(model, ids, mask, 1, max_new_tokens=12, eos=[1], pad_id=0, temperature=0.0)
    rows_of: dict[int, set[int]] = {}
    for r, row in enumerate(free.tolist()):
        for x in row:
            rows_of.setdefault(x, set()).add(r)
    # "EOS": each row's first token that no other row produces, so rows end at different steps
    eos = sorted({next(x for x in row if rows_of[x] == {r}) for r, row in enumerate(free.tolist())
                  if any(rows_of[x] == {r} for x in row)})
    sizes: list[int] = []  # the rows of each forward: the prefill, then one per decoding step
    hook = model.model.embed_tokens.register_forward_hook(lambda m, i, o: sizes.append(o.shape[0]))
    lps: list[torch.Tensor] = []
    out = decode(model, ids, mask, 1, max_new_tokens=12, eos=eos, pad_id=0, temperature=0.0, logprobs=lps)
    hook.remove()
    monkeypatch.setattr(decode_mod, "COMPACT_BELOW", 0.0)  # every row computed to the end
    lps_full: list[torch.Tensor] = []
    full = decode(model, ids, mask, 1, max_new_tokens=12, eos=eos, pad_id=0, temperature=0.0, logprobs=lps_full)
    hf = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=12, eos_token_id=eos,
                        pad_token_id=0)[:, ids.shape[1]:]
    assert torch.equal(out, full) and torch.equal(out, hf)
    ended, _ = completion_masks(out, eos)
    lengths = ended.sum(1)
    assert len(set(lengths.tolist())) >= 3, lengths  # rows end at different steps ...
    steps = sizes[1:]
    assert steps == sorted(steps, reverse=True) and steps[-1] < len(prompts), sizes  # ... and leave the batch
    torch.testing.assert_close(torch.stack(lps, 1), torch.stack(lps_full, 1), rtol=0, atol=1e-5)
    assert (torch.stack(lps, 1)[ended == 0] == 0).all()  # after a row's EOS: 0, whether it was computed or not

    # sampled: every row draws the same numbers whether finished rows left the batch or not
    sampled, sizes = [], []
    for compact in (0.0, 0.75):
        monkeypatch.setattr(decode_mod, "COMPACT_BELOW", compact)
        torch.manual_seed(5)
        sizes.clear()
        hook = model.model.embed_tokens.register_forward_hook(lambda m, i, o: sizes.append(o.shape[0]))
        sampled.append(decode(model, ids, mask, 2, max_new_tokens=12, eos=eos, pad_id=0, temperature=1.0))
        hook.remove()
    assert torch.equal(sampled[0], sampled[1])
    assert min(sizes[1:]) < 2 * len(prompts), sizes  # the compacted run's batch did shrink (not counting the prefill)
