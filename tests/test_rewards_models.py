"""RewardModel (scalar head on the last non-padding token, LM head NLL), saving and loading, pair building."""

import pytest
import torch

from rewardalign.config import ConfigError
from rewardalign.data.collate import collate_groups
from rewardalign.data.schema import DataError, Group
from rewardalign.data.tokenize import TokenizeConfig, TokenizedGroup, tokenize_groups
from rewardalign.modeling.tiny import build_tiny_model, build_tiny_tokenizer
from rewardalign.rewards.models import (
    RewardEnsemble,
    RewardModel,
    ensemble_members,
    last_token_index,
    write_ensemble_config,
)
from rewardalign.rewards.pairs import build_pairs, group_pairs, split_by_prompt

TEXTS = ["tell red cat good slow", "tell blue dog bad fast", "good good bad bad x y z"] * 10


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture()
def rm(tok):
    return RewardModel(build_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=2, seed=0), kind="oracle",
                       head_seed=0).eval()


def batch_of(tok, prompts_responses):
    groups = [Group(p, [r]) for p, r in prompts_responses]
    tg, _ = tokenize_groups(groups, tok, TokenizeConfig(max_length=32))
    return collate_groups(tg, tok.pad_token_id)


def test_last_token_index_right_and_left_padding():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [2, 4, 0]
    assert last_token_index(left).tolist() == [4, 4]


def test_reward_ignores_padding(rm, tok):
    """A sequence scored alone and beside a longer one (so padded) gets the same reward."""
    alone = batch_of(tok, [("tell red", "cat good")])
    padded = batch_of(tok, [("tell red", "cat good"), ("tell blue dog bad fast", "good good bad bad x y z")])
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]
    with torch.no_grad():
        r_alone = rm(alone["input_ids"], alone["attention_mask"]).rewards
        r_padded = rm(padded["input_ids"], padded["attention_mask"]).rewards
    assert r_alone.shape == (1,) and r_padded.shape == (2,)
    assert r_padded[0].item() == pytest.approx(r_alone[0].item(), abs=1e-5)


def test_nll_matches_full_logits(rm, tok):
    """mean token NLL over response tokens = -(1/n) sum log softmax(full logits)[target] on those tokens."""
    batch = batch_of(tok, [("tell red", "cat good"), ("tell blue dog", "bad fast x")])
    rows = torch.tensor([True, True])
    with torch.no_grad():
        out = rm(batch["input_ids"], batch["attention_mask"], response_mask=batch["response_mask"], nll_rows=rows)
        logits = rm.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    logp = logits[:, :-1].log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    mask = batch["response_mask"][:, 1:]
    expected = -(logp * mask).sum(-1) / mask.sum(-1)
    assert out.nll.tolist() == pytest.approx(expected.tolist(), abs=1e-5)


def test_save_and_load_roundtrip(rm, tok, tmp_path):
    batch = batch_of(tok, [("tell red", "cat good"), ("tell blue", "dog bad")])
    rm.save_pretrained(tmp_path / "rm", tokenizer=tok, info={"max_length": 32})
    loaded = RewardModel.from_pretrained(tmp_path / "rm")
    assert loaded.kind == "oracle"
    assert (tmp_path / "rm" / "model.safetensors").is_file() and (tmp_path / "rm" / "config.json").is_file()
    with torch.no_grad():
        a = rm(batch["input_ids"], batch["attention_mask"]).rewards
        b = loaded(batch["input_ids"], batch["attention_mask"]).rewards
    assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="not a reward model directory"):
        RewardModel.from_pretrained(tmp_path)


def test_ensemble_manifest(tok, tmp_path):
    for i in range(2):
        RewardModel(build_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=2), head_seed=i).save_pretrained(
            tmp_path / f"member_{i}", tokenizer=tok)
    write_ensemble_config(tmp_path, ["member_0", "member_1"])
    assert [p.name for p in ensemble_members(tmp_path)] == ["member_0", "member_1"]
    ens = RewardEnsemble.from_pretrained(tmp_path)
    batch = batch_of(tok, [("tell red", "cat good"), ("tell blue", "dog bad"), ("x", "y")])
    with torch.no_grad():
        r = ens(batch["input_ids"], batch["attention_mask"])
    assert r.shape == (3, 2)
    assert not torch.equal(r[:, 0], r[:, 1])  # different head seeds


def test_group_pairs():
    g2 = Group("p", ["a", "b"])
    assert group_pairs(g2, 0) == [(0, 1)]
    g4 = Group("p", ["a", "b", "c", "d"], rewards=[1.0, 3.0, 1.0, 0.0])
    # every ordered pair with a strictly higher reward; the tie (0, 2) gives none
    assert sorted(group_pairs(g4, 0)) == [(0, 3), (1, 0), (1, 2), (1, 3), (2, 3)]
    assert group_pairs(Group("p", ["a", "b"], labels=[0, 1]), 0) == [(1, 0)]
    assert group_pairs(Group("p", ["a"]), 0) == []
    with pytest.raises(DataError, match="row 7.*no preference order"):
        group_pairs(Group("p", ["a", "b", "c"]), 7)


def test_build_pairs_counts_groups_without_pairs():
    groups = [
        TokenizedGroup([1], [[2], [3]], index=0),
        TokenizedGroup([1], [[2]], index=1),
        TokenizedGroup([1], [[2], [3], [4]], rewards=[1.0, 1.0, 1.0], index=2),
        TokenizedGroup([1], [[2], [3], [4]], rewards=[0.0, 2.0, 1.0], index=3),
    ]
    pairs, stats = build_pairs(groups)
    assert stats.pairs == 1 + 3 and len(pairs) == 4
    assert stats.groups_without_pairs == {"K=1": 1, "all responses tied": 1}
    assert pairs[1].response_ids == [[3], [2]] and pairs[1].extra["pair"] == (1, 0)


def test_split_by_prompt_keeps_prompts_together():
    groups = [Group(f"p{i % 5}", ["a", "b"]) for i in range(20)]
    train, held = split_by_prompt(groups, 0.4, seed=0)
    assert len(train) + len(held) == 20 and held
    assert not {groups[i].prompt for i in train} & {groups[i].prompt for i in held}
    assert split_by_prompt(groups, 0.4, seed=0) == (train, held)
