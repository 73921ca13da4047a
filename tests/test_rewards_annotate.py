"""annotate: rewards, scores and members into the data, the cache, transforms, errors that name the row."""

import json
import textwrap
import time

import numpy as np
import pytest
import torch
import yaml

from rewardalign import cli
from rewardalign.config import ConfigError
from rewardalign.data import load_groups
from rewardalign.data.schema import DataError
from rewardalign.modeling.tiny import build_tiny_reward_model, build_tiny_tokenizer
from rewardalign.rewards.annotate import run_annotate as annotate
from rewardalign.rewards.annotate import sidecar_path
from rewardalign.rewards.model_sources import RewardModelSource
from rewardalign.rewards.models import load_reward_model, write_ensemble_config, write_training_info
from rewardalign.rewards.transforms import sigmoid

GROUPS = [
    {"prompt": "tell red cat", "responses": ["good slow", "bad slow"]},
    {"prompt": "tell blue dog", "responses": ["big good", "big bad", "small"]},
    {"prompt": "tell sun", "responses": ["moon good", "moon bad"]},
    {"prompt": "tell tree", "responses": ["green", "good tree", "bad tree", "fast"]},
]
N_RESPONSES = sum(len(g["responses"]) for g in GROUPS)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotate")
    tok = build_tiny_tokenizer([" ".join(g["responses"]) + " " + g["prompt"] for g in GROUPS] * 10, vocab_size=300)
    for i, path in enumerate(["rm", "ens/member_0", "ens/member_1"]):
        # sequence-classification reward models built from a config (num_labels = 1), as transformers saves them
        build_tiny_reward_model(tok, hidden_size=32, num_layers=1, num_heads=2, seed=i).save_pretrained(root / path)
        tok.save_pretrained(root / path)
        write_training_info(root / path, {"max_length": 32})
    write_ensemble_config(root / "ens", ["member_0", "member_1"])
    (root / "rules").mkdir()
    (root / "rules" / "annot_rules.py").write_text(textwrap.dedent("""
        import math
        CALLS = []

        def length(prompt, response):
            CALLS.append(response)
            return float(len(response))

        def broken(prompt, response):
            return math.nan if response == "big bad" else 1.0
    """))
    return root


@pytest.fixture()
def rules(env, monkeypatch):
    monkeypatch.syspath_prepend(str(env / "rules"))
    import annot_rules

    annot_rules.CALLS.clear()
    return annot_rules


def test_second_run_is_a_cache_hit_and_changes_recompute(env, tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "groups.jsonl", GROUPS)
    config = {"data": str(data), "output": str(tmp_path / "out.jsonl"), "progress": False,
              "source": {"type": "reward_model", "path": str(env / "rm")}, "transform": "sigmoid"}
    t0 = time.perf_counter()
    first = annotate(config)
    t1 = time.perf_counter()
    written = (tmp_path / "out.jsonl").read_text()
    calls = []
    original = RewardModelSource.score
    monkeypatch.setattr(RewardModelSource, "score", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    second = annotate(config)
    t2 = time.perf_counter()
    print(f"annotate: first run {t1 - t0:.3f} s ({first['scored']} scored, "
          f"{first['responses_per_second']} responses/s), second run {t2 - t1:.3f} s (cache hit)")
    assert not first["cache_hit"] and first["scored"] == N_RESPONSES and first["responses_per_second"] > 0
    assert second["cache_hit"] and second["scored"] == 0 and calls == []
    assert (tmp_path / "out.jsonl").read_text() == written  # the same output from the cache
    first_rewards = [g.rewards for g in load_groups(str(tmp_path / "out.jsonl"), format="group")[0]]
    # a changed transform re-applies to the cached rewards: still no scoring
    third = annotate(config | {"transform": "none"})
    assert third["cache_hit"] and calls == []
    # a changed data file recomputes
    write_jsonl(data, GROUPS + [{"prompt": "tell moon", "responses": ["good", "bad"]}])
    fourth = annotate(config)
    assert not fourth["cache_hit"] and fourth["scored"] == N_RESPONSES + 2 and calls == [1]
    # a changed model recomputes
    write_jsonl(data, GROUPS)
    model = load_reward_model(env / "rm")
    with torch.no_grad():
        model.score.weight.mul_(-1.0)
    model.save_pretrained(tmp_path / "rm2")
    for f in ("tokenizer.json", "tokenizer_config.json", "reward_training.json"):
        (tmp_path / "rm2" / f).write_bytes((env / "rm" / f).read_bytes())
    fifth = annotate(config | {"source": {"type": "reward_model", "path": str(tmp_path / "rm2")}})
    assert not fifth["cache_hit"]
    flipped = [g.rewards for g in load_groups(str(tmp_path / "out.jsonl"), format="group")[0]]
    assert np.allclose(np.concatenate(flipped), -np.concatenate(first_rewards), atol=1e-5)


def test_output_groups_scores_and_sidecar(env, tmp_path):
    data = write_jsonl(tmp_path / "groups.jsonl", [g | {"labels": [1] + [0] * (len(g["responses"]) - 1)}
                                                   for g in GROUPS])
    out = tmp_path / "annotated.jsonl"
    summary = annotate({"data": str(data), "output": str(out), "progress": False, "transform": "sigmoid",
                        "source": {"type": "reward_model", "path": str(env / "rm")}})
    groups, _ = load_groups(str(out), format="group")
    assert [g.k for g in groups] == [len(g["responses"]) for g in GROUPS]
    rewards = np.concatenate([g.rewards for g in groups])
    scores = np.concatenate([g.scores for g in groups])
    assert scores == pytest.approx(sigmoid(rewards))
    assert groups[0].labels == [1, 0]  # fields this run does not write are kept
    stats = summary["statistics"]["rewards"]
    assert stats["mean"] == pytest.approx(rewards.mean()) and stats["max"] == pytest.approx(rewards.max())
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["transform"]["kind"] == "sigmoid" and sidecar["cache_key"]
    assert summary["statistics"]["scores"]["min"] >= 0 and summary["statistics"]["scores"]["max"] <= 1


def test_ensemble_members_and_standardize_statistics(env, tmp_path):
    data = write_jsonl(tmp_path / "groups.jsonl", GROUPS)
    out = tmp_path / "ens.jsonl"
    summary = annotate({"data": str(data), "output": str(out), "progress": False,
                        "source": {"type": "ensemble", "path": str(env / "ens")}})
    groups, _ = load_groups(str(out), format="group")
    members = np.array([np.concatenate([g.reward_members[j] for g in groups]) for j in range(2)])
    rewards = np.concatenate([g.rewards for g in groups])
    assert members.shape == (2, N_RESPONSES)
    assert rewards == pytest.approx(members.mean(axis=0))
    assert set(summary["statistics"]["members"]) == {"member_0", "member_1"}
    # standardize (target rewards): each member z-scored with its own statistics, stored in the sidecar
    annotate({"data": str(data), "output": str(out), "progress": False, "transform": "standardize",
              "source": {"type": "ensemble", "path": str(env / "ens")}})
    groups, _ = load_groups(str(out), format="group")
    z = np.array([np.concatenate([g.reward_members[j] for g in groups]) for j in range(2)])
    stats = json.loads(sidecar_path(out).read_text())["transform"]["statistics"]["members"]
    for j in range(2):
        assert stats[j] == pytest.approx({"mean": members[j].mean(), "std": members[j].std()})
        assert z[j] == pytest.approx((members[j] - members[j].mean()) / members[j].std())
    assert np.concatenate([g.meta["raw_rewards"] for g in groups]) == pytest.approx(rewards)


def test_rule_source_counter_and_minmax(env, tmp_path, rules):
    data = write_jsonl(tmp_path / "groups.jsonl", GROUPS)
    config = {"data": str(data), "output": str(tmp_path / "rule.jsonl"), "progress": False,
              "source": {"type": "rule", "function": "annot_rules:length"},
              "transform": {"kind": "minmax", "range": [0, 10]}}
    annotate(config)
    assert len(rules.CALLS) == N_RESPONSES
    second = annotate(config)
    assert second["cache_hit"] and len(rules.CALLS) == N_RESPONSES  # nothing called again
    groups, _ = load_groups(str(tmp_path / "rule.jsonl"), format="group")
    assert groups[0].rewards == [9.0, 8.0] and groups[0].scores == pytest.approx([0.9, 0.8])
    # a reward outside the declared minmax range names its (first) group and response: lengths 9 are
    # groups 0, 2 and 3 (responses 0, 0 and 1)
    with pytest.raises(DataError, match=r"row 0, field 'responses\[0\]'.*outside the declared minmax range"
                                        r" \[0.0, 8.5\] \(3 value"):
        annotate(config | {"transform": {"kind": "minmax", "range": [0, 8.5]}})


def test_nan_names_group_and_response_and_is_not_cached(env, tmp_path, rules):
    data = write_jsonl(tmp_path / "groups.jsonl", GROUPS)
    config = {"data": str(data), "output": str(tmp_path / "nan.jsonl"), "progress": False,
              "source": {"type": "rule", "function": "annot_rules:broken"}}
    with pytest.raises(DataError, match=r"row 1, field 'responses\[1\]'.*returned nan"):
        annotate(config)
    assert not (tmp_path / "nan.jsonl").exists()
    assert not list((tmp_path / "nan.jsonl.cache").glob("*.npy"))


def test_imported_scores_with_declared_range(tmp_path):
    rows = [{"prompt": "p1", "responses": ["a", "b"], "rewards": [8.0, 2.0]},
            {"prompt": "p2", "responses": ["c", "d"], "rewards": [10.0, 1.0]}]
    data = write_jsonl(tmp_path / "rated.jsonl", rows)
    out = tmp_path / "imported.jsonl"
    annotate({"data": str(data), "output": str(out), "progress": False, "transform": "minmax",
              "source": {"type": "imported", "column": "rewards", "range": [1, 10]}})
    groups, _ = load_groups(str(out), format="group")
    assert groups[1].scores == pytest.approx([1.0, 0.0]) and groups[0].scores == pytest.approx([7 / 9, 1 / 9])
    assert groups[0].rewards == [8.0, 2.0]
    with pytest.raises(DataError, match=r"row 1, field 'rewards\[0\]'.*outside the declared range"):
        annotate({"data": str(data), "output": str(out), "progress": False,
                  "source": {"type": "imported", "column": "rewards", "range": [1, 9]}})
    # a scores column: the loader maps it from its declared range into [0, 1] (UltraFeedback-like 1..10)
    rated = write_jsonl(tmp_path / "scored.jsonl", [{"prompt": "p", "responses": ["a", "b"], "scores": [10, 5.5]}])
    annotate({"data": str(rated), "output": str(out), "progress": False,
              "source": {"type": "imported", "column": "scores", "range": [1, 10]}})
    groups, _ = load_groups(str(out), format="group")
    assert groups[0].rewards == pytest.approx([1.0, 0.5])


def test_config_errors(env, tmp_path):
    data = write_jsonl(tmp_path / "groups.jsonl", GROUPS)
    base = {"data": str(data), "output": str(tmp_path / "o.jsonl"), "progress": False,
            "source": {"type": "reward_model", "path": str(env / "rm")}}
    with pytest.raises(ConfigError, match="no reward source"):
        annotate(base | {"source": None})
    with pytest.raises(ConfigError, match="does not exist"):
        annotate(base | {"data": str(tmp_path / "missing.jsonl")})
    with pytest.raises(ConfigError, match="unknown annotate field"):
        annotate(base | {"transfrom": "sigmoid"})
    with pytest.raises(ConfigError, match="declared range"):
        annotate(base | {"transform": "minmax"})
    with pytest.raises(ConfigError, match="must differ"):
        annotate(base | {"output": str(data)})


def test_cli_annotate_twice(env, tmp_path, capsys):
    data = write_jsonl(tmp_path / "groups.jsonl", GROUPS)
    config = tmp_path / "annotate.yaml"
    config.write_text(yaml.safe_dump({"data": str(data), "output": str(tmp_path / "cli.jsonl"), "progress": False,
                                      "source": {"type": "reward_model", "path": str(env / "rm")}}))
    assert cli.main(["annotate", "--config", str(config), "--transform", "sigmoid"]) == 0
    first = capsys.readouterr().out
    assert "responses/s" in first and "rewards     mean" in first and "scores" in first
    assert cli.main(["annotate", "--config", str(config), "--transform", "sigmoid"]) == 0
    assert "cache hit: nothing scored" in capsys.readouterr().out
    assert cli.main(["annotate", "--config", str(config), "--source.type", "nope"]) == 2
    assert "unknown reward source type" in capsys.readouterr().err
