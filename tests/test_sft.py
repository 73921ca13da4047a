"""rewardalign sft: loss on response tokens only, a tiny model from scratch, demonstrations from groups."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from rewardalign.config import ConfigError
from rewardalign.data.collate import collate_groups
from rewardalign.data.schema import Group
from rewardalign.data.tokenize import TokenizeConfig, tokenize_groups
from rewardalign.train.sft import SFTTrainer, demonstrations, run_sft

ROOT = Path(__file__).resolve().parents[1]
SFT_DATA = str(ROOT / "examples/tiny/data/sft.jsonl")


def test_sft_loss_is_the_mean_nll_of_response_tokens_only(tokenizer, model):
    groups = [Group("add 3 and 4 =", [" 7"]), Group("hello world, what is the answer?", [" yes it is"])]
    tokenized, _ = tokenize_groups(groups, tokenizer, TokenizeConfig(max_length=64))
    batch = collate_groups(tokenized, tokenizer.pad_token_id)
    loss = SFTTrainer.compute_loss(_bare_sft(), model, batch)
    with torch.no_grad():
        logp = model(input_ids=batch["input_ids"]).logits.log_softmax(-1)
    nll, count = 0.0, 0
    for i, g in enumerate(tokenized):
        p, ids = len(g.prompt_ids), g.prompt_ids + g.response_ids[0]
        for t in range(p, len(ids)):  # response tokens (EOS included), never prompt tokens
            nll -= float(logp[i, t - 1, ids[t]])
            count += 1
    assert float(loss.detach()) == pytest.approx(nll / count, rel=1e-5)


def _bare_sft():
    trainer = SFTTrainer.__new__(SFTTrainer)  # compute_loss alone: no Trainer behind it
    trainer.logprob_chunk_size = 3
    trainer._counts = {}
    return trainer


def test_sft_from_scratch_learns_and_saves_a_loadable_model(tmp_path):
    out = tmp_path / "sft"
    summary = run_sft({
        "model_init": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "vocab_size": 128},
        "data": SFT_DATA, "format": "group", "max_length": 32, "output_dir": str(out), "max_steps": 30,
        "per_device_train_batch_size": 16, "learning_rate": 3e-3, "logging_steps": 5, "seed": 0,
        "disable_tqdm": True,
    })
    assert summary["steps"] == 30 and summary["examples"] == 400
    losses = [json.loads(line)["loss"] for line in open(out / "metrics.jsonl") if '"loss"' in line]
    assert losses[-1] < 0.7 * losses[0], losses
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.config.hidden_size == 32 and (out / "tokenizer.json").is_file()


def test_demonstrations_best_or_all():
    g = Group("p", ["a", "b", "c"], rewards=[0.1, 0.9, 0.5])
    assert [d.responses for d in demonstrations([g], "best")] == [["b"]]
    assert [d.responses for d in demonstrations([g], "all")] == [["a"], ["b"], ["c"]]
    assert demonstrations([Group("p", ["x", "y"])], "best")[0].responses == ["x"]  # a pair: the chosen one
    with pytest.raises(ConfigError, match="responses must be"):
        demonstrations([g], "worst")


def test_model_and_model_init_are_exclusive(tmp_path):
    with pytest.raises(ConfigError, match="either model"):
        run_sft({"model": str(tmp_path), "model_init": {}, "data": SFT_DATA, "output_dir": str(tmp_path)})
