"""Ordering groups by completion length: rows move with their examples and rewards, and the loss
(and its gradient) is unchanged."""

import torch

from grpo_env.engine.config import TrainConfig
from grpo_env.engine.losses import group_advantages
from grpo_env.engine.sampling import Rollout, generate
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import Batch, sort_groups, update
from grpo_env.types import Example, Scored, Status

G = 4


def _batch():
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed=3)
    torch.manual_seed(5)
    prompts = [f"say {i}" for i in range(4)]
    ro = generate(model, tok, prompts, G, max_new_tokens=12, temperature=1.5)
    # completions ending at chosen lengths (a random tiny model rarely stops by itself)
    lengths = torch.tensor([9, 4, 7, 2, 3, 1, 2, 3, 12, 5, 5, 5, 6, 6, 1, 6])  # group maxima 9, 3, 12, 6
    cmask = (torch.arange(ro.completion_mask.shape[1]) < lengths[:, None]).long()
    ro = Rollout(ro.input_ids, torch.cat([ro.attention_mask[:, : ro.prompt_len], cmask], 1), cmask,
                 ro.truncated, [f"{t[:n]}" for t, n in zip(ro.texts, lengths.tolist())], ro.prompt_len)
    examples = [Example(id=str(i // G), prompt=prompts[i // G]) for i in range(len(ro.texts))]
    rewards = torch.tensor([float(len(t) % 3) for t in ro.texts])
    scored = [Scored(total=r.item(), status=Status.PARTIAL, components={}) for r in rewards]
    return model, Batch(examples, ro, scored, rewards)


def test_groups_are_ordered_by_their_longest_completion():
    _, b = _batch()
    longest = b.rollout.completion_mask.sum(-1).view(-1, G).max(-1).values
    assert len(set(longest.tolist())) > 1  # the lengths differ, so the order can change
    s = sort_groups(b, G)
    s_longest = s.rollout.completion_mask.sum(-1).view(-1, G).max(-1).values
    assert s_longest.tolist() == sorted(longest.tolist())
    before = {(e.id, t, r) for e, t, r in zip(b.examples, b.rollout.texts, b.rewards.tolist())}
    after = {(e.id, t, r) for e, t, r in zip(s.examples, s.rollout.texts, s.rewards.tolist())}
    assert before == after  # each row kept its example, text and reward
    assert [e.id for e in s.examples[::G]] == [e.id for e in s.examples[G - 1 :: G]]  # groups stay whole


def _grads(model, b, micro):
    cfg = TrainConfig(group_size=G, micro_batch_size=micro, lr=1e-3, max_grad_norm=1e9)
    adv, _ = group_advantages(b.rewards, G)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: keep the weights, look at the gradient
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    grads = {}
    hook = opt.register_step_pre_hook(lambda o, a, k: grads.update(
        {n: p.grad.clone() for n, p in model.named_parameters()}))
    m, ok = update(model, opt, sched, b.rollout, adv, b.rollout.completion_mask.float(), None, None, cfg)
    hook.remove()
    return m["loss"], grads


def test_sorting_leaves_the_loss_and_gradient_unchanged():
    model, b = _batch()
    loss_a, ga = _grads(model, b, micro=8)
    loss_b, gb = _grads(model, sort_groups(b, G), micro=8)
    assert abs(loss_a - loss_b) < 1e-6
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-4, atol=1e-7)
