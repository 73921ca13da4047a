"""Reward-model losses against values computed by hand, and the sign of their gradients."""

import math

import pytest
import torch

from rewardalign.rewards.losses import bradley_terry_loss, center_penalty, reward_model_loss


def t(*values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def test_bradley_terry_hand_values():
    """-logsig(d) = log(1 + exp(-d)): d = 2 -> log(1 + e^-2) = 0.126928; d = 0 -> log 2;
    d = -1 -> log(1 + e) = 1.313262; with margin 1, d = 2 - 0 - 1 = 1 -> log(1 + e^-1) = 0.313262."""
    r_w, r_l = t(2.0, 0.5, -1.0), t(0.0, 0.5, 0.0)
    loss = bradley_terry_loss(r_w, r_l)
    expected = [math.log1p(math.exp(-2)), math.log(2), math.log1p(math.e)]
    assert loss.tolist() == pytest.approx(expected, abs=1e-12)
    with_margin = bradley_terry_loss(t(2.0), t(0.0), margin=1.0)
    assert with_margin.item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-12)


def test_center_penalty_and_total():
    """(r_w + r_l)^2: (1 + 3)^2 = 16, (-2 + 2)^2 = 0; mean 8. Total = mean BT + 0.01 * 8."""
    r_w, r_l = t(1.0, -2.0), t(3.0, 2.0)
    assert center_penalty(r_w, r_l).tolist() == [16.0, 0.0]
    loss, metrics = reward_model_loss(r_w, r_l, center_coefficient=0.01)
    bt = (math.log1p(math.exp(2.0)) + math.log1p(math.exp(4.0))) / 2  # d = -2 and d = -4
    assert loss.item() == pytest.approx(bt + 0.01 * 8.0, abs=1e-12)
    assert metrics["center"].item() == pytest.approx(8.0)
    assert metrics["accuracy"].item() == 0.0
    assert metrics["bt_loss"].item() == pytest.approx(bt, abs=1e-12)


def test_oracle_mix_is_convex_combination():
    """002 Eq. 5 with a = 0.1: L = 0.9 * BT + 0.1 * NLL. d = 1 -> BT = log(1 + e^-1); NLL mean = 2.5."""
    r_w, r_l, nll = t(1.0, 1.0), t(0.0, 0.0), t(2.0, 3.0)
    loss, metrics = reward_model_loss(r_w, r_l, nll_w=nll, oracle_alpha=0.1)
    assert loss.item() == pytest.approx(0.9 * math.log1p(math.exp(-1)) + 0.1 * 2.5, abs=1e-12)
    assert metrics["nll_chosen"].item() == pytest.approx(2.5)
    assert metrics["accuracy"].item() == 1.0
    # bt = oracle with alpha 0: the NLL is ignored
    plain, _ = reward_model_loss(r_w, r_l, nll_w=nll, oracle_alpha=0.0)
    assert plain.item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-12)


def test_gradient_signs():
    """Descending the loss raises r_w, lowers r_l and lowers the chosen NLL."""
    r_w, r_l, nll = t(0.3), t(0.1), t(4.0)
    loss, _ = reward_model_loss(r_w, r_l, nll_w=nll, oracle_alpha=0.1, margin=0.5)
    loss.backward()
    assert r_w.grad.item() < 0 < r_l.grad.item()
    assert nll.grad.item() == pytest.approx(0.1)
    # centering pulls a pair with a positive sum down on both sides
    a, b = t(3.0), t(1.0)
    loss, _ = reward_model_loss(a, b, center_coefficient=1.0)
    loss.backward()
    assert b.grad.item() > 0  # BT pushes b down a little, centering pushes it down more
    assert a.grad.item() > 0  # centering outweighs BT's push up on a (d = 2 is already well ranked)


def test_errors():
    with pytest.raises(ValueError, match="nll_w"):
        reward_model_loss(t(1.0), t(0.0), oracle_alpha=0.1)
    with pytest.raises(ValueError, match="oracle_alpha"):
        reward_model_loss(t(1.0), t(0.0), nll_w=t(1.0), oracle_alpha=1.5)
    with pytest.raises(ValueError, match="shape"):
        reward_model_loss(t(1.0, 2.0), t(0.0))
