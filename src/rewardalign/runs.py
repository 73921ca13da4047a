"""Run folders: ``TrainingArguments`` from a flat config, ``metrics.jsonl``, ``config.yaml`` and ``summary.json``,
and a timer."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import TrainerCallback, TrainingArguments

from .config import ConfigError

TRAINING_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}

# Our defaults where transformers' differ: nothing reported unless asked, our batches are not dicts of model
# inputs, and log every few steps so tiny runs have curves.
TRAINING_DEFAULTS: dict[str, Any] = {
    "report_to": "none",
    "remove_unused_columns": False,
    "label_names": [],
    "logging_steps": 5,
    "save_strategy": "no",
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "learning_rate": 5e-6,
}


def training_arguments(fields: dict[str, Any], what: str) -> TrainingArguments:
    """``TrainingArguments`` from the config's remaining fields; an unknown field is a ConfigError."""
    unknown = sorted(set(fields) - TRAINING_FIELDS)
    if unknown:
        raise ConfigError(
            f"unknown {what} field(s) {unknown}: neither a {what} field nor a transformers TrainingArguments field"
        )
    if "output_dir" not in fields:
        raise ConfigError(f"{what} needs an output_dir (--output_dir runs/NAME)")
    values = TRAINING_DEFAULTS | fields
    if not torch.cuda.is_available():
        values.setdefault("use_cpu", True)
    try:
        return TrainingArguments(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bad training arguments: {err}") from err


class JsonlMetrics(TrainerCallback):
    """Appends every log of the trainer to ``metrics.jsonl`` in the run folder. A fresh run starts the file
    anew; a run resumed at step N keeps the lines up to step N."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if state.global_step > 0 and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines()
                    if line and json.loads(line).get("step", 0) <= state.global_step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def write_run_files(output_dir: str | Path, config: dict[str, Any], summary: dict[str, Any]) -> None:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))


def print_summary(title: str, summary: dict[str, Any]) -> None:
    print(f"\n== {title} ==")
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
        print(f"{key:>22}: {value}")


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
