"""Identities between objectives, and the pair constructions (seeded, deterministic best_vs_random)."""

from collections import Counter

import pytest
import torch

from rewardalign.objectives import ObjectiveInputs, compute_objective
from rewardalign.objectives.pairs import preference_pairs


def random_batch(b=5, k=4, seed=0, **extra):
    gen = torch.Generator().manual_seed(seed)
    return ObjectiveInputs(
        policy_logps=-5 * torch.rand(b, k, generator=gen, dtype=torch.float64),
        ref_logps=-5 * torch.rand(b, k, generator=gen, dtype=torch.float64),
        mask=torch.ones(b, k, dtype=torch.bool),
        rewards=torch.randn(b, k, generator=gen, dtype=torch.float64),
        **extra,
    )


def loss(name, inputs, **hparams):
    return compute_objective(name, inputs, **hparams)[0]


def test_spo_with_vanishing_alpha_is_dpo_for_pairs():
    # alpha -> 0: the teacher is one-hot on the higher reward; -log softmax = -logsig(u_w - u_l) (004 Eq. 9-10)
    inputs = random_batch(k=2)
    torch.testing.assert_close(loss("spo", inputs, beta=0.1, alpha=1e-4), loss("dpo", inputs, beta=0.1))


def test_spo_without_rewards_is_dpo():
    inputs = random_batch(k=2)
    inputs.rewards = None
    torch.testing.assert_close(loss("spo", inputs, beta=0.3), loss("dpo", inputs, beta=0.3))


@pytest.mark.parametrize("k", [1, 2, 4])
def test_dro_without_prompt_normalization_is_una_reward_mse(k):
    inputs = random_batch(k=k)
    dro = loss("dro", inputs, beta=0.2, z0=0.0, prompt_normalization=False, baseline="none")
    torch.testing.assert_close(dro, loss("una_reward_mse", inputs, beta=0.2))


@pytest.mark.parametrize("k", [2, 4])
def test_edpo_with_one_reward_model_is_rpo(k):
    inputs = random_batch(k=k)
    rpo = loss("rpo", inputs)
    torch.testing.assert_close(loss("edpo", inputs), rpo)
    inputs.rewards = inputs.rewards.unsqueeze(0)  # an explicit ensemble of M = 1
    torch.testing.assert_close(loss("edpo", inputs), rpo)
    torch.testing.assert_close(loss("edpo", inputs, ensemble_reduce="mean"), rpo)


def test_pair_constructions_agree_for_pairs():
    inputs = random_batch(k=2)
    dpo = loss("dpo", inputs)
    torch.testing.assert_close(loss("dpo", inputs, pairs="best_vs_rest"), dpo)
    torch.testing.assert_close(loss("dpo", inputs, pairs="all_pairs"), dpo)


# ----------------------------------------------------------------------------------- pair constructions


def test_best_vs_rest_and_all_pairs_indices():
    key = torch.tensor([[3.0, 1.0, 2.0, 2.0]])
    mask = torch.tensor([[True, True, True, True]])
    rest = preference_pairs(key, mask, "best_vs_rest")
    chosen = {(int(w), int(v)) for w, v, m in zip(rest.w[0], rest.l[0], rest.mask[0]) if m}
    assert chosen == {(0, 1), (0, 2), (0, 3)}
    every = preference_pairs(key, mask, "all_pairs")
    ordered = {(int(w), int(v)) for w, v, m in zip(every.w[0], every.l[0], every.mask[0]) if m}
    assert ordered == {(0, 1), (0, 2), (0, 3), (2, 1), (3, 1)}  # the tie (2, 3) is skipped


def test_best_vs_random_is_uniform_over_the_worse_responses_and_seeded():
    # 3000 groups with the same rewards: the rejected index must spread evenly over 1, 2, 3.
    b = 3000
    key = torch.tensor([[4.0, 1.0, 2.0, 3.0]]).expand(b, 4)
    mask = torch.ones(b, 4, dtype=torch.bool)
    draws = preference_pairs(key, mask, "best_vs_random", seed=7).l.flatten()
    counts = Counter(draws.tolist())
    assert set(counts) == {1, 2, 3}
    assert all(850 < c < 1150 for c in counts.values())
    again = preference_pairs(key, mask, "best_vs_random", seed=7).l.flatten()
    other = preference_pairs(key, mask, "best_vs_random", seed=8).l.flatten()
    assert torch.equal(draws, again)
    assert not torch.equal(draws, other)


def test_best_vs_random_never_pairs_a_tie_with_the_best():
    key = torch.tensor([[2.0, 2.0, 0.0]]).expand(200, 3)
    pairs = preference_pairs(key, torch.ones(200, 3, dtype=torch.bool), "best_vs_random", seed=1)
    assert bool((pairs.w == 0).all()) and bool((pairs.l == 2).all())


def test_best_vs_random_follows_group_ids_not_batch_order():
    ids = torch.arange(100, 164)
    key = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(64, 4, dtype=torch.bool)
    base = preference_pairs(key, mask, "best_vs_random", seed=3, group_ids=ids)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    shuffled = preference_pairs(key[perm], mask[perm], "best_vs_random", seed=3, group_ids=ids[perm])
    assert torch.equal(shuffled.l, base.l[perm])
    assert torch.equal(shuffled.w, base.w[perm])


def test_best_vs_random_loss_is_deterministic_through_the_registry():
    inputs = random_batch(b=8, k=4, group_ids=torch.arange(8))
    assert torch.equal(loss("dpo", inputs, seed=5), loss("dpo", inputs, seed=5))
