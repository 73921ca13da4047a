"""``report_to``: TensorBoard works end to end on the tiny example (the ``tracking`` extra); an integration whose
package is missing is one line naming what to install, before any model loads."""

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers.integrations import integration_utils

from rewardalign import cli
from rewardalign.config import ConfigError
from rewardalign.modeling.tiny import save_tiny
from rewardalign.runs import check_report_to

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ROOT / "examples/tiny/data/groups.jsonl"


def test_tensorboard_logs_the_tiny_example(tmp_path, capsys):
    texts = [json.loads(line)["prompt"] + " 12 34 5 6 7 8 9 0" for line in GROUPS.read_text().splitlines()]
    model = save_tiny(texts, tmp_path / "model", vocab_size=128, hidden_size=32, num_layers=1, num_heads=2)
    code = cli.main(["align", "--config", str(ROOT / "examples/tiny/align.yaml"), "--model", str(model),
                     "--data", str(GROUPS), "--output_dir", str(tmp_path / "run"), "--cache_dir", str(tmp_path / "c"),
                     "--max_steps", "2", "--logging_steps", "1", "--eval_strategy", "no", "--disable_tqdm", "true",
                     "--report_to", "tensorboard"])
    assert code == 0, capsys.readouterr().err
    (log_dir,) = {p.parent for p in (tmp_path / "run").rglob("events.out.tfevents.*")}  # output_dir/runs/<date>
    logged = EventAccumulator(str(log_dir)).Reload()
    losses = [e.value for e in logged.Scalars("train/loss")]
    assert [e.step for e in logged.Scalars("train/loss")] == [1, 2] and all(v == v for v in losses)
    assert "train/rewards/accuracies" in logged.Tags()["scalars"]


def test_a_missing_integration_names_what_to_install(monkeypatch):
    monkeypatch.setattr(integration_utils, "get_available_reporting_integrations", lambda: [])
    with pytest.raises(ConfigError, match=r'report_to tensorboard needs its package: pip install -e "\.\[tracking\]"'):
        check_report_to(["tensorboard"])
    with pytest.raises(ConfigError, match="report_to wandb needs its package: pip install wandb"):
        check_report_to("wandb")
    check_report_to("none")
    check_report_to(["all"])
