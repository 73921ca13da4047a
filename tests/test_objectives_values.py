"""Every objective against values worked out by hand, for K = 1, 2 and 4 where the objective allows it.

Expected numbers come from the formulas of METHODS.md written out with the ``math`` module, never from the
implementation. Shared notation: l policy log-prob, l_ref reference log-prob, rho = l - l_ref.
"""

import math

import pytest
import torch

from rewardalign.objectives import ObjectiveInputs, compute_objective, mean_metrics


def sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def logsig(z):
    return -math.log1p(math.exp(-z))


def batch(policy, ref=None, **fields):
    """ObjectiveInputs from nested lists; every group fully valid unless ``mask`` is given."""
    policy = torch.tensor(policy, dtype=torch.float64)
    mask = torch.tensor(fields.pop("mask")) if "mask" in fields else torch.ones_like(policy, dtype=torch.bool)
    tensors = {k: torch.tensor(v, dtype=torch.float64) for k, v in fields.items()}
    ref = None if ref is None else torch.tensor(ref, dtype=torch.float64)
    return ObjectiveInputs(policy_logps=policy, mask=mask, ref_logps=ref, **tensors)


# A K = 2 pair: l = [-1, -2], l_ref = [-1.5, -1.5] -> rho = [0.5, -0.5], rho_w - rho_l = 1.
PAIR = dict(policy=[[-1.0, -2.0]], ref=[[-1.5, -1.5]])
# A K = 4 group: rho = [1, 0, -1, 2] (l_ref = 0), rewards rank 0 > 2 > 1 > 3.
GROUP4 = dict(policy=[[1.0, 0.0, -1.0, 2.0]], ref=[[0.0, 0.0, 0.0, 0.0]], rewards=[[3.0, 1.0, 2.0, 0.0]])


def loss(name, inputs, **hparams):
    return compute_objective(name, inputs, **hparams)[0].item()


# ----------------------------------------------------------------------------------------------- DPO family


def test_dpo_pair():
    # z = 0.1 * (0.5 - (-0.5)) = 0.1; loss = -logsig(0.1)
    assert loss("dpo", batch(**PAIR)) == pytest.approx(-logsig(0.1))


def test_dpo_label_smoothing():
    # -(1 - 0.2) * logsig(0.1) - 0.2 * logsig(-0.1)
    expected = -0.8 * logsig(0.1) - 0.2 * logsig(-0.1)
    assert loss("dpo", batch(**PAIR), label_smoothing=0.2) == pytest.approx(expected)


def test_dpo_group_of_four_best_vs_rest_and_all_pairs():
    # best = index 0 (rho 1). best_vs_rest: pairs (0,1), (0,2), (0,3) with rho margins 1, 2, -1.
    rest = (-logsig(0.1 * 1) - logsig(0.1 * 2) - logsig(0.1 * -1)) / 3
    assert loss("dpo", batch(**GROUP4), pairs="best_vs_rest") == pytest.approx(rest)
    # all_pairs by reward order 0 > 2 > 1 > 3: (0,2) (0,1) (0,3) (2,1) (2,3) (1,3);
    # rho margins: 1-(-1)=2, 1-0=1, 1-2=-1, -1-0=-1, -1-2=-3, 0-2=-2.
    margins = [2, 1, -1, -1, -3, -2]
    expected = sum(-logsig(0.1 * m) for m in margins) / 6
    assert loss("dpo", batch(**GROUP4), pairs="all_pairs") == pytest.approx(expected)


def test_dpo_best_vs_random_picks_one_of_the_rest():
    # One of the three best_vs_rest pair losses, the same one on every call.
    candidates = [-logsig(0.1 * m) for m in (1, 2, -1)]
    first = loss("dpo", batch(**GROUP4))
    assert min(abs(first - c) for c in candidates) < 1e-12
    assert loss("dpo", batch(**GROUP4)) == first


def test_dpo_without_rewards_uses_the_listed_order():
    # No rewards: w = index 0. Swapping the columns swaps the roles: margin -1 -> -logsig(-0.1).
    swapped = batch(policy=[[-2.0, -1.0]], ref=[[-1.5, -1.5]])
    assert loss("dpo", swapped) == pytest.approx(-logsig(-0.1))
    # With rewards saying index 1 is better, the pair flips back: margin +1.
    assert loss("dpo", batch(policy=[[-2.0, -1.0]], ref=[[-1.5, -1.5]], rewards=[[0.0, 1.0]])) == pytest.approx(
        -logsig(0.1)
    )
    # order_by=position keeps the listed order even when rewards disagree.
    disagree = batch(policy=[[-2.0, -1.0]], ref=[[-1.5, -1.5]], rewards=[[0.0, 1.0]])
    assert loss("dpo", disagree, order_by="position") == pytest.approx(-logsig(-0.1))


def test_dpo_labels_rank_when_there_are_no_rewards():
    # labels [0, 1]: index 1 is preferred -> margin rho_1 - rho_0 = -1.
    assert loss("dpo", batch(**PAIR, labels=[[0, 1]])) == pytest.approx(-logsig(-0.1))


def test_ipo():
    # (rho_w - rho_l - 1/(2*0.1))^2 = (1 - 5)^2
    assert loss("ipo", batch(**PAIR)) == pytest.approx(16.0)
    # K = 4, best_vs_rest: margins 1, 2, -1 -> mean of (m - 5)^2 = (16 + 9 + 36) / 3
    assert loss("ipo", batch(**GROUP4), pairs="best_vs_rest") == pytest.approx(61 / 3)


def test_slic():
    # l = [-1.5, -2], n = [2, 4]: hinge max(0, 1 - (-1.5) + (-2)) = 0.5; reg 0.1 * 1.5/2 = 0.075
    inputs = batch(policy=[[-1.5, -2.0]], n_tokens=[[2, 4]])
    assert loss("slic", inputs) == pytest.approx(0.575)
    # hinge inactive when l_w - l_l >= delta: l = [-1, -3] -> 0 + 0.1 * 1/2
    assert loss("slic", batch(policy=[[-1.0, -3.0]], n_tokens=[[2, 4]])) == pytest.approx(0.05)


def test_simpo():
    # l/n = [-2/2, -6/3] = [-1, -2]; logits = 2.0 * 1 - 0.5 = 1.5
    inputs = batch(policy=[[-2.0, -6.0]], n_tokens=[[2, 3]])
    assert loss("simpo", inputs) == pytest.approx(-logsig(1.5))


def test_orpo():
    # mean log-probs -1 and -2; odds = m - log(1 - e^m)
    odds_w = -1 - math.log(1 - math.exp(-1))
    odds_l = -2 - math.log(1 - math.exp(-2))
    expected = 1.0 - 0.1 * logsig(odds_w - odds_l)
    assert loss("orpo", batch(policy=[[-2.0, -6.0]], n_tokens=[[2, 3]])) == pytest.approx(expected)


def test_cal_dpo():
    # -logsig(1) + (0.5 - 5)^2 + (-0.5 + 5)^2
    assert loss("cal_dpo", batch(**PAIR)) == pytest.approx(-logsig(1.0) + 2 * 4.5**2)


def test_dpop():
    # rho = [-0.5, 0.5]: penalty 50 * 0.5 = 25; z = 0.1 * (-0.5 - 0.5 - 25) = -2.6
    inputs = batch(policy=[[-2.0, -3.0]], ref=[[-1.5, -3.5]])
    assert loss("dpop", inputs) == pytest.approx(-logsig(-2.6))
    # chosen log-ratio >= 0: no penalty, plain DPO
    assert loss("dpop", batch(**PAIR)) == pytest.approx(-logsig(0.1))


def test_kto_single_responses():
    # Three K = 1 groups, rho = 1.0, 0.2, -0.6, labels 1, 0, 0. z = max(0, mean rho) = 0.2.
    # desirable: 1 - sig(0.1 * (1.0 - 0.2)); undesirable: 1 - sig(0.1 * (0.2 - rho))
    inputs = batch(policy=[[1.0], [0.2], [-0.6]], ref=[[0.0], [0.0], [0.0]], labels=[[1], [0], [0]])
    expected = ((1 - sig(0.08)) + (1 - sig(0.0)) + (1 - sig(0.08))) / 3
    assert loss("kto", inputs) == pytest.approx(expected)


def test_kto_kl_estimate_is_clamped_and_can_come_from_mismatched_pairs():
    # mean rho = -1 < 0 -> z = 0: desirable 1 - sig(0.1 * -1)
    neg = batch(policy=[[-1.0]], ref=[[0.0]], labels=[[1]])
    assert loss("kto", neg) == pytest.approx(1 - sig(-0.1))
    # kl_logratios given: z = max(0, 3) = 3 -> 1 - sig(0.1 * (-1 - 3))
    mismatched = batch(policy=[[-1.0]], ref=[[0.0]], labels=[[1]], kl_logratios=[[3.0]])
    assert loss("kto", mismatched) == pytest.approx(1 - sig(-0.4))


def test_kto_groups_of_two_and_four():
    # One group, rho = [1, 0, -1, 2], labels [1, 0, 0, 1]; z = mean rho = 0.5. Group loss = mean.
    inputs = batch(policy=[[1.0, 0.0, -1.0, 2.0]], ref=[[0.0] * 4], labels=[[1, 0, 0, 1]])
    terms = [1 - sig(0.1 * 0.5), 1 - sig(0.1 * 0.5), 1 - sig(0.1 * 1.5), 1 - sig(0.1 * 1.5)]
    assert loss("kto", inputs) == pytest.approx(sum(terms) / 4)
    # Two groups of K = 2: z over the whole batch, group losses averaged
    pairs = batch(policy=[[0.5, -0.5], [1.0, 1.0]], ref=[[0.0, 0.0], [0.0, 0.0]], labels=[[1, 0], [0, 1]])
    z = 0.5  # mean of 0.5, -0.5, 1, 1
    g0 = ((1 - sig(0.1 * (0.5 - z))) + (1 - sig(0.1 * (z + 0.5)))) / 2
    g1 = ((1 - sig(0.1 * (z - 1.0))) + (1 - sig(0.1 * (1.0 - z)))) / 2
    assert loss("kto", pairs) == pytest.approx((g0 + g1) / 2)


def test_una_pair():
    # Paper 003, Eq. 10 with f = log sigma: loss = -log sigma(r_theta(w) - r_theta(l)), r_theta = beta * rho.
    # PAIR: rho = [0.5, -0.5]. beta = 0.1 (default): -log sigma(0.05 + 0.05) = -log sigma(0.1) = 0.64440
    assert loss("una_pair", batch(**PAIR)) == pytest.approx(math.log1p(math.exp(-0.1)))
    # beta = 0.5: r_theta = [0.25, -0.25] -> -log sigma(0.5) = log(1 + e^-0.5) = 0.47408
    assert loss("una_pair", batch(**PAIR), beta=0.5) == pytest.approx(math.log1p(math.exp(-0.5)))
    # labels [0, 1] make index 1 the desired response: -log sigma(-0.25 - 0.25) = log(1 + e^0.5) = 0.97408
    assert loss("una_pair", batch(**PAIR, labels=[[0, 1]]), beta=0.5) == pytest.approx(math.log1p(math.exp(0.5)))
    # GROUP4, rho = [1, 0, -1, 2], rewards rank 0 > 2 > 1 > 3; best_vs_rest pairs (0,1) (0,2) (0,3) with
    # r_theta margins 0.1 * [1, 2, -1]: the mean of log(1 + e^-m)
    rest = sum(math.log1p(math.exp(-0.1 * m)) for m in (1, 2, -1)) / 3
    assert loss("una_pair", batch(**GROUP4), pairs="best_vs_rest") == pytest.approx(rest)


# ------------------------------------------------------------------------------------- reward distillation


def test_rpo_pair_and_group():
    # (0.1 * 1 - 1 * (1 - 0))^2 = 0.81
    assert loss("rpo", batch(**PAIR, rewards=[[1.0, 0.0]])) == pytest.approx(0.81)
    # K = 4: all 6 unordered pairs (i < j): (0.1 * (rho_i - rho_j) - (r_i - r_j))^2
    rho, r = [1, 0, -1, 2], [3, 1, 2, 0]
    sq = [(0.1 * (rho[i] - rho[j]) - (r[i] - r[j])) ** 2 for i in range(4) for j in range(i + 1, 4)]
    assert loss("rpo", batch(**GROUP4)) == pytest.approx(sum(sq) / 6)


def test_rpo_ties_are_kept():
    # rewards tie: target margin 0 -> (0.1 * 1)^2
    assert loss("rpo", batch(**PAIR, rewards=[[2.0, 2.0]])) == pytest.approx(0.01)


def test_rpo_kl_directions():
    # p = sig(beta * drho) is the policy's preference, g = sig(eta * dr) the reward's (METHODS.md).
    # PAIR: drho = 1, beta = 0.1 -> p = sig(0.1) = 0.52498; dr = 1, eta = 1 -> g = sig(1) = 0.73106.
    p, g = sig(0.1), sig(1.0)
    # fwd = KL(Bern(p) || Bern(g)) = p (log p - log g) + (1 - p) (log(1 - p) - log(1 - g)) = 0.09630
    fwd = p * (math.log(p) - math.log(g)) + (1 - p) * (math.log(1 - p) - math.log(1 - g))
    # bwd = KL(Bern(g) || Bern(p)) = g (log g - log p) + (1 - g) (log(1 - g) - log(1 - p)) = 0.08895
    bwd = g * (math.log(g) - math.log(p)) + (1 - g) * (math.log(1 - g) - math.log(1 - p))
    assert fwd == pytest.approx(0.0963, abs=1e-4) and bwd == pytest.approx(0.0890, abs=1e-4)  # they differ
    inputs = batch(**PAIR, rewards=[[1.0, 0.0]])
    assert loss("rpo_fwd_kl", inputs) == pytest.approx(fwd, rel=1e-9)
    assert loss("rpo_bwd_kl", inputs) == pytest.approx(bwd, rel=1e-9)
    # eta = 2 -> g = sig(2) = 0.88080; p unchanged
    g2 = sig(2.0)
    fwd2 = p * math.log(p / g2) + (1 - p) * math.log((1 - p) / (1 - g2))
    bwd2 = g2 * math.log(g2 / p) + (1 - g2) * math.log((1 - g2) / (1 - p))
    assert loss("rpo_fwd_kl", inputs, eta=2.0) == pytest.approx(fwd2, rel=1e-9)
    assert loss("rpo_bwd_kl", inputs, eta=2.0) == pytest.approx(bwd2, rel=1e-9)


def test_rpo_kl_gradients_follow_their_definitions():
    # d/du KL(Bern(sig(u)) || Bern(g)) = p (1 - p) (log(p / (1 - p)) - log(g / (1 - g))) = p (1 - p) (u - t)
    # d/du KL(Bern(g) || Bern(sig(u)))  = p - g
    # u = beta * (rho_0 - rho_1), so dL/dl_0 = beta * dKL/du = -dL/dl_1. PAIR: u = 0.1, t = eta * dr = 1.
    p, g = sig(0.1), sig(1.0)
    for name, d_du in (("rpo_fwd_kl", p * (1 - p) * (0.1 - 1.0)), ("rpo_bwd_kl", p - g)):
        policy = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
        inputs = ObjectiveInputs(policy_logps=policy, ref_logps=torch.tensor([[-1.5, -1.5]], dtype=torch.float64),
                                 mask=torch.ones(1, 2, dtype=torch.bool),
                                 rewards=torch.tensor([[1.0, 0.0]], dtype=torch.float64))
        compute_objective(name, inputs)[0].backward()
        assert policy.grad[0, 0].item() == pytest.approx(0.1 * d_du, rel=1e-9), name
        assert policy.grad[0, 1].item() == pytest.approx(-0.1 * d_du, rel=1e-9), name


def test_edpo_max_and_mean_over_models():
    # model 1 margin 1 -> (0.1 - 1)^2 = 0.81; model 2 margin 3 -> (0.1 - 3)^2 = 8.41
    inputs = batch(**PAIR, rewards=[[[1.0, 0.0]], [[3.0, 0.0]]])
    assert loss("edpo", inputs) == pytest.approx(8.41)
    assert loss("edpo", inputs, ensemble_reduce="mean") == pytest.approx((0.81 + 8.41) / 2)


# ----------------------------------------------------------------------------------------------- DRO / UNA


PAPER_DRO = {"prompt_normalization": True, "baseline": "none"}
"""DRO as 001's Algorithm 1 writes it (the defaults drop the prompt term and subtract the group's mean reward)."""


def test_dro_with_prompt_normalization_and_offset():
    # prompt term 0.1 * (-10 - (-12)) = 0.2, z0 = 0.3: targets r - 0.5 = [0.5, -0.5]; beta*rho = [0.05, -0.05]
    inputs = batch(**PAIR, rewards=[[1.0, 0.0]], prompt_policy_logps=[-10.0], prompt_ref_logps=[-12.0])
    assert loss("dro", inputs, z0=0.3, **PAPER_DRO) == pytest.approx(0.45**2)
    # without prompt normalisation: targets [0.7, -0.3] -> ((0.65)^2 + (0.25)^2) / 2
    expected = (0.65**2 + 0.25**2) / 2
    assert loss("dro", inputs, z0=0.3, prompt_normalization=False, baseline="none") == pytest.approx(expected)
    # the defaults: no prompt term, the group's mean reward 0.5 subtracted: targets [0.5, -0.5] -> (0.45)^2
    assert loss("dro", inputs) == pytest.approx(0.45**2)


def test_dro_single_responses_and_group_of_four():
    # K = 1 groups: (r - beta*rho)^2 each, batch mean over groups
    singles = batch(policy=[[2.0], [0.0]], ref=[[0.0], [0.0]], rewards=[[1.0], [-1.0]],
                    prompt_policy_logps=[0.0, 0.0], prompt_ref_logps=[0.0, 0.0])
    assert loss("dro", singles, **PAPER_DRO) == pytest.approx(((1 - 0.2) ** 2 + 1.0) / 2)
    # K = 4: mean over the group of (r_k - 0.1 * rho_k)^2
    group = batch(**GROUP4, prompt_policy_logps=[0.0], prompt_ref_logps=[0.0])
    expected = sum((r - 0.1 * p) ** 2 for r, p in zip([3, 1, 2, 0], [1, 0, -1, 2])) / 4
    assert loss("dro", group, **PAPER_DRO) == pytest.approx(expected)


def test_una_reward_mse():
    # (0.1 * rho - r)^2 averaged: ((0.05 - 1)^2 + (-0.05)^2) / 2
    assert loss("una_reward_mse", batch(**PAIR, rewards=[[1.0, 0.0]])) == pytest.approx((0.95**2 + 0.05**2) / 2)


@pytest.mark.parametrize(
    "rho, labels",
    [([[30.0]], [[1]]), ([[30.0, -50.0]], [[1, 0]]), ([[30.0, -50.0, 10.0, 0.0]], [[1, 0, 0, 1]])],
    ids=["K1", "K2", "K4"],
)
def test_una_binary(rho, labels):
    # q = sig(0.01 * rho); mse = mean (q - b)^2; bce = mean -(b log q + (1 - b) log(1 - q))
    inputs = batch(policy=rho, ref=[[0.0] * len(rho[0])], labels=labels)
    qs = [sig(0.01 * p) for p in rho[0]]
    mse = sum((q - b) ** 2 for q, b in zip(qs, labels[0])) / len(qs)
    bce = sum(-math.log(q) if b else -math.log(1 - q) for q, b in zip(qs, labels[0])) / len(qs)
    assert loss("una_binary_mse", inputs) == pytest.approx(mse)
    assert loss("una_binary_bce", inputs) == pytest.approx(bce)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_una_score_mse(k):
    # q = sig(0.03 * rho) against scores
    rho, scores = [10.0, -20.0, 0.0, 40.0][:k], [0.9, 0.2, 0.5, 1.0][:k]
    inputs = batch(policy=[rho], ref=[[0.0] * k], scores=[scores])
    expected = sum((sig(0.03 * p) - s) ** 2 for p, s in zip(rho, scores)) / k
    assert loss("una_score_mse", inputs) == pytest.approx(expected)


# -------------------------------------------------------------------------------------------------- SPO


def test_spo_pair_and_group():
    # K = 2, beta = 1: u = rho = [0.5, -0.5]; teacher softmax([1, 0])
    t = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]
    log_s = [logsig(1.0), logsig(-1.0)]  # log softmax of [0.5, -0.5]
    expected = -(t[0] * log_s[0] + t[1] * log_s[1])
    assert loss("spo", batch(**PAIR, rewards=[[1.0, 0.0]])) == pytest.approx(expected)
    # K = 4, alpha = 2: teacher softmax(r / 2), student softmax(rho)
    r, rho = [3, 1, 2, 0], [1, 0, -1, 2]
    zt = sum(math.exp(v / 2) for v in r)
    zs = sum(math.exp(v) for v in rho)
    expected4 = -sum(math.exp(ri / 2) / zt * (pi - math.log(zs)) for ri, pi in zip(r, rho))
    assert loss("spo", batch(**GROUP4), alpha=2.0) == pytest.approx(expected4)


def test_spo_abs_both_forms():
    # K = 2: spo + (1/2) * sum sig(-u) ; logsigmoid form: spo + (1/2) * sum logsig(-u)
    inputs = batch(**PAIR, rewards=[[1.0, 0.0]])
    spo = loss("spo", inputs)
    assert loss("spo_abs", inputs) == pytest.approx(spo + (sig(-0.5) + sig(0.5)) / 2)
    assert loss("spo_abs", inputs, abs_form="logsigmoid") == pytest.approx(spo + (logsig(-0.5) + logsig(0.5)) / 2)


def test_spo_without_rewards_is_the_one_hot_pair():
    # one-hot teacher on index 0: -log softmax(u)_0 = -logsig(u_0 - u_1) = -logsig(1)
    assert loss("spo", batch(**PAIR)) == pytest.approx(-logsig(1.0))
    # labels give an order, not a scale: the same one-hot teacher, here on index 1
    assert loss("spo", batch(**PAIR, labels=[[0, 1]])) == pytest.approx(-logsig(-1.0))
    # K = 4 with labels [1, 0, 1, 0]: teacher 1/2 on indices 0 and 2; u = rho = [1, 0, -1, 2]
    log_z = math.log(math.e + 1 + math.exp(-1) + math.exp(2))
    expected = -0.5 * ((1 - log_z) + (-1 - log_z))
    four = batch(policy=[[1.0, 0.0, -1.0, 2.0]], ref=[[0.0] * 4], labels=[[1, 0, 1, 0]])
    assert loss("spo", four) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------- DRDO


def drdo_pair(l_w, l_l, r_w, r_l, beta=0.1, alpha=0.1, gamma=2.0, sign=1.0):
    """distill + focal for one pair, written out; sign=+1 is the unlikelihood form (default), -1 the paper's
    form as printed."""
    distill = ((r_w - r_l) - beta * (l_w - l_l)) ** 2
    one_minus_p = sig(l_l - l_w)
    focal = -alpha * one_minus_p**gamma * (l_w + sign * math.log(1 - math.exp(l_l)))
    return distill + focal


def test_drdo_pair():
    inputs = batch(policy=[[-1.0, -2.0]], rewards=[[1.0, 0.0]])
    assert loss("drdo", inputs) == pytest.approx(drdo_pair(-1.0, -2.0, 1.0, 0.0))
    assert loss("drdo", inputs, focal_form="paper") == pytest.approx(drdo_pair(-1.0, -2.0, 1.0, 0.0, sign=-1.0))


def test_drdo_length_normalized():
    # z = l / n = [-0.5, -1.0] in p_w and the focal term; distill keeps beta * l
    inputs = batch(policy=[[-1.0, -2.0]], rewards=[[1.0, 0.0]], n_tokens=[[2, 2]])
    distill = (1.0 - 0.1 * 1.0) ** 2
    focal = -0.1 * sig(-0.5) ** 2 * (-0.5 + math.log(1 - math.exp(-1.0)))
    assert loss("drdo", inputs, length_normalize=True) == pytest.approx(distill + focal)


def test_drdo_group_of_four_and_ties():
    # All 6 pairs oriented by reward (w = higher reward); mean over pairs.
    logps, r = [-1.0, -2.0, -0.5, -3.0], [3.0, 1.0, 2.0, 0.0]
    inputs = batch(policy=[logps], rewards=[r])
    pairs = [(i, j) if r[i] > r[j] else (j, i) for i in range(4) for j in range(i + 1, 4)]
    expected = sum(drdo_pair(logps[w], logps[v], r[w], r[v]) for w, v in pairs) / 6
    assert loss("drdo", inputs) == pytest.approx(expected)
    # A tied pair keeps only the distillation term: (0 - 0.1 * 1)^2
    assert loss("drdo", batch(policy=[[-1.0, -2.0]], rewards=[[1.0, 1.0]])) == pytest.approx(0.01)


def test_drdo_position_order_keeps_the_human_label():
    # Oracle rewards prefer index 1, but order_by=position makes index 0 the focal w.
    inputs = batch(policy=[[-1.0, -2.0]], rewards=[[0.0, 1.0]])
    expected = ((0.0 - 1.0) - 0.1 * (-1.0 + 2.0)) ** 2 - 0.1 * sig(-1.0) ** 2 * (-1.0 + math.log(1 - math.exp(-2.0)))
    assert loss("drdo", inputs, order_by="position") == pytest.approx(expected)


# ------------------------------------------------------------------------------- reduction, nll, metrics


def test_batch_mean_skips_groups_without_a_pair():
    # group 1 ties (no preference pair): the batch loss is group 0's
    inputs = batch(policy=[[-1.0, -2.0], [-1.0, -2.0]], ref=[[-1.5, -1.5], [-1.5, -1.5]],
                   rewards=[[1.0, 0.0], [5.0, 5.0]])
    assert loss("dpo", inputs) == pytest.approx(-logsig(0.1))


def test_padded_groups_of_different_sizes():
    # group 0: K = 2 (third entry padded), group 1: K = 3; rpo means per group, then over groups
    inputs = batch(policy=[[0.5, -0.5, 9.0], [1.0, 0.0, -1.0]], ref=[[0.0] * 3] * 2,
                   rewards=[[1.0, 0.0, 7.0], [2.0, 1.0, 0.0]], mask=[[True, True, False], [True, True, True]])
    g0 = (0.1 - 1.0) ** 2
    g1 = ((0.1 - 1) ** 2 + (0.2 - 2) ** 2 + (0.1 - 1) ** 2) / 3
    assert loss("rpo", inputs) == pytest.approx((g0 + g1) / 2)


def test_nll_weight_adds_the_best_response_token_nll():
    # l_w = -1 over n_w = 4 tokens: + 0.5 * 0.25
    inputs = batch(**PAIR, n_tokens=[[4, 2]])
    assert loss("dpo", inputs, nll_weight=0.5) == pytest.approx(-logsig(0.1) + 0.125)
    # with labels, an undesirable single response gets no NLL term: groups [1] and [0]
    kto = batch(policy=[[-2.0], [-3.0]], ref=[[-2.0], [-3.0]], labels=[[1], [0]], n_tokens=[[2], [3]])
    assert loss("kto", kto, nll_weight=1.0) == pytest.approx(0.5 + 1.0 / 2)


def test_metrics_of_a_pair():
    _, metrics = compute_objective("dpo", batch(**PAIR, rewards=[[1.0, 0.0]]))
    expected = {
        "rewards/chosen": 0.05, "rewards/rejected": -0.05, "rewards/margins": 0.1, "rewards/accuracies": 1.0,
        "logps/chosen": -1.0, "logps/rejected": -2.0, "rewards/explicit_mean": 0.5,
    }
    assert {k: pytest.approx(v) for k, v in expected.items()} == {k: v.item() for k, v in metrics.items()}
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())


def test_metrics_with_binary_labels_compare_across_the_batch():
    # desirable rho = [1.0, -0.6], undesirable rho = [0.2]: beta * rho means; 1 of 2 (d, u) pairs ordered
    inputs = batch(policy=[[1.0], [0.2], [-0.6]], ref=[[0.0]] * 3, labels=[[1], [0], [1]])
    _, metrics = compute_objective("kto", inputs)
    assert metrics["rewards/chosen"].item() == pytest.approx(0.1 * 0.2)
    assert metrics["rewards/rejected"].item() == pytest.approx(0.02)
    assert metrics["rewards/accuracies"].item() == pytest.approx(0.5)
    assert "rewards/explicit_mean" not in metrics


def test_a_metric_with_nothing_to_average_is_nan_not_missing():
    # labels only, all desirable: there is no rejected response, so rewards/rejected, margins and accuracies
    # are NaN; which keys exist depends on the inputs' fields, not their values.
    inputs = ObjectiveInputs(policy_logps=torch.tensor([[-1.0], [-2.0]]), ref_logps=torch.tensor([[-1.5], [-1.5]]),
                             mask=torch.ones(2, 1, dtype=torch.bool), labels=torch.tensor([[1.0], [1.0]]))
    _, metrics = compute_objective("kto", inputs)
    assert set(metrics) == {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                            "logps/chosen", "logps/rejected"}
    assert metrics["rewards/chosen"].item() == pytest.approx(0.0)  # beta * rho = 0.05 and -0.05: mean 0
    assert metrics["logps/chosen"].item() == pytest.approx(-1.5)
    for key in ("rewards/rejected", "logps/rejected", "rewards/margins", "rewards/accuracies"):
        assert math.isnan(metrics[key].item()), key


def test_mean_metrics_averages_steps_and_skips_nan():
    nan = float("nan")
    history = {
        "rewards/chosen": [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(nan)],
        "rewards/rejected": [torch.tensor(nan), torch.tensor(nan)],
        "loss": [0.5, 1.5],
        "empty": [],
    }
    assert mean_metrics(history) == {"rewards/chosen": 1.5, "loss": 1.0}
    assert mean_metrics({}) == {}


def test_target_mse_metric():
    # dro: mean over groups of the mean squared error to the targets = the loss here
    inputs = batch(**PAIR, rewards=[[1.0, 0.0]], prompt_policy_logps=[0.0], prompt_ref_logps=[0.0])
    value, metrics = compute_objective("dro", inputs, **PAPER_DRO)
    assert metrics["rewards/target_mse"].item() == pytest.approx((0.95**2 + 0.05**2) / 2)
    assert metrics["rewards/target_mse"].item() == pytest.approx(value.item())


def test_float64_inputs_stay_float64():
    value, _ = compute_objective("dpo", batch(**PAIR))
    assert value.dtype == torch.float64
