"""Reward models: standard sequence-classification models (checks, loading), the oracle's LM head NLL, ensembles,
pair building."""

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, LlamaForSequenceClassification

from rewardalign.config import ConfigError
from rewardalign.data.collate import collate_groups
from rewardalign.data.schema import DataError, Group
from rewardalign.data.tokenize import TokenizeConfig, TokenizedGroup, tokenize_groups
from rewardalign.modeling.tiny import (
    build_tiny_model,
    build_tiny_reward_model,
    build_tiny_tokenizer,
    tiny_config,
)
from rewardalign.rewards.models import (
    OracleRewardModel,
    check_reward_model_dir,
    ensemble_members,
    load_reward_model,
    sequence_rewards,
    write_ensemble_config,
)
from rewardalign.rewards.pairs import build_pairs, group_pairs, split_by_prompt

TEXTS = ["tell red cat good slow", "tell blue dog bad fast", "good good bad bad x y z"] * 10
SIZE = {"hidden_size": 32, "num_layers": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer(TEXTS, vocab_size=300)


def batch_of(tok, prompts_responses):
    groups = [Group(p, [r]) for p, r in prompts_responses]
    tg, _ = tokenize_groups(groups, tok, TokenizeConfig(max_length=32))
    return collate_groups(tg, tok.pad_token_id)


def oracle_of(lm: nn.Module, tok) -> OracleRewardModel:
    """An oracle whose classifier carries ``lm``'s backbone (tied head: the embeddings serve as the LM head)."""
    classifier = build_tiny_reward_model(tok, **SIZE, seed=1)
    classifier.model.load_state_dict(lm.model.state_dict())
    return OracleRewardModel(classifier).eval()


def test_oracle_nll_matches_the_causal_lm(tok):
    """mean token NLL over response tokens = -(1/n) sum log softmax(the causal LM's full logits)[target], with the
    oracle's classifier carrying the causal LM's backbone and its tied head."""
    lm = build_tiny_model(tok, **SIZE, seed=0).eval()
    oracle = oracle_of(lm, tok)
    batch = batch_of(tok, [("tell red", "cat good"), ("tell blue dog", "bad fast x")])
    with torch.no_grad():
        out = oracle(batch["input_ids"], batch["attention_mask"], response_mask=batch["response_mask"],
                     nll_rows=torch.tensor([True, True]))
        logits = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    logp = logits[:, :-1].log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    mask = batch["response_mask"][:, 1:]
    expected = -(logp * mask).sum(-1) / mask.sum(-1)
    assert out.nll.tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert out.logits.shape == (2, 1)


def test_oracle_gradient_reaches_the_tied_embeddings_and_an_untied_head(tok):
    lm = build_tiny_model(tok, **SIZE, seed=0)
    oracle = oracle_of(lm, tok).train()
    batch = batch_of(tok, [("tell red", "cat good")])
    rows = torch.tensor([True])
    oracle(batch["input_ids"], batch["attention_mask"], batch["response_mask"], rows).nll.sum().backward()
    embeddings = oracle.classifier.get_input_embeddings().weight
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0
    assert "lm_head.weight" not in oracle.state_dict()  # tied: nothing to save twice
    # an untied model needs its own head, which is trained and sits in the state dict beside the classifier
    untied = LlamaForSequenceClassification(tiny_config(tok, **SIZE, num_labels=1))
    untied.config.tie_word_embeddings = False
    with pytest.raises(ValueError, match="not tied"):
        OracleRewardModel(untied)
    head = nn.Linear(32, len(tok), bias=False)
    oracle = OracleRewardModel(untied, head)
    oracle(batch["input_ids"], batch["attention_mask"], batch["response_mask"], rows).nll.sum().backward()
    assert head.weight.grad.abs().sum() > 0 and "lm_head.weight" in oracle.state_dict()


def test_oracle_saves_a_standard_directory(tok, tmp_path):
    oracle = oracle_of(build_tiny_model(tok, **SIZE, seed=0), tok)
    oracle.save_pretrained(tmp_path / "rm")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert type(loaded).__name__ == "LlamaForSequenceClassification" and loaded.config.num_labels == 1
    batch = batch_of(tok, [("tell red", "cat good"), ("tell blue", "dog bad fast")])
    with torch.no_grad():
        assert torch.allclose(sequence_rewards(loaded, batch),
                              sequence_rewards(oracle, batch), atol=1e-6)


def test_only_one_label_sequence_classifiers_are_reward_models(tok, tmp_path):
    build_tiny_model(tok, **SIZE).save_pretrained(tmp_path / "lm")
    with pytest.raises(ConfigError, match="not a reward model: a reward model is a sequence-classification"):
        check_reward_model_dir(tmp_path / "lm")
    LlamaForSequenceClassification(tiny_config(tok, **SIZE, num_labels=2)).save_pretrained(tmp_path / "two")
    with pytest.raises(ConfigError, match="num_labels 2"):
        load_reward_model(tmp_path / "two")
    with pytest.raises(ConfigError, match="no config.json"):
        check_reward_model_dir(tmp_path)
    # a reward model without a pad token in its config gets the tokenizer's
    model = build_tiny_reward_model(tok, **SIZE)
    model.config.pad_token_id = None
    model.save_pretrained(tmp_path / "nopad")
    assert load_reward_model(tmp_path / "nopad", pad_token_id=tok.pad_token_id).config.pad_token_id == tok.pad_token_id


def test_ensemble_manifest(tok, tmp_path):
    for i in range(2):
        build_tiny_reward_model(tok, **SIZE, seed=i).save_pretrained(tmp_path / f"member_{i}")
    write_ensemble_config(tmp_path, ["member_0", "member_1"])
    assert [p.name for p in ensemble_members(tmp_path)] == ["member_0", "member_1"]
    (tmp_path / "member_1" / "config.json").unlink()
    with pytest.raises(ConfigError, match="member_1 is not a reward model directory"):
        ensemble_members(tmp_path)
    with pytest.raises(ConfigError, match="not a reward-model ensemble"):
        ensemble_members(tmp_path / "member_0")


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
