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

from .config import ConfigError, check_types

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


# Values transformers accepts at construction and fails on only once a model and data are loaded (or never).
VALUE_CHECKS: dict[str, tuple[Any, str]] = {
    "per_device_train_batch_size": (lambda v: v >= 1, ">= 1"),
    "per_device_eval_batch_size": (lambda v: v >= 1, ">= 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, ">= 1"),
    "max_steps": (lambda v: v > 0 or v == -1, "> 0 (or -1: num_train_epochs decides)"),
    "num_train_epochs": (lambda v: v > 0, "> 0"),
    "learning_rate": (lambda v: v >= 0, ">= 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "max_grad_norm": (lambda v: v >= 0, ">= 0"),
    "warmup_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "save_steps": (lambda v: v > 0, "> 0"),
    "eval_steps": (lambda v: v > 0, "> 0"),
    "logging_steps": (lambda v: v > 0, "> 0"),
    "save_total_limit": (lambda v: v >= 1, ">= 1"),
    "seed": (lambda v: 0 <= v < 2**32, "in [0, 2^32)"),
    "data_seed": (lambda v: 0 <= v < 2**32, "in [0, 2^32)"),
    "dataloader_num_workers": (lambda v: v >= 0, ">= 0"),
}
REPORT_PACKAGES = {"tensorboard": '-e ".[tracking]"  (or: pip install "rewardalign[tracking]")',
                   "azure_ml": "azureml-core", "flyte": "flytekitplugins-deck-standard"}
"""What to install for a ``report_to`` integration; any other is the pip package of its own name."""


def check_training_values(fields: dict[str, Any], what: str) -> None:
    """The types (:func:`~rewardalign.config.check_types`; ``resume_from_checkpoint`` may also be true, the
    latest checkpoint) and ranges (:data:`VALUE_CHECKS`) of TrainingArguments values, and that every
    ``report_to`` integration is known and installed (:func:`check_report_to`); a ConfigError names the field."""
    check_types(TrainingArguments, {k: v for k, v in fields.items() if k != "resume_from_checkpoint"}, what)
    for name, value in fields.items():
        check = VALUE_CHECKS.get(name)
        if check is not None and value is not None and not check[0](value):
            raise ConfigError(f"{what} field {name} must be {check[1]}, got {value!r}")
    check_report_to(fields.get("report_to"))


def check_report_to(report_to: Any) -> None:
    """Each ``report_to`` integration must be one transformers knows and whose package is installed."""
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    available = set(get_available_reporting_integrations())
    for name in names:
        if name in ("none", "all"):
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            raise ConfigError(f"report_to {name!r} is not a transformers integration; choose from none, all, "
                              f"{', '.join(INTEGRATION_TO_CALLBACK)}")
        if name not in available:
            package = REPORT_PACKAGES.get(name, name)
            raise ConfigError(f"report_to {name} needs its package: pip install {package}")


def training_arguments(fields: dict[str, Any], what: str) -> TrainingArguments:
    """``TrainingArguments`` from the config's remaining fields; an unknown field, a value of the wrong type or
    out of range (:func:`check_training_values`) or one transformers refuses is a ConfigError."""
    unknown = sorted(set(fields) - TRAINING_FIELDS)
    if unknown:
        raise ConfigError(
            f"unknown {what} field(s) {unknown}: neither a {what} field nor a transformers TrainingArguments field"
        )
    if "output_dir" not in fields:
        raise ConfigError(f"{what} needs an output_dir (--output_dir runs/NAME)")
    if Path(str(fields["output_dir"])).is_file():
        raise ConfigError(f"{what} output_dir '{fields['output_dir']}' is a file, not a folder")
    values = TRAINING_DEFAULTS | fields
    check_training_values(values, what)
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
