"""The RLOO objective against values worked out by hand, its gradient directions, and its unbiasedness.

Notation: l policy log-prob, l_ref reference log-prob, rho = l - l_ref, r reward, c = kl_coef.
    r'_k = r_k - c * rho_k;   A_k = r'_k - mean_{j != k} r'_j;   group loss = -(1/K) sum_k A_k * l_k
so d loss / d l_k = -A_k / K (the advantages are constants).
"""

import math

import pytest
import torch

from rewardalign.objectives import ObjectiveError, ObjectiveInputs, compute_objective, get_objective
from rewardalign.objectives.rloo import leave_one_out_advantages


def test_leave_one_out_baseline_by_hand():
    # group 0: r = [1, 0, 2]: baselines (0+2)/2 = 1, (1+2)/2 = 1.5, (1+0)/2 = 0.5 -> A = [0, -1.5, 1.5]
    # group 1: K = 2 of 3 (last padded): r = [3, -1]: A = [3 - (-1), -1 - 3] = [4, -4]
    # group 2: a single valid response has no baseline: A = 0
    rewards = torch.tensor([[1.0, 0.0, 2.0], [3.0, -1.0, 99.0], [5.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    advantages = leave_one_out_advantages(rewards, mask)
    torch.testing.assert_close(advantages, torch.tensor([[0.0, -1.5, 1.5], [4.0, -4.0, 0.0], [0.0, 0.0, 0.0]]))
    # equivalently K/(K-1) * (r - mean r): group 0 mean 1 -> 1.5 * [0, -1, 1]
    torch.testing.assert_close(advantages[0], 1.5 * (rewards[0] - rewards[0].mean()))


def test_rloo_loss_and_gradient_by_hand():
    """One group, K = 3, c = 0.5.

    l = [-2, -4, -3], l_ref = [-3, -3, -3] -> rho = [1, -1, 0]; r = [1, 0, 2]
    r' = r - 0.5 * rho = [0.5, 0.5, 2.0]
    A_0 = 0.5 - (0.5 + 2.0)/2 = -0.75;  A_1 = 0.5 - (0.5 + 2.0)/2 = -0.75;  A_2 = 2.0 - (0.5 + 0.5)/2 = 1.5
    loss = -(1/3) * (-0.75 * -2 + -0.75 * -4 + 1.5 * -3) = -(1/3) * (1.5 + 3 - 4.5) = 0
    grad = -A / 3 = [0.25, 0.25, -0.5]
    """
    policy = torch.tensor([[-2.0, -4.0, -3.0]], dtype=torch.float64, requires_grad=True)
    inputs = ObjectiveInputs(policy_logps=policy, ref_logps=torch.tensor([[-3.0, -3.0, -3.0]], dtype=torch.float64),
                             mask=torch.ones(1, 3, dtype=torch.bool),
                             rewards=torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.float64))
    loss, metrics = compute_objective("rloo", inputs, kl_coef=0.5)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(policy.grad, torch.tensor([[0.25, 0.25, -0.5]], dtype=torch.float64))
    # metrics: implicit reward c * rho, best (r = 2, index 2) and worst (r = 0, index 1)
    assert metrics["rewards/chosen"].item() == pytest.approx(0.0)
    assert metrics["rewards/rejected"].item() == pytest.approx(-0.5)
    assert metrics["rewards/explicit_mean"].item() == pytest.approx(1.0)


def test_rloo_batch_is_the_mean_over_groups_and_padding_is_ignored():
    """Group 0 (K = 2): r = [1, 0], c = 0 -> A = [1, -1]; l = [-1, -2] -> loss = -(1*-1 + -1*-2)/2 = -0.5.
    Group 1 (K = 2 of 3, last padded with NaN): r = [0, 4] -> A = [-4, 4]; l = [-3, -1] -> -(12 - 4)/2 = -4.
    Batch loss = (-0.5 + -4) / 2 = -2.25."""
    nan = float("nan")
    policy = torch.tensor([[-1.0, -2.0, nan], [-3.0, -1.0, nan]], requires_grad=True)
    inputs = ObjectiveInputs(policy_logps=policy, mask=torch.tensor([[True, True, False], [True, True, False]]),
                             rewards=torch.tensor([[1.0, 0.0, nan], [0.0, 4.0, nan]]))
    loss, _ = compute_objective("rloo", inputs, kl_coef=0.0)  # kl_coef 0: no reference needed
    loss.backward()
    assert loss.item() == pytest.approx(-2.25)
    # d/dl = -A / K / B (B = 2 groups)
    torch.testing.assert_close(policy.grad, torch.tensor([[-0.25, 0.25, 0.0], [1.0, -1.0, 0.0]]))


def test_higher_reward_sample_goes_up_and_lower_goes_down():
    policy = torch.tensor([[-5.0, -5.0, -5.0, -5.0]], requires_grad=True)
    inputs = ObjectiveInputs(policy_logps=policy, ref_logps=torch.full((1, 4), -5.0),
                             mask=torch.ones(1, 4, dtype=torch.bool), rewards=torch.tensor([[0.2, 0.9, 0.1, 0.4]]))
    compute_objective("rloo", inputs)[0].backward()
    grad = policy.grad[0]
    assert grad[1] < 0 < grad[2]  # best (0.9) up, worst (0.1) down under gradient descent
    assert grad.argmin() == 1 and grad.argmax() == 2
    assert grad.sum().abs() < 1e-6  # the advantages of a group sum to zero


def test_kl_penalty_pushes_down_the_sample_that_drifted_from_the_reference():
    # equal rewards; sample 0 is 10 nats likelier under the policy than under the reference
    policy = torch.tensor([[-1.0, -5.0]], requires_grad=True)
    inputs = ObjectiveInputs(policy_logps=policy, ref_logps=torch.tensor([[-11.0, -5.0]]),
                             mask=torch.ones(1, 2, dtype=torch.bool), rewards=torch.tensor([[1.0, 1.0]]))
    compute_objective("rloo", inputs, kl_coef=0.1)[0].backward()
    assert policy.grad[0, 0] > 0 > policy.grad[0, 1]
    assert get_objective("rloo").requirements({"kl_coef": 0.1}).reference
    assert not get_objective("rloo").requirements({"kl_coef": 0.0}).reference


def test_rloo_refuses_single_samples_and_missing_reference():
    single = ObjectiveInputs(policy_logps=torch.zeros(1, 1), ref_logps=torch.zeros(1, 1),
                             mask=torch.ones(1, 1, dtype=torch.bool), rewards=torch.ones(1, 1))
    with pytest.raises(ObjectiveError, match="at least 2 responses"):
        compute_objective("rloo", single)
    no_ref = ObjectiveInputs(policy_logps=torch.zeros(1, 2), mask=torch.ones(1, 2, dtype=torch.bool),
                             rewards=torch.ones(1, 2))
    with pytest.raises(ObjectiveError, match="missing input ref_logps"):
        compute_objective("rloo", no_ref, kl_coef=0.05)


def test_rloo_gradient_is_an_unbiased_policy_gradient():
    """A softmax policy over 3 "responses" with rewards r: E[r] = sum_i p_i r_i has the exact gradient
    d E[r] / d z_j = p_j (r_j - E[r]). The mean RLOO gradient over many groups of K = 4 samples (kl_coef 0),
    with l = log p(sampled response), must match minus that (the loss is minimised)."""
    torch.manual_seed(0)
    logits = torch.tensor([0.5, -0.3, 0.1], dtype=torch.float64, requires_grad=True)
    rewards = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    groups, k = 40000, 4
    probs = torch.softmax(logits.detach(), 0)
    draws = torch.multinomial(probs, groups * k, replacement=True).view(groups, k)
    logp = torch.log_softmax(logits, 0)[draws]
    inputs = ObjectiveInputs(policy_logps=logp, mask=torch.ones(groups, k, dtype=torch.bool), rewards=rewards[draws])
    compute_objective("rloo", inputs, kl_coef=0.0)[0].backward()
    exact = probs * (rewards - (probs * rewards).sum())
    torch.testing.assert_close(-logits.grad, exact, atol=0.01, rtol=0.0)
    assert math.isclose(float(exact.sum()), 0.0, abs_tol=1e-12)
