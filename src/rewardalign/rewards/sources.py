"""Reward sources that need no model: a rule (any Python function), a gym task's gold reward, an imported column,
and :func:`build_source`, which turns every way of naming a reward into a :class:`~.base.RewardSource`.

Ways of naming a reward (config fields ``reward``, ``judge``, ``source``):

- a spec string: ``rm:<path>`` (a reward model or ensemble directory, or a reward model's hub repository),
  ``rule:<module>:<function>`` or ``rule:<path/file.py>:<function>``, ``gym:<task>`` (the gold reward of a gym
  task: a built-in name, ``gym:<module>:<Class>`` or ``gym:<path/file.py>:<Class>``), or a bare directory path
  (a reward model);
- a mapping ``{type: reward_model | ensemble | rule | gym | teacher_ratio | imported, ...}``;
- a callable ``fn(prompt, response) -> float`` (a rule), or a source itself.

Rules execute the code they name, like a Python import: only name code you trust.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, from_dict
from ..data.schema import DataError, Group, Text, text_key
from ..fingerprint import code_identity, file_digest
from ..gym import Task, get_task, task_identity
from ..imports import load_object
from .base import BadReward, RewardSource, check_lengths
from .model_sources import (
    EnsembleSource,
    ModelOptions,
    RewardModelSource,
    TeacherRatioSource,
    is_ensemble_dir,
)

# ---- rules ----------------------------------------------------------------------------------------------------


def load_rule(spec: str) -> Callable[..., Any]:
    """The callable named by ``module:function`` or ``path/to/file.py:function`` (dots after the colon reach
    attributes: ``module:Class.method``), through the package's one loader (:func:`rewardalign.imports.load_object`)."""
    obj = load_object(spec, "rule", "function")
    if not callable(obj):
        raise ConfigError(f"rule {spec!r} is not callable")
    return obj


class RuleSource(RewardSource):
    """A Python callable ``fn(prompt, response) -> float``, given as a spec (:func:`load_rule`) or itself. A
    callable with a ``batch(prompts, responses)`` method is called once for all items.

    The fingerprint holds the spec and the rule's code (its source file's content), so editing the rule
    recomputes every cache keyed on it.
    """

    kind = "rule"

    def __init__(self, function: str | Callable[[Text, Text], float], name: str | None = None):
        if callable(function):
            self.fn = function
            self.spec = f"{function.__module__}:{getattr(function, '__qualname__', type(function).__name__)}"
        else:
            self.fn = load_rule(function)
            self.spec = function
        self.rule_name = name or self.spec

    def default_name(self) -> str:
        return f"{self.kind}:{self.rule_name}"

    def _identity(self) -> dict[str, Any]:
        return {"spec": self.spec, **code_identity(self.fn)}

    def score(self, prompts, responses, progress=None) -> np.ndarray:
        check_lengths(prompts, responses)
        batch = getattr(self.fn, "batch", None)
        values = batch(list(prompts), list(responses)) if callable(batch) else [
            self.fn(p, r) for p, r in zip(prompts, responses)]
        values = values.tolist() if hasattr(values, "tolist") else list(values)
        if len(values) != len(prompts):
            raise ValueError(f"rule {self.spec} returned {len(values)} rewards for {len(prompts)} responses")
        out = np.zeros(len(prompts), dtype=np.float64)
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise BadReward(i, f"rule {self.spec} returned {value!r}, not a number")
            out[i] = float(value)
        if progress is not None:
            progress(len(prompts))
        return out


class GymSource(RewardSource):
    """The gold reward of a gym task (:mod:`rewardalign.gym`): ``task.gold_reward(prompt, response)``, in the
    task's ``reward_range``. The task is a built-in name, ``package.module:Class``, ``path/to/file.py:Class`` (see
    :func:`rewardalign.gym.get_task`) or a Task. The fingerprint holds the task's knobs and its code (the content
    of its classes' source files)."""

    kind = "gym"

    def __init__(self, task: Task | str, **task_args: Any):
        self.spec = task if isinstance(task, str) else task.name
        self.task = get_task(task, **task_args) if isinstance(task, str) else task
        self.value_range = tuple(self.task.reward_range)

    def default_name(self) -> str:
        return f"{self.kind}:{self.spec}"

    def _identity(self) -> dict[str, Any]:
        return task_identity(self.task)

    def score(self, prompts, responses, progress=None) -> np.ndarray:
        check_lengths(prompts, responses)
        out = np.asarray([self.task.gold_reward(p, r) for p, r in zip(prompts, responses)], dtype=np.float64)
        if progress is not None:
            progress(len(prompts))
        return out


# ---- imported values ------------------------------------------------------------------------------------------


class ImportedSource(RewardSource):
    """A value already in the data: ``column`` is ``rewards``, ``scores``, ``labels`` or ``meta.KEY`` (a list of
    K numbers per group), with its declared ``range`` [lo, hi] (every value is checked against it).

    The loader maps a ``scores`` column from its declared range into [0, 1] (see ``rewardalign.data``), so for
    ``column: scores`` the range is handed to the loader and the imported values lie in [0, 1].
    Values are looked up by (prompt, response) text, so the source can score any data that holds the column.
    """

    kind = "imported"

    def __init__(self, column: str, value_range: Sequence[float] | None = None, data: str | None = None,
                 format: str | None = None):
        if column not in ("rewards", "scores", "labels") and not column.startswith("meta."):
            raise ConfigError(f"imported column must be rewards, scores, labels or meta.KEY, got {column!r}")
        self.column = column
        self.declared_range = None
        if value_range is not None:
            if len(value_range) != 2 or not float(value_range[0]) < float(value_range[1]):
                raise ConfigError(f"range must be [lo, hi] with lo < hi, got {value_range!r}")
            self.declared_range = (float(value_range[0]), float(value_range[1]))
        if column == "labels":
            self.value_range = (0.0, 1.0)
        elif column == "scores":
            self.value_range = (0.0, 1.0)
        else:
            self.value_range = self.declared_range
        self.data, self.format = data, format
        self.table: dict[tuple[str, str], float] | None = None

    def default_name(self) -> str:
        return f"{self.kind}:{self.column}"

    @property
    def loader_score_range(self) -> tuple[float, float] | None:
        """The ``score_range`` the data loader needs (the declared range of a ``scores`` column)."""
        return self.declared_range if self.column == "scores" else None

    def _identity(self) -> dict[str, Any]:
        data = file_digest(self.data) if self.data and Path(self.data).is_file() else self.data
        return {"column": self.column, "range": self.declared_range, "data": data}

    def _values(self, group: Group, g: int) -> list[float]:
        if self.column.startswith("meta."):
            key = self.column[len("meta."):]
            values = group.meta.get(key)
        else:
            values = getattr(group, self.column)
        if values is None:
            raise DataError(g, self.column, "has no value to import")
        if not isinstance(values, (list, tuple)) or len(values) != group.k:
            raise DataError(g, self.column, f"must be a list of {group.k} numbers (one per response)")
        return values

    def prepare(self, groups: Sequence[Group]) -> None:
        if self.data is not None:
            from ..data import load_groups

            opts = {"score_range": self.loader_score_range} if self.loader_score_range else {}
            groups, _ = load_groups(self.data, format=self.format, **opts)
        table: dict[tuple[str, str], float] = {}
        where: dict[tuple[str, str], tuple[int, int]] = {}
        lo, hi = self.value_range or (-math.inf, math.inf)
        for g, group in enumerate(groups):
            for k, value in enumerate(self._values(group, g)):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise DataError(g, f"{self.column}[{k}]", f"imported value {value!r} is not a finite number")
                if not lo <= float(value) <= hi:
                    raise DataError(g, f"{self.column}[{k}]",
                                    f"imported value {value} is outside the declared range [{lo}, {hi}]")
                key = (text_key(group.prompt), text_key(group.responses[k]))
                if key in table and table[key] != float(value):
                    pg, pk = where[key]
                    raise DataError(g, f"{self.column}[{k}]", f"the same prompt and response has {value} here "
                                                              f"and {table[key]} in group {pg}, response {pk}")
                table[key] = float(value)
                where[key] = (g, k)
        self.table = table

    def score(self, prompts, responses, progress=None) -> np.ndarray:
        check_lengths(prompts, responses)
        if self.table is None:
            raise RuntimeError("imported scores need prepare(groups) (or a `data` file) before score()")
        out = np.zeros(len(prompts), dtype=np.float64)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            key = (text_key(p), text_key(r))
            if key not in self.table:
                raise BadReward(i, f"no imported '{self.column}' value for this prompt and response")
            out[i] = self.table[key]
        if progress is not None:
            progress(len(prompts))
        return out


# ---- the factory ------------------------------------------------------------------------------------------------


@dataclass
class _RuleConfig:
    function: str = ""
    name: str | None = None


@dataclass
class _GymConfig:
    task: str = ""
    task_args: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass
class _ImportedConfig:
    column: str = "rewards"
    range: list[float] | None = None
    data: str | None = None
    format: str | None = None


@dataclass
class _ModelConfig(ModelOptions):
    path: str = ""
    trust_remote_code: bool = False


@dataclass
class _TeacherConfig(ModelOptions):
    teacher: str = ""
    base: str = ""
    trust_remote_code: bool = False


TYPES = {"reward_model": "reward_model", "rm": "reward_model", "ensemble": "ensemble", "rule": "rule",
         "gym": "gym", "teacher_ratio": "teacher_ratio", "teacher": "teacher_ratio", "imported": "imported"}
SPEC_KINDS = {"rm": "path", "rule": "function", "gym": "task"}
"""Spec-string prefixes and the mapping field their text fills: ``rm:runs/rm`` is ``{type: rm, path: runs/rm}``."""


def parse_spec(spec: str) -> dict[str, Any]:
    """A spec string as a source mapping: ``rm:<path>``, ``rule:<module or file.py>:<function>``,
    ``gym:<task>``; any other string is the path of a reward model directory."""
    kind, sep, target = str(spec).partition(":")
    if sep and kind in SPEC_KINDS:
        if not target:
            raise ConfigError(f"reward {spec!r}: write rm:<path>, rule:<module>:<function>, gym:<task> or "
                              f"gym:<path/file.py>:<Class>")
        return {"type": kind, SPEC_KINDS[kind]: target}
    return {"type": "reward_model", "path": str(spec)}


def _model_options(cfg: Any) -> ModelOptions:
    return ModelOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(ModelOptions)})


def build_source(config: RewardSource | dict[str, Any] | str | Path | Callable[..., float]) -> RewardSource:
    """The reward source that ``config`` names (see the module docstring): a source (returned as it is), a
    callable (a rule), a spec string or path, or a mapping ``{type: ..., ...}``.

    Mapping types and fields: ``reward_model`` (path, batch_size, device, torch_dtype, max_length, chat_template,
    fingerprint, trust_remote_code); ``ensemble`` (the same; ``reward_model`` on an ensemble directory also gives one); ``rule``
    (function, name); ``gym`` (task, task_args); ``teacher_ratio`` (teacher, base, and the model fields);
    ``imported`` (column, range, data, format). Checks the fields and paths; loads no model. A source built
    from a spec string is named by it.
    """
    if isinstance(config, RewardSource):
        return config
    if callable(config):
        return RuleSource(config)
    label = None
    if isinstance(config, (str, Path)):
        label = str(config) if ":" in str(config) else None
        config = parse_spec(str(config))
    if not isinstance(config, dict) or "type" not in config:
        raise ConfigError(f"a reward source is a spec string (rm:<path>, rule:<module>:<function>, gym:<task>) "
                          f"or a mapping with a `type` ({', '.join(sorted(set(TYPES.values())))}), got {config!r}")
    source = _build(config)
    source.label = label
    return source


def _build(config: dict[str, Any]) -> RewardSource:
    options = {k: v for k, v in config.items() if k != "type"}
    kind = TYPES.get(str(config["type"]))
    if kind is None:
        raise ConfigError(f"unknown reward source type {config['type']!r}; choose one of "
                          f"{', '.join(sorted(set(TYPES.values())))}")
    if kind in ("reward_model", "ensemble"):
        cfg = from_dict(_ModelConfig, options, f"{kind} source")
        if not cfg.path:
            raise ConfigError(f"{kind} source needs a path: a reward model directory or hub repository")
        if kind == "ensemble" or is_ensemble_dir(cfg.path):
            return EnsembleSource(cfg.path, _model_options(cfg), cfg.trust_remote_code)
        return RewardModelSource(cfg.path, _model_options(cfg), cfg.trust_remote_code)
    if kind == "teacher_ratio":
        cfg = from_dict(_TeacherConfig, options, "teacher_ratio source")
        return TeacherRatioSource(cfg.teacher, cfg.base, _model_options(cfg), cfg.trust_remote_code)
    if kind == "rule":
        cfg = from_dict(_RuleConfig, options, "rule source")
        return RuleSource(cfg.function, cfg.name)
    if kind == "gym":
        cfg = from_dict(_GymConfig, options, "gym source")
        return GymSource(cfg.task, **cfg.task_args)
    cfg = from_dict(_ImportedConfig, options, "imported source")
    return ImportedSource(cfg.column, cfg.range, cfg.data, cfg.format)
