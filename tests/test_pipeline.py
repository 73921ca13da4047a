"""The papers' pipeline on the tiny example: reward model -> annotate -> align with reward objectives."""

import json
import math
from pathlib import Path

import pytest

from rewardalign.data import load_groups
from rewardalign.modeling.tiny import save_tiny
from rewardalign.rewards.annotate import run_annotate as annotate
from rewardalign.train.align import run_align
from rewardalign.train.reward_model import run_train_rm as train_reward_model

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "examples/tiny/data/pairs.jsonl"


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    rows = [json.loads(line) for line in open(PAIRS)]
    model = save_tiny([r["prompt"] + r["chosen"] + r["rejected"] for r in rows], root / "model",
                      vocab_size=128, hidden_size=32, num_layers=1, num_heads=2)
    train_reward_model({
        "model": str(model), "data": str(PAIRS), "format": "pairs", "kind": "bt", "eval_fraction": 0.1,
        "max_length": 32, "output_dir": str(root / "rm"), "max_steps": 4, "learning_rate": 1e-3,
        "per_device_train_batch_size": 16, "report_to": "none", "disable_tqdm": True,
    })
    out = root / "annotated.jsonl"
    summary = annotate({"data": str(PAIRS), "format": "pairs", "output": str(out),
                        "source": {"type": "reward_model", "path": str(root / "rm")}, "transform": "sigmoid",
                        "progress": False})
    assert summary["scored"] == 2 * len(rows)
    return model, out


def test_annotated_groups_carry_rewards_and_scores(annotated):
    _, data = annotated
    groups, drops = load_groups(str(data))
    assert len(drops) == 0 and len(groups) == 240
    for g in groups:
        assert len(g.rewards) == 2 and all(math.isfinite(r) for r in g.rewards)
        assert all(0.0 < s < 1.0 for s in g.scores)
        assert g.scores == pytest.approx([1 / (1 + math.exp(-r)) for r in g.rewards], abs=1e-6)


@pytest.mark.parametrize("objective", ["dro", "spo", "una_score_mse"])
def test_align_trains_on_annotated_data(annotated, tmp_path, objective):
    model, data = annotated
    summary = run_align({
        "model": str(model), "data": str(data), "objective": objective, "max_length": 32,
        "output_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"), "max_steps": 3,
        "per_device_train_batch_size": 8, "learning_rate": 1e-3, "logging_steps": 1, "disable_tqdm": True,
    })
    assert summary["steps"] == 3 and math.isfinite(summary["train_loss"])
    assert (tmp_path / "run" / "model.safetensors").is_file()
