import math

import pytest

from rewardalign.data.collate import LengthGroupedSampler, collate_groups
from rewardalign.data.schema import DataError
from rewardalign.data.tokenize import TokenizedGroup


def groups():
    return [
        TokenizedGroup([5, 6, 7], [[8, 9], [10]], rewards=[1.0, 0.0], index=0),
        TokenizedGroup([11], [[12, 13, 14], [15], [16, 17]], rewards=[0.5, 2.0, -1.0], index=1),
    ]


def test_shapes_masks_and_layout():
    batch = collate_groups(groups(), pad_token_id=0)
    assert batch["input_ids"].shape == (5, 5)  # 5 sequences, the longest is 3 + 2 tokens
    assert batch["mask"].tolist() == [[True, True, False], [True, True, True]]
    assert batch["seq_group"].tolist() == [0, 0, 1, 1, 1]
    assert batch["seq_slot"].tolist() == [0, 1, 0, 1, 2]
    assert batch["first_seq"].tolist() == [0, 2]
    assert batch["prompt_lengths"].tolist() == [3, 3, 1, 1, 1]
    assert batch["input_ids"][0].tolist() == [5, 6, 7, 8, 9]
    assert batch["input_ids"][1].tolist() == [5, 6, 7, 10, 0]  # right padding
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 0]
    assert batch["response_mask"][1].tolist() == [False, False, False, True, False]
    assert batch["response_mask"][2].tolist() == [False, True, True, True, False]
    assert batch["rewards"][1].tolist() == [0.5, 2.0, -1.0]
    assert batch["rewards"][0, :2].tolist() == [1.0, 0.0] and math.isnan(batch["rewards"][0, 2])


def test_labels_travel_as_binary_labels_and_extras_collate():
    gs = groups()
    for g in gs:
        g.labels = [1] + [0] * (g.k - 1)
        g.extra["ref_logps"] = [-1.0] * g.k
        g.extra["prompt_ref_logps"] = -3.0
    batch = collate_groups(gs, 0)
    assert "labels" not in batch
    assert batch["binary_labels"][1].tolist() == [1.0, 0.0, 0.0]
    assert batch["ref_logps"].shape == (2, 3) and batch["prompt_ref_logps"].tolist() == [-3.0, -3.0]


def test_reward_members_are_m_b_k():
    gs = groups()
    gs[0].reward_members = [[1.0, 0.0], [2.0, 1.0]]
    gs[1].reward_members = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    batch = collate_groups(gs, 0)
    assert batch["reward_members"].shape == (2, 2, 3)
    assert batch["reward_members"][1, 1].tolist() == [3.0, 4.0, 5.0]


def test_feedback_missing_in_one_group_names_it():
    gs = groups()
    gs[1].rewards = None
    with pytest.raises(DataError, match="row 1, field 'rewards'"):
        collate_groups(gs, 0)


def test_length_grouped_sampler_is_a_seeded_permutation_sorted_in_megabatches():
    lengths = [5, 50, 7, 30, 1, 2, 40, 3]
    sampler = LengthGroupedSampler(lengths, batch_size=2, seed=3, mega_batch_mult=2)
    order = list(sampler)
    assert sorted(order) == list(range(8))
    assert order == list(LengthGroupedSampler(lengths, batch_size=2, seed=3, mega_batch_mult=2))
    for start in range(0, 8, 4):
        chunk = [lengths[i] for i in order[start:start + 4]]
        assert chunk == sorted(chunk, reverse=True)
    epochs = []
    for epoch in range(1, 4):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert any(e != order for e in epochs)  # a new epoch reshuffles
