"""Reward sources: reward model, rule, teacher ratio, imported scores, the factory and fingerprints."""

import shutil
import textwrap

import numpy as np
import pytest
import torch

from rewardalign.config import ConfigError
from rewardalign.data.collate import collate_groups
from rewardalign.data.schema import DataError, Group
from rewardalign.data.tokenize import TokenizeConfig, tokenize_groups
from rewardalign.fingerprint import model_fingerprint, path_fingerprint
from rewardalign.modeling.logprobs import plain_batch_logps
from rewardalign.modeling.tiny import build_tiny_model, build_tiny_reward_model, build_tiny_tokenizer
from rewardalign.rewards.models import load_reward_model, sequence_rewards, write_training_info
from rewardalign.rewards.sources import (
    BadReward,
    EnsembleSource,
    ImportedSource,
    RewardModelSource,
    RuleSource,
    TeacherRatioSource,
    build_source,
)

TEXTS = ["tell red cat good slow", "tell blue dog bad fast", "add 3 and 4 = 7"] * 10
PROMPTS = ["tell red cat", "tell blue", "add 3 and 4 =", "tell red cat"]
RESPONSES = ["good slow", "dog bad fast", " 7", "bad"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A saved (untrained) reward model, a base causal LM, an identical copy of it, and another LM."""
    root = tmp_path_factory.mktemp("sources")
    tok = build_tiny_tokenizer(TEXTS, vocab_size=300)
    build_tiny_reward_model(tok, hidden_size=32, num_layers=1, num_heads=2, seed=3).save_pretrained(root / "rm")
    tok.save_pretrained(root / "rm")
    write_training_info(root / "rm", {"max_length": 32})
    for name, seed in (("base", 0), ("other", 1)):
        build_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=2, seed=seed).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    shutil.copytree(root / "base", root / "base_copy")
    return root, tok


def test_reward_model_source_matches_the_model(models):
    root, tok = models
    source = build_source({"type": "reward_model", "path": str(root / "rm"), "batch_size": 3})
    assert isinstance(source, RewardModelSource) and source.columns is None
    assert source.tokenize_config().max_length == 32  # from reward_training.json
    values = source.score(PROMPTS, RESPONSES)
    assert values.shape == (4,) and values.dtype == np.float64
    # the same numbers as the model on one batch in input order
    model = load_reward_model(root / "rm")
    tg, _ = tokenize_groups([Group(p, [r]) for p, r in zip(PROMPTS, RESPONSES)], tok, TokenizeConfig(max_length=32))
    batch = collate_groups(tg, tok.pad_token_id)
    with torch.no_grad():
        expected = sequence_rewards(model, batch).double().numpy()
    assert values == pytest.approx(expected, abs=1e-5)
    # a response scored alone (no padding) gets the reward it gets in a padded batch
    alone = build_source(str(root / "rm")).score(PROMPTS[2:3], RESPONSES[2:3])
    assert alone[0] == pytest.approx(values[2], abs=1e-5)
    # progress counts every response once
    seen = []
    source.score(PROMPTS, RESPONSES, progress=seen.append)
    assert sum(seen) == 4


def test_any_sequence_classifier_in_bfloat16_with_its_chat_template(models, tmp_path):
    """A reward model saved by plain transformers (no training metadata) scores message lists through its
    tokenizer's chat template, in bfloat16 when asked, close to float32."""
    root, tok = models
    shutil.copytree(root / "rm", tmp_path / "rm", ignore=shutil.ignore_patterns("reward_training.json"))
    chats = [[{"role": "user", "content": p}] for p in PROMPTS]
    replies = [[{"role": "assistant", "content": r}] for r in RESPONSES]
    full = build_source(str(tmp_path / "rm"))
    assert full.tokenize_config().max_length == 1024 and full.tokenize_config().chat_template == "auto"
    values = full.score(chats, replies)
    assert not np.allclose(values, full.score(PROMPTS, RESPONSES))  # the template changes the text scored
    half = build_source({"type": "reward_model", "path": str(tmp_path / "rm"), "torch_dtype": "bfloat16"})
    assert next(half.load().parameters()).dtype == torch.bfloat16
    assert half.score(chats, replies) == pytest.approx(values, abs=0.05)


def test_a_hub_reward_model_is_fetched_by_snapshot_download(models, monkeypatch):
    import huggingface_hub

    root, _ = models
    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: asked.append(repo) or str(root / "rm"))
    source = build_source("rm:some-org/some-reward-model")
    assert asked == ["some-org/some-reward-model"] and source.path == root / "rm"

    def offline(repo, **kw):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ConfigError, match="neither a local directory nor a hub repository.*no network"):
        build_source("rm:some-org/some-reward-model")


def test_fingerprint_follows_model_content(models, tmp_path):
    root, _ = models
    shutil.copytree(root / "rm", tmp_path / "rm")
    first = build_source(str(tmp_path / "rm")).fingerprint()
    assert build_source(str(tmp_path / "rm")).fingerprint() == first
    model = load_reward_model(tmp_path / "rm")
    with torch.no_grad():
        model.score.weight.add_(1.0)
    model.save_pretrained(tmp_path / "rm")
    assert build_source(str(tmp_path / "rm")).fingerprint() != first
    # stat mode: name, size and mtime only
    assert build_source({"type": "reward_model", "path": str(tmp_path / "rm"),
                         "fingerprint": "stat"}).fingerprint() != first


def test_model_fingerprint_leaves_out_the_run_records(models, tmp_path):
    """A model trained again to the same weights, with new logs, times and model card, hits the caches; a changed
    configuration or tokenizer file does not."""
    root, _ = models
    shutil.copytree(root / "rm", tmp_path / "rm")
    first = model_fingerprint(tmp_path / "rm")
    for name in ("summary.json", "metrics.jsonl", "README.md", "manifest.json"):
        (tmp_path / "rm" / name).write_text('{"seconds": 12.5}\n')
    assert model_fingerprint(tmp_path / "rm") == first
    assert path_fingerprint(tmp_path / "rm") != path_fingerprint(root / "rm")  # the whole folder did change
    config = tmp_path / "rm" / "config.json"
    config.write_text(config.read_text().replace("{", '{"edited": true, ', 1))
    assert model_fingerprint(tmp_path / "rm") != first


def test_rule_source(tmp_path, monkeypatch):
    module = tmp_path / "my_rules.py"
    module.write_text(textwrap.dedent("""
        def length(prompt, response):
            return float(len(response))

        def not_a_number(prompt, response):
            return "high"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    source = build_source({"type": "rule", "function": "my_rules:length"})
    assert isinstance(source, RuleSource) and source.name == "rule:my_rules:length"
    assert source.score(PROMPTS, RESPONSES).tolist() == [9.0, 12.0, 2.0, 3.0]
    fp = source.fingerprint()
    module.write_text(module.read_text() + "\n# edited\n")
    assert RuleSource("my_rules:length").fingerprint() != fp
    with pytest.raises(BadReward, match="not a number"):
        RuleSource("my_rules:not_a_number").score(PROMPTS, RESPONSES)
    with pytest.raises(ConfigError, match="module:function"):
        build_source({"type": "rule", "function": "my_rules.length"})
    with pytest.raises(ConfigError, match="cannot import"):
        build_source({"type": "rule", "function": "no_such_module_xyz:f"})
    with pytest.raises(ConfigError, match="has no attribute"):
        build_source({"type": "rule", "function": "my_rules:missing"})
    # a callable given directly
    assert RuleSource(lambda p, r: 1.0).score(["a"], ["b"]).tolist() == [1.0]


def test_teacher_ratio(models):
    """log pi_t(y|x) - log mu_t(y|x), summed over response tokens: 0 exactly for a teacher equal to its base;
    otherwise the difference of the plain full-logits log-probs."""
    root, tok = models
    same = build_source({"type": "teacher_ratio", "teacher": str(root / "base_copy"), "base": str(root / "base"),
                         "batch_size": 2})
    assert isinstance(same, TeacherRatioSource)
    assert same.score(PROMPTS, RESPONSES).tolist() == [0.0, 0.0, 0.0, 0.0]
    ratio = TeacherRatioSource(root / "other", root / "base").score(PROMPTS, RESPONSES)
    assert np.all(ratio != 0)
    from transformers import AutoModelForCausalLM

    tg, _ = tokenize_groups([Group(p, [r]) for p, r in zip(PROMPTS, RESPONSES)], tok,
                            TokenizeConfig(max_length=1024))
    batch = collate_groups(tg, tok.pad_token_id)
    with torch.no_grad():
        lp = [plain_batch_logps(AutoModelForCausalLM.from_pretrained(str(root / n)), batch).logps[:, 0]
              for n in ("other", "base")]
    assert ratio == pytest.approx((lp[0] - lp[1]).double().numpy(), abs=1e-4)
    assert same.fingerprint() != TeacherRatioSource(root / "other", root / "base").fingerprint()
    with pytest.raises(ConfigError, match="teacher_ratio teacher '.*nowhere' does not exist"):
        build_source({"type": "teacher_ratio", "teacher": str(root / "nowhere"), "base": str(root / "base")})


def test_imported_source_with_declared_range():
    groups = [Group("p1", ["a", "b"], rewards=[7.0, 3.0], meta={"gpt4": [9, 2]}),
              Group("p2", ["c", "d", "e"], rewards=[1.0, 10.0, 5.5], meta={"gpt4": [1, 1, 10]})]
    source = build_source({"type": "imported", "column": "rewards", "range": [1, 10]})
    assert isinstance(source, ImportedSource) and source.value_range == (1.0, 10.0)
    source.prepare(groups)
    assert source.score(["p2", "p1", "p1"], ["e", "a", "b"]).tolist() == [5.5, 7.0, 3.0]
    with pytest.raises(BadReward, match="no imported"):
        source.score(["p1"], ["z"])
    meta = ImportedSource("meta.gpt4", [1, 10])
    meta.prepare(groups)
    assert meta.score(["p1", "p2"], ["a", "e"]).tolist() == [9.0, 10.0]
    # a value outside the declared range names the group and the response
    with pytest.raises(DataError, match=r"row 1, field 'rewards\[1\]'.*10.0 is outside the declared range \[1.0, 9.0\]"):
        ImportedSource("rewards", [1, 9]).prepare(groups)
    with pytest.raises(DataError, match=r"row 0, field 'scores'.*no value"):
        ImportedSource("scores", [0, 1]).prepare(groups)
    with pytest.raises(ConfigError, match="lo < hi"):
        build_source({"type": "imported", "column": "rewards", "range": [5, 1]})


def test_factory_errors(models):
    root, _ = models
    with pytest.raises(ConfigError, match="unknown reward source type"):
        build_source({"type": "oracle_of_delphi"})
    with pytest.raises(ConfigError, match="with a `type`"):
        build_source({"path": "x"})
    with pytest.raises(ConfigError, match="reward model '.*missing' does not exist"):
        build_source({"type": "reward_model", "path": str(root / "missing")})
    with pytest.raises(ConfigError, match="is not a reward model: a reward model is a sequence-classification"):
        build_source({"type": "reward_model", "path": str(root / "base")})
    with pytest.raises(ConfigError, match="unknown reward_model source field"):
        build_source({"type": "reward_model", "path": str(root / "rm"), "batchsize": 4})
    with pytest.raises(ConfigError, match="not a reward-model ensemble"):
        EnsembleSource(root / "rm")
