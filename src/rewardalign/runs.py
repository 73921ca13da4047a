"""Run folders: ``TrainingArguments`` from a flat config, atomic output files, the folder's ``manifest.json``,
complete checkpoints, the summary, a timer.

Every output is written atomically (:func:`atomic_path`: a temporary file in the same folder, renamed onto the
name once complete), so a killed process leaves the old file or the new one, never a part of one.

``manifest.json`` records the run that owns the folder (command, id, start, status) and, for every file written
there, which command and run wrote it, when, its size and (up to :data:`HASH_LIMIT` bytes) its SHA-256. A training
run (:class:`RunFolder`) refuses a folder that holds another run's outputs unless ``overwrite_output_dir`` (those
outputs are removed first) or ``resume_from_checkpoint`` (the same run goes on).

No torch or transformers at import time: ``compare`` reads manifests without them.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import yaml

from .config import ConfigError, check_types
from .fingerprint import file_digest

# Our defaults where transformers' differ: nothing reported unless asked, our batches are not dicts of model
# inputs, and log every few steps so tiny runs have curves. The trainers stop on a non-finite loss, so
# transformers' filter of such losses (one more host-device sync per micro-batch) is off.
TRAINING_DEFAULTS: dict[str, Any] = {
    "report_to": "none",
    "remove_unused_columns": False,
    "label_names": [],
    "logging_steps": 5,
    "logging_nan_inf_filter": False,
    "save_strategy": "no",
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "learning_rate": 5e-6,
}


@functools.cache
def training_fields() -> frozenset[str]:
    """The names of transformers ``TrainingArguments`` fields."""
    import dataclasses

    from transformers import TrainingArguments

    return frozenset(f.name for f in dataclasses.fields(TrainingArguments) if f.init)


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
    from transformers import TrainingArguments

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


RENAMED_FIELDS = (("gradient_checkpointing", "activation_checkpointing"),
                  ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"))
"""TrainingArguments fields transformers renamed (old, new): 5.21 renamed gradient checkpointing to activation
checkpointing and warns on the old name."""


def installed_name(name: str) -> str:
    """The name the installed transformers gives a :data:`RENAMED_FIELDS` field (either name), else ``name``."""
    for old, new in RENAMED_FIELDS:
        if name in (old, new):
            return new if new in training_fields() else old
    return name


def installed_names(fields: dict[str, Any], what: str) -> dict[str, Any]:
    """``fields`` under the installed transformers' names (:func:`installed_name`), so a config works, without a
    deprecation warning, on either side of a rename; both names of one field given is a ConfigError."""
    for old, new in RENAMED_FIELDS:
        if old in fields and new in fields:
            raise ConfigError(f"{what}: give {new} or {old} (its name before transformers 5.21), not both")
    return {installed_name(k): v for k, v in fields.items()}


def training_arguments(fields: dict[str, Any], what: str) -> Any:
    """``TrainingArguments`` from the config's remaining fields; an unknown field, a value of the wrong type or
    out of range (:func:`check_training_values`) or one transformers refuses is a ConfigError. ``save_steps``
    without ``save_strategy`` means saving every ``save_steps`` steps; a renamed field takes the installed
    transformers' name (:func:`installed_names`)."""
    import torch
    from transformers import TrainingArguments

    fields = installed_names(fields, what)
    unknown = sorted(set(fields) - training_fields())
    if unknown:
        raise ConfigError(
            f"unknown {what} field(s) {unknown}: neither a {what} field nor a transformers TrainingArguments field"
        )
    if "output_dir" not in fields:
        raise ConfigError(f"{what} needs an output_dir (--output_dir runs/NAME)")
    if Path(str(fields["output_dir"])).is_file():
        raise ConfigError(f"{what} output_dir '{fields['output_dir']}' is a file, not a folder")
    values = TRAINING_DEFAULTS | fields
    if "save_steps" in fields and "save_strategy" not in fields:
        values["save_strategy"] = "steps"
    check_training_values(values, what)
    if not torch.cuda.is_available():
        values.setdefault("use_cpu", True)
    try:
        return TrainingArguments(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bad training arguments: {err}") from err


# ---- atomic outputs ---------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_orphans(path: Path) -> None:
    """Remove the temporaries of ``path`` that a killed writer left (POSIX: their process is gone)."""
    if os.name != "posix":
        return
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (by any writer: ``save_file``, ``savefig``, ...); renamed onto
    ``path`` when the block ends, removed when it raises. Temporaries of killed writers are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """``open(path, mode)`` that replaces ``path`` only once the block ends (flushed to disk)."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    """Write ``value`` as JSON to ``path`` atomically."""
    return write_text(path, json.dumps(value, indent=indent, default=str))


# ---- the manifest -----------------------------------------------------------------------------------------------

MANIFEST = "manifest.json"
HASH_LIMIT = 64 << 20
"""Files up to this size get a SHA-256 in the manifest; larger ones (model weights) their size and time only."""
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
RUN_OUTPUTS = ("summary.json", "config.yaml", "metrics.jsonl", "eval.json", "samples.jsonl", "eval_config.yaml",
               "config.json", "adapter_config.json", "model.safetensors", "adapter_model.safetensors")
"""Files that mark a folder as holding a run's outputs (with ``checkpoint-N`` folders), manifest or not."""
MODEL_FILES = ("config.json", "adapter_config.json")


def _now(timestamp: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if timestamp is None else timestamp, timezone.utc).isoformat(
        timespec="seconds")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The folder's manifest (``{}`` when it has none)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); remove it or restore it") from None
    if not isinstance(manifest, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return manifest


def owner_run(folder: str | Path) -> str | None:
    """The id of the training run that owns ``folder`` (None when no run claimed it)."""
    return (read_manifest(folder).get("run") or {}).get("id")


def file_entry(path: Path, command: str, run: str, **extra: Any) -> dict[str, Any]:
    """A manifest entry: who wrote ``path``, when, its size and (small files) its SHA-256."""
    st = path.stat()
    entry: dict[str, Any] = {"command": command, "run": run, "written": _now(st.st_mtime), "bytes": st.st_size}
    if st.st_size <= HASH_LIMIT:
        entry["sha256"] = file_digest(path)
    return entry | extra


def record_files(folder: str | Path, names: list[str], command: str, run: str | None = None,
                 **extra: Any) -> str:
    """Add (or refresh) the manifest entries of files ``names`` (relative to ``folder``), written by ``command``
    in run ``run`` (a new id by default) with ``extra`` fields; returns the run id."""
    folder = Path(folder)
    run = run or new_run_id()
    manifest = read_manifest(folder)
    files = manifest.setdefault("files", {})
    for name in names:
        files[name] = file_entry(folder / name, command, run, **extra)
    write_json(folder / MANIFEST, manifest)
    return run


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def held_outputs(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """The run outputs ``folder`` holds: the files its manifest lists, known output names, checkpoints."""
    if not folder.is_dir():
        return []
    held = {name for name in manifest.get("files", {}) if (folder / name).exists()}
    held |= {name for name in RUN_OUTPUTS if (folder / name).is_file()}
    held |= {p.name for p in folder.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)}
    return sorted(held)


def _remove_outputs(folder: Path, held: list[str]) -> None:
    """Remove the ``held`` outputs and the manifest, then the subfolders they leave empty (an ensemble's members)."""
    for name in held:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    for parent in sorted({(folder / name).parent for name in held}, key=lambda p: len(p.parts), reverse=True):
        if parent != folder and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


class RunFolder:
    """A training run's claim on its ``output_dir`` (``args``: ``TrainingArguments``; see the module docstring).

    Created before any model loads: a folder holding another run's outputs is a ConfigError unless
    ``overwrite`` (they are removed, on the main process) or ``args.resume_from_checkpoint`` (the owner's run goes
    on; another command's folder is refused); a folder that is one of the run's ``inputs`` (the model trained) is
    always refused. :meth:`finish` writes ``config.yaml``, ``summary.json`` and the manifest.
    """

    def __init__(self, args: Any, command: str, overwrite: bool = False, inputs: tuple[str | None, ...] = ()):
        self.path = Path(args.output_dir)
        for source in inputs:
            if source and Path(source).resolve() == self.path.resolve():
                raise ConfigError(f"output_dir {self.path} is the run's input {source}: write the run elsewhere")
        self.command = command
        self.main = bool(args.should_save)
        manifest = read_manifest(self.path)
        owner = manifest.get("run") or {}
        held = held_outputs(self.path, manifest)
        self.run_id = new_run_id()
        self.files: dict[str, Any] = {}
        if held and args.resume_from_checkpoint:
            if owner and owner.get("command") != command:
                raise ConfigError(f"cannot resume a {owner.get('command')} run in {self.path} with {command}")
            self.run_id = owner.get("id", self.run_id)
            self.files = manifest.get("files", {})
        elif held and not overwrite:
            shown = ", ".join(held[:6]) + (", ..." if len(held) > 6 else "")
            who = f" (the {owner.get('command')} run started {owner.get('started')})" if owner else ""
            raise ConfigError(f"output_dir {self.path} holds another run's outputs{who}: {shown}. Pass "
                              f"--overwrite_output_dir true to replace them, --resume_from_checkpoint true to "
                              f"continue that run, or choose another output_dir")
        elif held and self.main:
            _remove_outputs(self.path, held)
        self.started = time.time()
        started = owner.get("started") if self.files else None
        self.owner = {"id": self.run_id, "command": command, "started": started or _now(self.started),
                      "status": "running"}
        if self.main:
            self._write()

    def _write(self) -> None:
        write_json(self.path / MANIFEST, {"run": self.owner, "files": self.files})

    def finish(self, config: dict[str, Any], summary: dict[str, Any]) -> None:
        """Write ``config.yaml`` and ``summary.json``, and the manifest of every file of the folder (files written
        since this run started are this run's; entries of files that are gone are dropped)."""
        write_text(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        write_json(self.path / "summary.json", summary)
        since = self.started - 2.0  # file systems with coarse modification times
        files: dict[str, Any] = {}
        for path in sorted(self.path.rglob("*")):
            rel = path.relative_to(self.path)
            if not path.is_file() or rel.name == MANIFEST or rel.name.endswith(".tmp"):
                continue
            if CHECKPOINT.match(rel.parts[0]) and len(rel.parts) > 1:
                continue  # a checkpoint is one entry: its folder
            name = rel.as_posix()
            old = self.files.get(name)
            files[name] = old if old and path.stat().st_mtime < since else file_entry(path, self.command,
                                                                                      self.run_id)
        for ckpt in sorted(p for p in self.path.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)):
            parts = [p.stat() for p in ckpt.rglob("*") if p.is_file()]
            files[ckpt.name + "/"] = {"command": self.command, "run": self.run_id,
                                      "written": _now(max((s.st_mtime for s in parts), default=None)),
                                      "bytes": sum(s.st_size for s in parts), "files": len(parts)}
        self.files = files
        self.owner |= {"status": "complete", "finished": _now()}
        self._write()


# ---- checkpoints ------------------------------------------------------------------------------------------------


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``checkpoint-N`` folder ``path`` cannot be resumed from, or None. A save writes ``trainer_state.json``
    last, so a save that was interrupted leaves it missing or cut short."""
    path = Path(path)
    state_file = path / "trainer_state.json"
    if not path.is_dir():
        return "it is not a folder"
    if not state_file.is_file():
        return "it has no trainer_state.json (a save was interrupted)"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "its trainer_state.json is cut short (a save was interrupted)"
    match = CHECKPOINT.match(path.name)
    if match and state.get("global_step") != int(match.group(1)):
        return f"its trainer_state.json is of step {state.get('global_step')}"
    return None


def resolve_checkpoint(output_dir: str | Path, resume: Any) -> str | None:
    """The checkpoint to resume from: ``resume`` a path (it must be complete), or true for the newest complete
    ``checkpoint-N`` of ``output_dir`` (incomplete ones are skipped with a message); None for a fresh run."""
    if resume in (None, False, "", "false", "False"):
        return None
    if resume not in (True, "true", "True"):
        problem = checkpoint_problem(resume)
        if problem:
            raise ConfigError(f"cannot resume from {resume}: {problem}")
        return str(resume)
    folder = Path(output_dir)
    found = sorted((int(m.group(1)), p) for p in (folder.iterdir() if folder.is_dir() else [])
                   if (m := CHECKPOINT.match(p.name)) and p.is_dir())
    for _, path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path)
        print(f"resume: skipping {path}: {problem}", file=sys.stderr)
    raise ConfigError(f"resume_from_checkpoint: no complete checkpoint-N folder in {folder}")


# ---- summaries and time -----------------------------------------------------------------------------------------


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
