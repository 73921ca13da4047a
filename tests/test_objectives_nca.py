"""NCA, pairwise NCA and InfoNCA (Chen et al. 2024, "Noise Contrastive Alignment"), against values and
gradients worked out by hand from METHODS.md's formulas with the ``math`` module, never from the implementation.

    u_k      = beta * rho_k,   t = softmax_k(r_k / alpha)   (one-hot on the best response without rewards)
    infonca  = -sum_k t_k * log softmax_k(u)
    nca      = -sum_k t_k * logsig(u_k) - (1/K) * sum_k logsig(-u_k)
    nca_pair = -logsig(u_w) - 0.5 * logsig(-u_w) - 0.5 * logsig(-u_l)
"""

import math

import pytest
import torch

from rewardalign.objectives import ObjectiveInputs, compute_objective


def sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def logsig(z):
    return -math.log1p(math.exp(-z))


def batch(policy, ref, requires_grad=False, **fields):
    """float64 ObjectiveInputs from nested lists; every entry valid unless ``mask`` is given."""
    policy = torch.tensor(policy, dtype=torch.float64, requires_grad=requires_grad)
    mask = torch.tensor(fields.pop("mask")) if "mask" in fields else torch.ones(policy.shape, dtype=torch.bool)
    tensors = {k: torch.tensor(v, dtype=torch.float64) for k, v in fields.items()}
    return ObjectiveInputs(policy_logps=policy, ref_logps=torch.tensor(ref, dtype=torch.float64), mask=mask,
                           **tensors)


def loss(name, inputs, **hparams):
    return compute_objective(name, inputs, **hparams)[0].item()


# l = [-1, -2], l_ref = [-1.5, -1.5] -> rho = [0.5, -0.5]
PAIR = dict(policy=[[-1.0, -2.0]], ref=[[-1.5, -1.5]])
# rho = [1, 0, -1, 2] (l_ref = 0); rewards [3, 1, 2, 0] rank 0 > 2 > 1 > 3
GROUP4 = dict(policy=[[1.0, 0.0, -1.0, 2.0]], ref=[[0.0] * 4], rewards=[[3.0, 1.0, 2.0, 0.0]])


# ------------------------------------------------------------------------------------------------------ nca


def test_nca_pair_with_rewards():
    # beta = 1 (default): u = [0.5, -0.5]; alpha = 1: t = softmax([1, 0]) = [e/(e+1), 1/(e+1)] = [0.73106, 0.26894]
    t = [math.e / (math.e + 1), 1 / (math.e + 1)]
    attract = -(t[0] * logsig(0.5) + t[1] * logsig(-0.5))  # 0.73106 * 0.47408 + 0.26894 * 0.97408 = 0.60855
    repel = -(logsig(-0.5) + logsig(0.5)) / 2  # (0.97408 + 0.47408) / 2 = 0.72408
    expected = attract + repel
    assert expected == pytest.approx(1.332625, abs=1e-6)
    assert loss("nca", batch(**PAIR, rewards=[[1.0, 0.0]])) == pytest.approx(expected, rel=1e-12)
    # beta = 0.2: u = [0.1, -0.1]
    expected = -(t[0] * logsig(0.1) + t[1] * logsig(-0.1)) - (logsig(-0.1) + logsig(0.1)) / 2
    assert loss("nca", batch(**PAIR, rewards=[[1.0, 0.0]]), beta=0.2) == pytest.approx(expected, rel=1e-12)


def test_nca_group_of_four_with_temperature():
    # alpha = 2: t = softmax(r / 2) = exp([1.5, 0.5, 1, 0]) / Z = [0.45505, 0.16741, 0.27600, 0.10154]; u = rho
    r, u = [3, 1, 2, 0], [1, 0, -1, 2]
    z = sum(math.exp(v / 2) for v in r)
    t = [math.exp(v / 2) / z for v in r]
    expected = -sum(tk * logsig(uk) for tk, uk in zip(t, u)) - sum(logsig(-uk) for uk in u) / 4
    assert expected == pytest.approx(1.745591, abs=1e-6)
    assert loss("nca", batch(**GROUP4), alpha=2.0) == pytest.approx(expected, rel=1e-12)


def test_nca_without_rewards_and_with_labels():
    # no feedback: t one-hot on index 0 -> -logsig(0.5) - (logsig(-0.5) + logsig(0.5)) / 2 = 0.47408 + 0.72408
    expected = -logsig(0.5) - (logsig(-0.5) + logsig(0.5)) / 2
    assert expected == pytest.approx(1.198154, abs=1e-6)
    assert loss("nca", batch(**PAIR)) == pytest.approx(expected, rel=1e-12)
    # labels [1, 0, 1, 0]: t = 1/2 on indices 0 and 2; u = [1, 0, -1, 2]
    four = batch(policy=[[1.0, 0.0, -1.0, 2.0]], ref=[[0.0] * 4], labels=[[1, 0, 1, 0]])
    expected = -(logsig(1.0) + logsig(-1.0)) / 2 - (logsig(-1.0) + logsig(0.0) + logsig(1.0) + logsig(-2.0)) / 4
    assert loss("nca", four) == pytest.approx(expected, rel=1e-12)


def test_nca_padded_groups_use_their_own_k():
    # group 0: K = 2 (third entry padded), u = [0.5, -0.5], rewards [1, 0] -> the value of the first test;
    # group 1: K = 3, u = [1, 0, -1], rewards [0, 0, 0] -> t = 1/3 each. Batch loss = mean of the two.
    inputs = batch(policy=[[0.5, -0.5, 9.0], [1.0, 0.0, -1.0]], ref=[[0.0] * 3] * 2,
                   rewards=[[1.0, 0.0, 5.0], [0.0, 0.0, 0.0]], mask=[[True, True, False], [True, True, True]])
    t = [math.e / (math.e + 1), 1 / (math.e + 1)]
    g0 = -(t[0] * logsig(0.5) + t[1] * logsig(-0.5)) - (logsig(-0.5) + logsig(0.5)) / 2
    g1 = -sum(logsig(v) for v in (1, 0, -1)) / 3 - sum(logsig(-v) for v in (1, 0, -1)) / 3
    assert loss("nca", inputs) == pytest.approx((g0 + g1) / 2, rel=1e-12)


def test_nca_gradient_pushes_each_response_to_its_own_absolute_target():
    # dL/du_k = -t_k * sig(-u_k) + sig(u_k) / K. With rewards log([0.4, 0.3, 0.2, 0.1]) and alpha = 1 the teacher
    # is exactly t = [0.4, 0.3, 0.2, 0.1]. At u = 0: dL/du_k = (1/K - t_k) / 2 = [-0.075, -0.025, 0.025, 0.075]:
    # the two responses rated above 1/K go up, the two below go down (beta = 1, so dL/dl_k = dL/du_k).
    t = [0.4, 0.3, 0.2, 0.1]
    inputs = batch(policy=[[-2.0] * 4], ref=[[-2.0] * 4], requires_grad=True, rewards=[[math.log(v) for v in t]])
    compute_objective("nca", inputs)[0].backward()
    assert inputs.policy_logps.grad[0].tolist() == pytest.approx([-0.075, -0.025, 0.025, 0.075], rel=1e-9)
    # The optimum is u_k = log(K * t_k) + c with c = 0 only (absolute), while InfoNCA's is any c (relative):
    # at c = +1 NCA pushes every response down, at c = -1 every one up; InfoNCA's gradient stays 0.
    for c in (0.0, 1.0, -1.0):
        u = [math.log(4 * v) + c for v in t]
        by_hand = [-tk * sig(-uk) + sig(uk) / 4 for tk, uk in zip(t, u)]
        for name in ("nca", "infonca"):
            inputs = batch(policy=[u], ref=[[0.0] * 4], requires_grad=True, rewards=[[math.log(v) for v in t]])
            compute_objective(name, inputs)[0].backward()
            grad = inputs.policy_logps.grad[0].tolist()
            if name == "infonca" or c == 0.0:
                assert grad == pytest.approx([0.0] * 4, abs=1e-12), (name, c)
            else:
                assert grad == pytest.approx(by_hand, rel=1e-9), (name, c)
                assert all((g > 0) == (c > 0) for g in grad), (name, c, grad)


# ------------------------------------------------------------------------------------------------- nca_pair


def test_nca_pair_values():
    # default beta = 0.1: u = [0.05, -0.05] -> -logsig(0.05) - 0.5 * logsig(-0.05) - 0.5 * logsig(0.05)
    expected = -logsig(0.05) - 0.5 * logsig(-0.05) - 0.5 * logsig(0.05)
    assert loss("nca_pair", batch(**PAIR)) == pytest.approx(expected, rel=1e-12)
    # beta = 1, rho = [1, -0.5] (l = [-1, -3], l_ref = [-2, -2.5]): -logsig(1) - 0.5 logsig(-1) - 0.5 logsig(0.5)
    expected = -logsig(1.0) - 0.5 * logsig(-1.0) - 0.5 * logsig(0.5)
    assert expected == pytest.approx(1.206931, abs=1e-6)
    assert loss("nca_pair", batch(policy=[[-1.0, -3.0]], ref=[[-2.0, -2.5]]), beta=1.0) == pytest.approx(
        expected, rel=1e-12
    )
    # rewards say index 1 is better: w = 1 (u = -0.5), l = 0 (u = 1)
    expected = -logsig(-0.5) - 0.5 * logsig(0.5) - 0.5 * logsig(-1.0)
    swapped = batch(policy=[[-1.0, -3.0]], ref=[[-2.0, -2.5]], rewards=[[0.0, 1.0]])
    assert loss("nca_pair", swapped, beta=1.0) == pytest.approx(expected, rel=1e-12)


def test_nca_pair_group_of_four():
    # GROUP4, best = index 0; beta = 0.1: u = [0.1, 0, -0.1, 0.2]. best_vs_rest: mean over l in {1, 2, 3};
    # all_pairs by reward order 0 > 2 > 1 > 3: (0,2) (0,1) (0,3) (2,1) (2,3) (1,3)
    u = [0.1, 0.0, -0.1, 0.2]

    def pair_loss(w, v):
        return -logsig(u[w]) - 0.5 * logsig(-u[w]) - 0.5 * logsig(-u[v])

    rest = sum(pair_loss(0, v) for v in (1, 2, 3)) / 3
    assert loss("nca_pair", batch(**GROUP4), pairs="best_vs_rest") == pytest.approx(rest, rel=1e-12)
    every = sum(pair_loss(w, v) for w, v in ((0, 2), (0, 1), (0, 3), (2, 1), (2, 3), (1, 3))) / 6
    assert loss("nca_pair", batch(**GROUP4), pairs="all_pairs") == pytest.approx(every, rel=1e-12)


@pytest.mark.parametrize("u_l", [-3.0, 3.0])
@pytest.mark.parametrize("u_w", [0.5, 1.0])
def test_nca_pair_gradient_signs(u_w, u_l):
    # beta = 1, l_ref = 0: u = l. dL/du_l = 0.5 * sig(u_l) > 0 (the rejected response always goes down);
    # dL/du_w = -sig(-u_w) + 0.5 * sig(u_w), negative (chosen goes up) iff u_w < log 2 = 0.693, whatever u_l.
    inputs = batch(policy=[[u_w, u_l]], ref=[[0.0, 0.0]], requires_grad=True)
    compute_objective("nca_pair", inputs, beta=1.0)[0].backward()
    grad_w, grad_l = inputs.policy_logps.grad[0].tolist()
    assert grad_w == pytest.approx(-sig(-u_w) + 0.5 * sig(u_w), rel=1e-9)
    assert grad_l == pytest.approx(0.5 * sig(u_l), rel=1e-9)
    assert grad_l > 0
    assert (grad_w < 0) == (u_w < math.log(2.0))


def test_nca_on_a_plain_pair_is_nca_pair():
    # Two separate implementations: nca with the one-hot teacher of a pair (K = 2) is nca_pair.
    gen = torch.Generator().manual_seed(0)
    policy, ref = -5 * torch.rand(6, 2, generator=gen, dtype=torch.float64), -5 * torch.rand(6, 2, generator=gen)
    inputs = ObjectiveInputs(policy_logps=policy, ref_logps=ref.double(), mask=torch.ones(6, 2, dtype=torch.bool))
    for beta in (0.1, 1.0):
        torch.testing.assert_close(compute_objective("nca", inputs, beta=beta)[0],
                                   compute_objective("nca_pair", inputs, beta=beta)[0])


# -------------------------------------------------------------------------------------------------- infonca


def test_infonca_values():
    # K = 2, beta = 1, rewards [1, 0]: t = [e/(e+1), 1/(e+1)]; log softmax(u)_k = u_k - log(e^0.5 + e^-0.5)
    t = [math.e / (math.e + 1), 1 / (math.e + 1)]
    lse = math.log(math.exp(0.5) + math.exp(-0.5))
    expected = -(t[0] * (0.5 - lse) + t[1] * (-0.5 - lse))
    assert expected == pytest.approx(0.582203, abs=1e-6)
    assert loss("infonca", batch(**PAIR, rewards=[[1.0, 0.0]])) == pytest.approx(expected, rel=1e-12)
    # K = 4, alpha = 2, beta = 0.5: t = softmax(r / 2), u = 0.5 * rho
    r, u = [3, 1, 2, 0], [0.5, 0.0, -0.5, 1.0]
    zt, zs = sum(math.exp(v / 2) for v in r), sum(math.exp(v) for v in u)
    expected = -sum(math.exp(rk / 2) / zt * (uk - math.log(zs)) for rk, uk in zip(r, u))
    assert loss("infonca", batch(**GROUP4), alpha=2.0, beta=0.5) == pytest.approx(expected, rel=1e-12)
    # no feedback: one-hot teacher -> -log softmax(u)_0 = log(1 + e^{u_1 - u_0}) = log(1 + e^-1), DPO's value
    assert loss("infonca", batch(**PAIR)) == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-12)
