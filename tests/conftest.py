"""Shared fixtures: a tiny tokenizer and causal LM built in-process (no download)."""

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from rewardalign.modeling.tiny import build_tiny_model, build_tiny_tokenizer, save_tiny

GROUPS = str(Path(__file__).resolve().parents[1] / "examples/tiny/data/groups.jsonl")

CORPUS = [
    "add 3 and 4 = 7. add 12 and 9 = 21. Answer: 7 and 8 ok.",
    "The quick brown fox jumps over the lazy dog. hello world, what is the answer?",
    "sort: d a c b -> a b c d. the answer is yes. no, it is not.",
] * 20


@pytest.fixture(scope="session")
def tokenizer():
    return build_tiny_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture()
def model(tokenizer):
    torch.manual_seed(0)
    return build_tiny_model(tokenizer, hidden_size=32, num_layers=2, num_heads=4).float()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny causal LM whose tokenizer knows the tiny example's prompts."""
    texts = [json.loads(line)["prompt"] + " 12 34 5 6 7 8 9 0" for line in open(GROUPS)]
    return str(save_tiny(texts, tmp_path_factory.mktemp("tiny") / "model", vocab_size=128, hidden_size=32,
                         num_layers=1, num_heads=2))


class StopAt(TrainerCallback):
    """Interrupts a run after ``step`` optimiser steps, saving a checkpoint there (for resume tests)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save = True
            control.should_training_stop = True


@pytest.fixture()
def stop_at():
    return StopAt
