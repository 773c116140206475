"""Rollouts and log-probs on a tiny model: masks, EOS, agreement with `generate`, prefix sharing."""

import pytest
import torch

from grpo_env.engine import cpu_matmul, head
from grpo_env.engine.sampling import (
    completion_masks,
    generate,
    group_logprobs,
    render_prompt,
    token_logprobs,
)
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import merge_rollouts
from grpo_env.types import Example


def test_completion_masks_stop_at_the_first_eos():
    ids = torch.tensor([[5, 1, 7, 1], [5, 6, 7, 8], [1, 0, 0, 0]])
    mask, truncated = completion_masks(ids, [1])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]


def test_render_uses_the_chat_template_or_plain_text():
    tok = tiny_tokenizer()
    ex = Example(id="1", prompt="hi")
    assert render_prompt(ex, tok) == "u:hi\na:"
    assert render_prompt(ex, tok, system_prompt="be brief") == "s:be brief\nu:hi\na:"
    assert render_prompt(ex, tok, chat_template=False) == "hi\n\n"


def _rollout(seed=0, G=4):
    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed=seed)
    prompts = [render_prompt(Example(id=str(i), prompt=p), tok) for i, p in enumerate(["a", "longer prompt"])]
    ro = generate(model, tok, prompts, G, max_new_tokens=6, temperature=1.0)
    return model, tok, ro


def test_generate_groups_prompts_and_records_truncation():
    model, tok, ro = _rollout()
    assert ro.input_ids.shape[0] == 8
    assert torch.equal(ro.input_ids[0, : ro.prompt_len], ro.input_ids[3, : ro.prompt_len])  # one group, one prompt
    assert (ro.input_ids[:4, : ro.prompt_len] != ro.input_ids[4:, : ro.prompt_len]).any()
    lengths = ro.completion_mask.sum(-1)
    ends_with_eos = ro.completion_ids.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1) == tok.eos_token_id
    assert torch.equal(ro.truncated, ~ends_with_eos)
    assert len(ro.texts) == 8


def test_logprobs_match_the_sampling_distribution():
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    enc = tok(["u:a\na:", "u:longer prompt\na:"], return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=5, do_sample=True, top_k=0, output_scores=True,
                         return_dict_in_generate=True, pad_token_id=0, eos_token_id=[1])
    P = enc["input_ids"].shape[1]
    mask, _ = completion_masks(out.sequences[:, P:], [1])
    attn = torch.cat([enc["attention_mask"], mask], 1)
    lp, _ = token_logprobs(model, out.sequences, attn, P)
    expected = torch.stack(out.scores, 1).log_softmax(-1).gather(-1, out.sequences[:, P:, None]).squeeze(-1)
    assert mask.sum() >= 4
    assert torch.allclose(lp * mask, expected * mask, atol=1e-5)


def test_prefix_shared_logprobs_equal_the_plain_path_values_and_gradients():
    model, tok, ro = _rollout(seed=3)
    P, G = ro.prompt_len, 4
    plain, ent_a = token_logprobs(model, ro.input_ids, ro.attention_mask, P, with_entropy=True)
    m = ro.completion_mask.float()
    (plain * m).sum().backward()
    grads_a = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    shared, ent_b = group_logprobs(model, ro.input_ids[::G, :P], ro.attention_mask[::G, :P], ro.completion_ids,
                                   ro.completion_mask, G, with_entropy=True)
    (shared * m).sum().backward()
    assert torch.allclose(plain * m, shared * m, atol=1e-5)
    assert torch.allclose(ent_a * m, ent_b * m, atol=1e-4)
    for n, p in model.named_parameters():
        assert torch.allclose(grads_a[n], p.grad, atol=1e-5, rtol=1e-4), n


@pytest.mark.parametrize("path", ["token", "group"])
@pytest.mark.parametrize("module, switch", [(head, "FUSED"), (cpu_matmul, "ENABLED")])
def test_speed_levers_leave_logprobs_and_gradients_unchanged(monkeypatch, path, module, switch):
    """The chunked head (head.FUSED) and oneDNN's products (cpu_matmul.ENABLED, oneDNN forced): the same log-probs,
    entropy and gradients through a real (tiny, tied-head) Llama as with the lever off."""
    if module is cpu_matmul:  # oneDNN's products on, whatever this machine would choose
        monkeypatch.setenv("GRPO_ENV_CPU_MATMUL", "onednn")
    model, tok, ro = _rollout(seed=4, G=3)
    P, G = ro.prompt_len, 3

    def run():
        model.zero_grad()
        if path == "token":
            logp, ent = token_logprobs(model, ro.input_ids, ro.attention_mask, P, 0.8, True)
        else:
            logp, ent = group_logprobs(model, ro.input_ids[::G, :P], ro.attention_mask[::G, :P], ro.completion_ids,
                                       ro.completion_mask, G, 0.8, True)
        (logp * ro.completion_mask).sum().backward()
        return logp.detach(), ent, {n: p.grad.clone() for n, p in model.named_parameters()}

    on = run()
    monkeypatch.setattr(module, switch, False)
    off = run()
    torch.testing.assert_close(on[0], off[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(on[1], off[1], rtol=1e-5, atol=1e-5)
    for n in off[2]:
        torch.testing.assert_close(on[2][n], off[2][n], rtol=1e-4, atol=1e-6)


def test_merge_rollouts_repads_both_sides():
    _, tok, a = _rollout(seed=1, G=2)
    _, _, b = _rollout(seed=2, G=2)
    b = b.select([0, 1])
    m = merge_rollouts([a, b], tok.pad_token_id)
    assert m.input_ids.shape[0] == 6 and m.prompt_len == max(a.prompt_len, b.prompt_len)
    assert m.texts == a.texts + b.texts
    assert torch.equal(m.completion_mask.sum(-1), torch.cat([a.completion_mask.sum(-1), b.completion_mask.sum(-1)]))
    assert torch.equal(m.attention_mask.sum(-1), torch.cat([a.attention_mask.sum(-1), b.attention_mask.sum(-1)]))


def test_shared_prefill_generates_the_same_completions():
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed=5)
    prompts = [render_prompt(Example(id=str(i), prompt=p), tok) for i, p in enumerate(["a", "a much longer prompt"])]
    greedy = [generate(model, tok, prompts, 3, max_new_tokens=8, temperature=0.0, share_prefix=s) for s in (True, False)]
    assert torch.equal(greedy[0].input_ids, greedy[1].input_ids)
    sampled = []
    for s in (True, False):
        torch.manual_seed(11)
        sampled.append(generate(model, tok, prompts, 3, max_new_tokens=8, temperature=1.0, share_prefix=s))
    assert torch.equal(sampled[0].input_ids, sampled[1].input_ids)
    assert sampled[0].texts == sampled[1].texts
