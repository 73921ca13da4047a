"""The guard of every trainer: a non-finite loss or gradient stops training before the optimiser step, naming the
step and the groups of its batch; nothing is saved after the last checkpoint."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardalign.config import TrainingError
from rewardalign.train import align as align_module
from rewardalign.train import sft as sft_module
from rewardalign.train.align import run_align
from rewardalign.train.sft import run_sft

ROOT = Path(__file__).resolve().parents[1]
GROUPS = str(ROOT / "examples/tiny/data/groups.jsonl")


def config(model_dir, out, **overrides):
    return {"model": model_dir, "data": GROUPS, "format": "group", "objective": "dro", "max_length": 24,
            "output_dir": str(out), "cache_dir": str(out.parent / "cache"), "max_steps": 5, "save_steps": 2,
            "per_device_train_batch_size": 4, "learning_rate": 1e-3, "logging_steps": 1, "seed": 0,
            "disable_tqdm": True} | overrides


def poison(monkeypatch, step: int, kind: str) -> list[list[int]]:
    """Make the objective's loss (``kind`` loss) or only its gradient (``kind`` gradient: the forward value stays
    finite) NaN at training step ``step``; returns the group ids of each training batch seen."""
    real = align_module.compute_objective
    batches: list[list[int]] = []

    def objective(name, inputs, **kwargs):
        loss, metrics = real(name, inputs, **kwargs)
        if torch.is_grad_enabled() and inputs.policy_logps.requires_grad:
            batches.append(inputs.group_ids.tolist())
            if len(batches) == step and kind == "loss":
                loss = loss * math.nan
            elif len(batches) == step:  # sqrt(-1) in the branch torch.where does not pick: NaN only backwards
                loss = torch.where(torch.tensor(True), loss, torch.sqrt(loss - loss.detach() - 1.0))
        return loss, metrics

    monkeypatch.setattr(align_module, "compute_objective", objective)
    return batches


@pytest.mark.parametrize("kind, words", [("loss", "the loss is nan"), ("gradient", "a gradient is not finite")])
def test_a_non_finite_loss_or_gradient_stops_the_run(tiny_model_dir, tmp_path, monkeypatch, kind, words):
    batches = poison(monkeypatch, 3, kind)
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as caught:
        run_align(config(tiny_model_dir, out))
    message = str(caught.value)
    assert "step 3 of 5" in message and words in message
    assert f"groups {', '.join(map(str, sorted(batches[2])))} (" in message
    assert not (out / "model.safetensors").exists() and not (out / "summary.json").exists()
    assert not (out / "checkpoint-4").exists()
    saved = load_file(str(out / "checkpoint-2" / "model.safetensors"))  # the last checkpoint is untouched
    assert all(torch.isfinite(v).all() for v in saved.values())


def test_the_guard_covers_every_trainer(tiny_model_dir, tmp_path, monkeypatch):
    """SFT (another subclass of the same base): NaN log-probs at the first step."""
    real = sft_module.batch_logps

    def nan_logps(model, inputs, chunk_size):
        out = real(model, inputs, chunk_size)
        return dataclasses.replace(out, logps=out.logps * math.nan)

    monkeypatch.setattr(sft_module, "batch_logps", nan_logps)
    out = tmp_path / "sft"
    sft = {k: v for k, v in config(tiny_model_dir, out).items() if k not in ("objective", "cache_dir")}
    with pytest.raises(TrainingError, match=r"step 1 of 5: the loss is nan; its batch held the training groups"):
        run_sft(sft)
    assert not (out / "model.safetensors").exists()


def test_a_finite_run_reports_its_own_loss(tiny_model_dir, tmp_path):
    """train_loss is the mean of the logged step losses (not transformers' NaN-filtered figure)."""
    summary = run_align(config(tiny_model_dir, tmp_path / "run", max_steps=3, save_strategy="no"))
    losses = [r["loss"] for r in map(json.loads, open(tmp_path / "run" / "metrics.jsonl")) if "loss" in r]
    assert summary["train_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-5)
