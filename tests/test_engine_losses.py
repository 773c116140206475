"""The GRPO math against hand-computed values."""

import math

import pytest
import torch

from grpo_env.engine.losses import (
    aggregate,
    clipped_surrogate,
    group_advantages,
    grpo_loss,
    kl_estimate,
    zero_spread_groups,
)

nan = math.nan


def test_worked_example_advantages_are_plus_minus_0866():
    # rewards [1,0,0,1] and [0,0,1,1]: mean 0.5, unbiased std sqrt(1/3) -> +-0.5/0.57735 = +-0.866
    adv, m = group_advantages(torch.tensor([1.0, 0, 0, 1, 0, 0, 1, 1]), 4)
    s = 0.5 / math.sqrt(1 / 3)
    expected = torch.tensor([s, -s, -s, s, -s, -s, s, s])
    assert torch.allclose(adv, expected, atol=1e-3)
    assert adv[0].item() == pytest.approx(0.866, abs=1e-3)
    assert m["zero_spread_frac"] == 0.0


def test_nan_rewards_are_left_out_not_zero():
    # group [1, nan, 0, 0]: stats over {1, 0, 0}: mean 1/3, unbiased std sqrt(1/3)
    adv, _ = group_advantages(torch.tensor([1.0, nan, 0, 0]), 4, eps=0.0)
    std = math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)
    assert adv[0].item() == pytest.approx((2 / 3) / std, rel=1e-5)
    assert adv[1].item() == 0.0
    assert adv[2].item() == pytest.approx((-1 / 3) / std, rel=1e-5)
    # had the NaN counted as 0, the mean would be 0.25
    assert adv[2].item() != pytest.approx(-0.25 / math.sqrt(0.25), rel=1e-3)


def test_zero_spread_groups_get_zero_advantage_and_are_counted():
    r = torch.tensor([1.0, 1, 1, 1, 0.5, nan, nan, nan, 0, 1, 0, 1])
    adv, m = group_advantages(r, 4)
    assert torch.equal(adv[:8], torch.zeros(8))
    assert m["zero_spread_frac"] == pytest.approx(2 / 3)
    assert zero_spread_groups(r, 4).tolist() == [True, True, False]


def test_batch_and_none_scaling():
    r = torch.tensor([1.0, 0, 3.0, 1.0])
    adv_none, _ = group_advantages(r, 2, scale="none")
    assert adv_none.tolist() == pytest.approx([0.5, -0.5, 1.0, -1.0])
    adv_b, _ = group_advantages(r, 2, scale="batch", eps=0.0)
    std_b = torch.tensor([1.0, 0, 3, 1]).std().item()  # unbiased over the batch: sqrt(11/6)
    assert adv_b.tolist() == pytest.approx([0.5 / std_b, -0.5 / std_b, 1 / std_b, -1 / std_b], rel=1e-5)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(r, 2, scale="bogus")


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    lr = math.log(2)  # log p/q
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(lr)
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * lr**2)
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + lr)  # q/p - 1 - log(q/p)
    assert kl_estimate(ref, ref, "k3").item() == 0.0
    with pytest.raises(ValueError):
        kl_estimate(logp, ref, "k4")


def test_clipped_surrogate_by_hand():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]]))  # ratios 1.5, 0.5, 1.5, 0.5
    # advantage +1: min(r, clip(r, 0.8, 1.2)) -> 1.2, 0.5 ; advantage -1: min(-r, -clip) -> -1.5, -0.8
    loss, low, high = clipped_surrogate(logp[:, :2].repeat(2, 1), old[:, :2].repeat(2, 1), torch.tensor([1.0, -1.0]), 0.2, 0.2)
    assert loss.flatten().tolist() == pytest.approx([-1.2, -0.5, 1.5, 0.8])
    assert high.tolist() == [[True, False], [False, False]]
    assert low.tolist() == [[False, False], [False, True]]
    # clip-higher: a separate upper epsilon
    loss, _, _ = clipped_surrogate(logp[:, :1], old[:, :1], torch.tensor([1.0]), 0.2, 0.28)
    assert loss.item() == pytest.approx(-1.28)


def test_aggregation_variants_by_hand():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate(per_token, mask, "grpo", 3).item() == pytest.approx((2.0 + 4.0) / 2)
    assert aggregate(per_token, mask, "bnpo", 3).item() == pytest.approx(10 / 4)
    assert aggregate(per_token, mask, "dr_grpo", 3).item() == pytest.approx(10 / (2 * 3))
    assert aggregate(per_token, mask, "dapo", 3).item() == pytest.approx(10 / 4)
    # micro-batches with global normalisers sum to the full-batch value
    parts = [aggregate(per_token[i : i + 1], mask[i : i + 1], t, 3, total_tokens=4, total_seqs=2) for i in range(2)
             for t in ("dapo",)]
    assert sum(p.item() for p in parts) == pytest.approx(10 / 4)
    g = sum(aggregate(per_token[i : i + 1], mask[i : i + 1], "grpo", 3, total_seqs=2).item() for i in range(2))
    assert g == pytest.approx(3.0)


def test_mu1_ratio_is_one_but_gradient_is_the_policy_gradient():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    mask = torch.ones(1, 2)
    loss, m = grpo_loss(logp, None, None, torch.tensor([2.0]), mask, loss_type="dapo", eps_low=0.2,
                        eps_high=0.2, beta=0.0, kl_estimator="k3", max_tokens=2)
    assert loss.item() == pytest.approx(-2.0)  # -(ratio 1 * A 2) averaged over 2 tokens
    loss.backward()
    assert logp.grad.tolist() == [[-1.0, -1.0]]  # d/dlogp of -A*exp(logp - sg(logp)) / 2
    assert m["clip_low_frac"] == 0 and m["clip_high_frac"] == 0 and "kl" not in m


def test_kl_term_is_added_with_beta():
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    loss, m = grpo_loss(logp, None, ref, torch.tensor([0.0]), torch.ones(1, 1), loss_type="grpo", eps_low=0.2,
                        eps_high=0.2, beta=0.1, kl_estimator="k3", max_tokens=1)
    k3 = 0.5 - 1 + math.log(2)
    assert loss.item() == pytest.approx(0.1 * k3)
    assert m["kl"] == pytest.approx(k3)
