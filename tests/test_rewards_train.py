"""train-rm: bt learns a learnable preference, the oracle's NLL term lowers the chosen NLL, ensembles save and
load, the output reloads in plain transformers, checkpoints and resume are Trainer's, bad configs fail before any
model is loaded. Tiny Llama (hidden 32, 1 layer), CPU, a few seconds each."""

import json
import random
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from transformers import EarlyStoppingCallback

from rewardalign import cli
from rewardalign.config import ConfigError
from rewardalign.data.schema import Group
from rewardalign.data.tokenize import TokenizeConfig, tokenize_group, tokenize_groups
from rewardalign.modeling.loading import load_tokenizer
from rewardalign.modeling.tiny import save_tiny
from rewardalign.rewards.model_sources import EnsembleSource, RewardModelSource
from rewardalign.rewards.models import (
    OracleRewardModel,
    check_reward_model_dir,
    ensemble_members,
    load_reward_model,
    read_training_info,
)
from rewardalign.rewards.pairs import build_pairs
from rewardalign.train.reward_model import evaluate_pairs
from rewardalign.train.reward_model import run_train_rm as train_reward_model

WORDS = "red blue green fast slow big small cat dog sun moon tree".split()


def synthetic_pairs(n: int, seed: int) -> list[dict]:
    """Chosen responses carry the word "good" where the rejected carry "bad", amid random filler words, so the
    preference is learnable from the text and held-out prompts are new word combinations."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = "tell " + " ".join(rng.sample(WORDS, 2))
        a, b = rng.sample(WORDS, 2)
        rows.append({"prompt": prompt, "chosen": f"{a} good {b}", "rejected": f"{a} bad {b}"})
    return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    rows = synthetic_pairs(160, seed=0)
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = [f"{r['prompt']} {r['chosen']} {r['rejected']}" for r in rows]
    save_tiny(texts, root / "tiny", vocab_size=300, hidden_size=32, num_layers=1, num_heads=2)
    return root


def base_config(root, **extra) -> dict:
    return {
        "model": str(root / "tiny"), "data": str(root / "pairs.jsonl"), "output_dir": str(root / "out"),
        "eval_fraction": 0.2, "max_length": 32, "num_train_epochs": 3, "per_device_train_batch_size": 16,
        "learning_rate": 3e-3, "logging_steps": 4, "disable_tqdm": True, "seed": 0, **extra,
    }


def test_bt_cli_reaches_high_held_out_accuracy(setup, capsys):
    config = base_config(setup, output_dir=str(setup / "bt"), num_train_epochs=2)
    (setup / "rm.yaml").write_text(yaml.safe_dump(config))
    assert cli.main(["train-rm", "--config", str(setup / "rm.yaml"), "--kind", "bt"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((setup / "bt" / "summary.json").read_text())
    accuracy = summary["final_eval"]["eval_accuracy"]
    print(f"bt held-out accuracy {accuracy:.3f} on {summary['eval_pairs']} pairs, "
          f"BT loss {summary['final_eval']['eval_bt_loss']:.4f}")
    assert summary["eval_pairs"] >= 20
    assert accuracy >= 0.8
    assert summary["final_eval"]["eval_bt_loss"] < np.log(2)
    assert "held-out" in printed and "accuracy" in printed
    # metrics: JSON lines with training and held-out figures
    lines = [json.loads(x) for x in (setup / "bt" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_accuracy" in x for x in lines) and any("bt_loss" in x and "loss" in x for x in lines)
    # a standard sequence-classification directory, the training metadata beside it
    config = json.loads((setup / "bt" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and len(config["id2label"]) == 1
    assert config["pad_token_id"] == load_tokenizer(setup / "tiny").pad_token_id
    meta = read_training_info(setup / "bt")
    assert meta["kind"] == "bt" and meta["max_length"] == 32 and meta["eval"]["eval_accuracy"] == accuracy


PLAIN_TRANSFORMERS = textwrap.dedent("""
    import json, sys
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path, texts = sys.argv[1], json.loads(sys.argv[2])
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    batch = tokenizer([t + tokenizer.eos_token for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        rewards = model(**batch).logits[:, 0]
    print(json.dumps({"rewards": rewards.tolist(), "imported": sorted(m for m in sys.modules if "rewardalign" in m)}))
""")


def test_train_rm_output_reloads_in_plain_transformers(setup):
    """Another process with transformers alone (no rewardalign module imported) loads the bt model and its tokenizer
    and gives the rewards rewardalign's source gives, on a padded batch."""
    train_reward_model(base_config(setup, output_dir=str(setup / "plain"), max_steps=6, num_train_epochs=1))
    prompts = ["tell red cat", "tell sun moon", "tell big dog"]
    responses = [" sun good tree", " sun bad tree", " cat good dog and more words"]
    done = subprocess.run([sys.executable, "-c", PLAIN_TRANSFORMERS, str(setup / "plain"),
                           json.dumps([p + r for p, r in zip(prompts, responses)])],
                          capture_output=True, text=True, check=True, env={"PATH": "", "OMP_NUM_THREADS": "1"})
    plain = json.loads(done.stdout.strip().splitlines()[-1])
    assert plain["imported"] == []
    ours = RewardModelSource(setup / "plain").score(prompts, responses)
    assert plain["rewards"] == pytest.approx(ours.tolist(), abs=1e-5)
    assert np.ptp(ours) > 0


def _chosen_nll(setup, output: str) -> float:
    tok = load_tokenizer(setup / output)
    from rewardalign.data import load_groups

    groups, _ = load_groups(str(setup / "pairs.jsonl"))
    tg, _ = tokenize_groups(groups, tok, TokenizeConfig(max_length=32))
    pairs, _ = build_pairs(tg)
    # the tiny model's LM head is tied to its input embeddings, which the saved classifier keeps
    model = OracleRewardModel(load_reward_model(setup / output))
    return evaluate_pairs(model, pairs, tok.pad_token_id, with_nll=True)["nll_chosen"]


def test_oracle_nll_term_lowers_chosen_nll(setup):
    """Same seed, same steps: the oracle (0.9 * BT + 0.1 * NLL) ends with a lower chosen NLL than bt alone,
    and still ranks the held-out pairs."""
    common = {"max_steps": 20, "num_train_epochs": 1}
    bt = train_reward_model(base_config(setup, output_dir=str(setup / "nll-bt"), kind="bt", **common))
    oracle = train_reward_model(base_config(setup, output_dir=str(setup / "nll-oracle"), kind="oracle",
                                            oracle_alpha=0.1, **common))
    assert bt["steps"] == oracle["steps"] == 20
    nll_bt, nll_oracle = _chosen_nll(setup, "nll-bt"), _chosen_nll(setup, "nll-oracle")
    print(f"mean chosen NLL after 20 steps: bt {nll_bt:.3f}, oracle {nll_oracle:.3f}; "
          f"held-out accuracy bt {bt['final_eval']['eval_accuracy']:.3f}, "
          f"oracle {oracle['final_eval']['eval_accuracy']:.3f}")
    assert nll_oracle < nll_bt - 0.5
    assert "eval_nll_chosen" in oracle["final_eval"]
    assert oracle["final_eval"]["eval_accuracy"] >= 0.8
    assert read_training_info(setup / "nll-oracle")["kind"] == "oracle"
    assert json.loads((setup / "nll-oracle" / "config.json").read_text())["architectures"] == [
        "LlamaForSequenceClassification"]


def test_ensemble_members_saved_and_loaded(setup):
    out = setup / "ens"
    summary = train_reward_model(base_config(setup, output_dir=str(out), kind="ensemble", members=2,
                                             bootstrap=True, max_steps=8, num_train_epochs=1))
    members = ensemble_members(out)
    assert [p.name for p in members] == ["member_0", "member_1"]
    manifest = json.loads((out / "ensemble.json").read_text())
    assert manifest["seeds"] == [0, 1] and manifest["bootstrap"] is True
    assert len(summary["member_evals"]) == 2 and "eval_accuracy" in summary["final_eval"]
    # the ensemble source: one column per member, and the members differ (seeds, bootstrap)
    source = EnsembleSource(out)
    assert source.columns == ["member_0", "member_1"]
    prompts = ["tell red cat", "tell sun moon", "tell big dog"]
    responses = ["sun good tree", "sun bad tree", "cat good dog"]
    values = source.score(prompts, responses)
    assert values.shape == (3, 2)
    assert not np.allclose(values[:, 0], values[:, 1])
    assert np.allclose(RewardModelSource(members[1]).score(prompts, responses), values[:, 1], atol=1e-6)
    assert read_training_info(members[1])["kind"] == "bt"


def _mean_logp_by_hand(path, prompt: str, response: str) -> float:
    """(1/|y|) sum_t log p(y_t | x, y_<t) of the causal LM at ``path``, from its full logits (plain transformers)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    item = tokenize_group(Group(prompt, [response]), load_tokenizer(path), TokenizeConfig(max_length=32), 0)
    ids = torch.tensor([item.prompt_ids + item.response_ids[0]])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0].log_softmax(-1)
    n = len(item.response_ids[0])
    start = len(item.prompt_ids)
    return sum(float(logp[t - 1, ids[0, t]]) for t in range(start, start + n)) / n


def test_likelihood_reward_model_learns_and_scores_its_mean_log_likelihood(setup):
    """kind likelihood: BT on r = beta / |y| * log pi(y|x) trains the causal LM itself, saved as a plain causal LM
    with its beta and offset (the held-out mean reward) beside it; the reward source gives
    beta * mean token log-prob - offset, computed here from the model's full logits."""
    out = setup / "likelihood"
    summary = train_reward_model(base_config(setup, output_dir=str(out), kind="likelihood", likelihood_beta=2.0,
                                             learning_rate=3e-3, num_train_epochs=2))
    print(f"likelihood held-out accuracy {summary['final_eval']['eval_accuracy']:.3f}")
    assert summary["final_eval"]["eval_accuracy"] >= 0.8
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    meta = read_training_info(out)
    assert meta["kind"] == "likelihood" and meta["likelihood_beta"] == 2.0
    assert meta["offset"] == summary["final_eval"]["eval_reward_mean"] < 0
    card = (out / "README.md").read_text()  # the hub's card: a text-generation model, its beta among the settings
    assert "pipeline_tag: text-generation" in card and "likelihood_beta" in card and "SimPO" in card
    prompts, responses = ["tell red cat", "tell sun moon"], [" sun good tree", " sun bad tree and more"]
    ours = RewardModelSource(out).score(prompts, responses)
    by_hand = [2.0 * _mean_logp_by_hand(out, p, r) - meta["offset"] for p, r in zip(prompts, responses)]
    assert ours.tolist() == pytest.approx(by_hand, abs=1e-4)
    assert ours[0] > ours[1]  # "good" is the preferred word
    # a causal LM without that metadata is no reward model
    with pytest.raises(ConfigError, match="not a reward model"):
        check_reward_model_dir(setup / "tiny")
    # metadata edited by hand without its beta: one clear error, not a KeyError at scoring
    broken = setup / "likelihood-broken"
    shutil.copytree(out, broken)
    (broken / "reward_training.json").write_text(json.dumps({**meta, "likelihood_beta": None}))
    with pytest.raises(ConfigError, match="needs likelihood_beta > 0"):
        RewardModelSource(broken)


def test_an_ensemble_of_likelihood_reward_models(setup):
    """member_kind likelihood: each member a causal LM with its own offset; the ensemble's held-out figure is its
    members' mean reward, and the ensemble source's columns are the members' own rewards."""
    out = setup / "likelihood-ens"
    summary = train_reward_model(base_config(setup, output_dir=str(out), kind="ensemble", members=2,
                                             member_kind="likelihood", learning_rate=3e-3, max_steps=6,
                                             num_train_epochs=1))
    members = ensemble_members(out)
    assert [read_training_info(m)["kind"] for m in members] == ["likelihood", "likelihood"]
    assert "eval_accuracy" in summary["final_eval"]
    prompts, responses = ["tell red cat", "tell sun moon"], [" sun good tree", " sun bad tree"]
    values = EnsembleSource(out).score(prompts, responses)
    assert values.shape == (2, 2)
    assert np.allclose(RewardModelSource(members[0]).score(prompts, responses), values[:, 0], atol=1e-6)


@pytest.mark.parametrize("kind", ["bt", "oracle", "likelihood"])
def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(setup, kind, stop_at):
    """Checkpoints and resume are Trainer's own: a bt checkpoint is a standard reward-model directory, an oracle
    checkpoint the wrapper's state (with its LM head); both resume onto the uninterrupted trajectory."""
    common = {"kind": kind, "max_steps": 6, "num_train_epochs": 1, "save_strategy": "steps", "save_steps": 3,
              "eval_fraction": 0.0, "per_device_train_batch_size": 8}
    whole, cut = setup / f"whole-{kind}", setup / f"cut-{kind}"
    train_reward_model(base_config(setup, output_dir=str(whole), **common))
    train_reward_model(base_config(setup, output_dir=str(cut), **common), callbacks=[stop_at(3)])
    if kind == "bt":
        assert load_reward_model(cut / "checkpoint-3").config.num_labels == 1
    train_reward_model(base_config(setup, output_dir=str(cut), resume_from_checkpoint=str(cut / "checkpoint-3"),
                                   **common))
    prompts, responses = ["tell red cat", "tell sun moon"], [" sun good tree", " sun bad tree"]
    assert RewardModelSource(cut).score(prompts, responses) == pytest.approx(
        RewardModelSource(whole).score(prompts, responses), abs=1e-5)


def test_bad_config_fails_before_any_model_loads(setup, monkeypatch, capsys):
    import rewardalign.train.reward_model as train_mod

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr(train_mod, "build_reward_model", no_loading)
    monkeypatch.setattr(train_mod, "load_tokenizer", no_loading)
    bad = [
        ({"kind": "gan"}, "kind must be one of"),
        ({"kind": "ensemble", "members": 1}, "members >= 2"),
        ({"oracle_alpha": 2.0}, "oracle_alpha"),
        ({"kind": "likelihood", "center_coefficient": 0.01}, "center_coefficient must be 0"),
        ({"kind": "likelihood", "likelihood_beta": 0}, "likelihood_beta must be > 0"),
        ({"kind": "ensemble", "member_kind": "gan"}, "member_kind must be one of"),
        ({"eval_fraction": 1.0}, "eval_fraction"),
        ({"learning_rat": 1e-3}, "unknown train-rm field"),
        ({"model": str(setup / "missing")}, "missing. does not exist"),
        ({"data": str(setup / "missing.jsonl")}, "does not exist"),
        ({"max_length": 8, "max_prompt_length": 8}, "max_prompt_length"),
        ({"eval_fraction": 0.0, "eval_strategy": "steps"}, "needs held-out pairs"),
        ({"lr_scheduler_type": "sawtooth"}, "bad training arguments"),
    ]
    for change, message in bad:
        with pytest.raises(ConfigError, match=message):
            train_reward_model(base_config(setup) | change)
    config = setup / "bad.yaml"
    config.write_text(yaml.safe_dump(base_config(setup) | {"kind": "gan"}))
    assert cli.main(["train-rm", "--config", str(config)]) == 2
    assert "kind must be one of" in capsys.readouterr().err


def test_early_stopping_keeps_the_best_checkpoint(setup):
    """transformers' EarlyStoppingCallback through run_train_rm(callbacks=...), as the demo's RM stage uses it: the
    saved model is the checkpoint with the best held-out accuracy, not the last one."""
    out = setup / "early"
    summary = train_reward_model(base_config(
        setup, output_dir=str(out), num_train_epochs=6, learning_rate=1e-2, eval_strategy="steps", eval_steps=2,
        save_strategy="steps", save_steps=2, save_only_model=True, save_total_limit=1, load_best_model_at_end=True,
        metric_for_best_model="accuracy"), callbacks=[EarlyStoppingCallback(2)])
    logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    accuracies = [x["eval_accuracy"] for x in logged if "eval_accuracy" in x][:-1]  # the last: the final evaluation
    assert summary["final_eval"]["eval_accuracy"] == max(accuracies)
    assert summary["steps"] < 6 * 8  # 128 training pairs / 16 a step: 8 steps an epoch; it stopped early
