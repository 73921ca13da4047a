"""Any transformers sequence-classification reward model, built from a config (a tiny LlamaConfig with
num_labels = 1) and saved by transformers alone, with a tokenizer of its own (not the policy's): it annotates a
data set, judges an evaluation and rewards online training."""

import json

import numpy as np
import pytest
import torch

from rewardalign.data import load_groups
from rewardalign.evaluate.evaluator import evaluate_model
from rewardalign.modeling.generation import SamplingConfig
from rewardalign.modeling.tiny import build_tiny_reward_model, build_tiny_tokenizer, save_tiny
from rewardalign.rewards.annotate import run_annotate
from rewardalign.rewards.sources import build_source
from rewardalign.train.online import run_online

POLICY_TEXTS = ["add 3 and 4 = 7. add 12 and 9 = 21. hello world, what is the answer?"] * 20
RM_TEXTS = ["a different corpus: numbers 0 1 2 3 4 5 6 7 8 9, words good bad answer"] * 20
PROMPTS = ["add 3 and 4 =", "add 12 and 9 =", "hello world, what is the answer?"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("standard_rm")
    policy = save_tiny(POLICY_TEXTS, root / "policy", vocab_size=300, hidden_size=32, num_layers=1, num_heads=2)
    rm_tok = build_tiny_tokenizer(RM_TEXTS, vocab_size=280)
    model = build_tiny_reward_model(rm_tok, hidden_size=32, num_layers=1, num_heads=2, seed=5)
    model.save_pretrained(root / "rm")
    rm_tok.save_pretrained(root / "rm")
    return root, policy, root / "rm"


def test_annotates(dirs, tmp_path):
    root, _, rm = dirs
    data = tmp_path / "groups.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "responses": [" 7", " 21", " yes"]}) + "\n" for p in PROMPTS))
    summary = run_annotate({"data": str(data), "output": str(tmp_path / "out.jsonl"), "source": f"rm:{rm}",
                            "progress": False})
    assert summary["scored"] == 9
    groups, _ = load_groups(str(tmp_path / "out.jsonl"), format="group")
    annotated = np.array([g.rewards for g in groups]).ravel()
    expected = build_source(str(rm)).score([p for p in PROMPTS for _ in range(3)], [" 7", " 21", " yes"] * 3)
    assert annotated == pytest.approx(expected, abs=1e-6)
    assert np.ptp(annotated) > 0


def test_judges_an_evaluation(dirs):
    _, policy, rm = dirs
    result = evaluate_model(str(policy), PROMPTS, f"rm:{rm}", sampling=SamplingConfig(n_samples=2, max_new_tokens=6))
    rewards = [rec["reward"] for rec in result["samples"]]
    responses = [rec["response"] for rec in result["samples"]]
    prompts = [rec["prompt"] for rec in result["samples"]]
    assert result["judge"] == f"rm:{rm}"
    assert rewards == pytest.approx(build_source(str(rm)).score(prompts, responses).tolist(), abs=1e-6)
    assert result["reward_mean"] == pytest.approx(np.mean(rewards))


def test_rewards_online_training(dirs, tmp_path):
    _, policy, rm = dirs
    summary = run_online({"model": str(policy), "prompts": "gym:arithmetic", "max_prompts": 8, "reward": f"rm:{rm}",
                          "transform": "sigmoid", "n_samples": 2, "max_new_tokens": 6, "sampler": "hf",
                          "output_dir": str(tmp_path / "online"), "max_steps": 2, "per_device_train_batch_size": 2,
                          "logging_steps": 1, "disable_tqdm": True})
    assert summary["steps"] == 2 and summary["reward"] == f"rm:{rm}"
    logged = [json.loads(line) for line in (tmp_path / "online" / "metrics.jsonl").read_text().splitlines()]
    rewards = [x["objective/reward"] for x in logged if "objective/reward" in x]
    assert len(rewards) == 2 and all(np.isfinite(rewards))
