"""Reward sources: one interface that maps (prompt, response) pairs to scalar rewards.

    source.score(prompts, responses) -> np.ndarray [N]   (or [N, M] for an ensemble: one column per member)

Every source has a ``name`` (what the summary prints), a ``fingerprint()`` (what the annotation cache is keyed
on: it changes whenever the source would score differently) and ``columns`` (None, or the M member names).
The kinds (METHODS.md "Reward sources"):

- ``reward_model``: a model trained by ``train-rm`` (bt or oracle), r = its scalar head;
- ``ensemble``: the members of a ``train-rm`` ensemble, one column each (annotation adds their mean);
- ``rule``: a Python callable ``module:function``, called as ``fn(prompt, response) -> float``;
- ``teacher_ratio``: r_t(x, y) = log pi_t(y|x) - log mu_t(y|x), summed response-token log-probs of two causal
  LMs (SPO, 004 section 4.2: pi_t an aligned teacher, mu_t its base);
- ``imported``: a value already in the data (``rewards``, ``scores``, ``labels`` or ``meta.KEY`` lists of K),
  checked against its declared ``range``.

:func:`build_source` validates a config mapping and builds a source without loading any model: models load on
the first ``score`` call.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ConfigError, from_dict
from ..data.collate import collate_groups
from ..data.schema import DataError, Group, Text, text_key
from ..data.tokenize import TokenizeConfig, TokenizedGroup, TokenizeStats, tokenize_group
from ..fingerprint import MODES, file_digest, hash_json, path_fingerprint
from .models import DTYPES, RewardModel, ensemble_members, is_ensemble_dir, read_reward_config

Progress = Callable[[int], None]


class BadReward(ValueError):
    """A source could not produce a reward for item ``index`` of the flat (prompt, response) list.
    Annotation turns it into a :class:`DataError` naming the group and the response."""

    def __init__(self, index: int, message: str):
        self.index = index
        self.reason = message
        super().__init__(f"item {index}: {message}")


class RewardSource(ABC):
    """Maps (prompt, response) pairs to rewards. Subclasses set ``kind`` and implement ``score`` and
    ``_identity`` (what, besides the class, makes two sources score alike)."""

    kind: str = "source"
    columns: list[str] | None = None
    """Names of the M member columns of an ensemble; None for a single reward."""
    value_range: tuple[float, float] | None = None
    """The declared range of the rewards, where the source knows one (imported scores): minmax's default."""

    @property
    def name(self) -> str:
        return self.kind

    @abstractmethod
    def _identity(self) -> dict[str, Any]:
        ...

    def fingerprint(self) -> str:
        """Hex digest that changes whenever this source would score differently."""
        return hash_json({"kind": self.kind, **self._identity()})

    @abstractmethod
    def score(self, prompts: Sequence[Text], responses: Sequence[Text], progress: Progress | None = None) -> np.ndarray:
        """Rewards of ``responses[i]`` given ``prompts[i]``: float64 [N] (or [N, M])."""

    def load(self) -> Any:
        """Load what scoring needs (models), so that the scoring time excludes it; optional."""
        return None

    def prepare(self, groups: Sequence[Group]) -> None:
        """Called by annotation with the data's groups before scoring (imported scores read their column)."""
        return None

    @property
    def work_units(self) -> int:
        """Passes over the data one ``score`` call makes (M for an ensemble): the progress bar's multiplier."""
        return 1

    def close(self) -> None:
        """Free loaded models."""
        return None


def _check_lengths(prompts: Sequence[Text], responses: Sequence[Text]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ---- model-based sources --------------------------------------------------------------------------------------


@dataclass
class ModelOptions:
    """How a model-based source runs: batch size, device, dtype, tokenisation, fingerprint mode."""

    batch_size: int = 16
    device: str = "auto"
    dtype: str = "float32"
    max_length: int | None = None
    chat_template: str | None = None
    fingerprint: str = "auto"
    logprob_chunk_size: int = 1024

    def check(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.fingerprint not in MODES:
            raise ConfigError(f"fingerprint must be one of {MODES}, got {self.fingerprint!r}")
        if self.chat_template not in (None, "auto", "always", "never"):
            raise ConfigError(f"chat_template must be auto, always or never, got {self.chat_template!r}")


def _tokenize_items(prompts: Sequence[Text], responses: Sequence[Text], tokenizer: Any,
                    config: TokenizeConfig) -> tuple[list[TokenizedGroup], int]:
    """Each (prompt, response) as a K = 1 tokenised group; returns them and how many were truncated to fit."""
    items, stats = [], TokenizeStats()
    for i, (p, r) in enumerate(zip(prompts, responses)):
        try:
            items.append(tokenize_group(Group(p, [r]), tokenizer, config, i, stats))
        except (DataError, ValueError) as err:
            raise BadReward(i, f"cannot be tokenised: {err}") from err
    return items, stats.truncated_prompts + stats.truncated_responses


def _batched(items: list[TokenizedGroup], batch_size: int, pad_id: int, device: torch.device,
             run: Callable[[dict[str, torch.Tensor]], torch.Tensor], progress: Progress | None) -> np.ndarray:
    """Run ``run`` on length-sorted batches of K = 1 groups; results [N] (or [N, ...]) in input order."""
    order = sorted(range(len(items)), key=lambda i: -items[i].length)
    out: np.ndarray | None = None
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        batch = collate_groups([items[i] for i in idx], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            values = run(batch).detach().double().cpu().numpy()
        if out is None:
            out = np.zeros((len(items),) + values.shape[1:], dtype=np.float64)
        out[idx] = values
        if progress is not None:
            progress(len(idx))
    return out if out is not None else np.zeros(0, dtype=np.float64)


class RewardModelSource(RewardSource):
    """A reward model saved by ``train-rm`` (``reward_model.json``): r(x, y) from its scalar head.

    Tokenisation follows the model's training (its ``max_length`` and ``chat_template`` from
    ``reward_model.json``) unless ``options`` set them.
    """

    kind = "reward_model"

    def __init__(self, path: str | Path, options: ModelOptions | None = None):
        self.path = Path(path)
        self.options = options or ModelOptions()
        self.options.check()
        self.meta = read_reward_config(self.path)
        self.model: RewardModel | None = None
        self.tokenizer: Any = None
        self.truncated = 0

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.path}"

    def tokenize_config(self) -> TokenizeConfig:
        max_length = self.options.max_length or int(self.meta.get("max_length") or 512)
        template = self.options.chat_template or self.meta.get("chat_template") or "auto"
        return TokenizeConfig(max_length=max_length, chat_template=template)

    def _identity(self) -> dict[str, Any]:
        cfg = self.tokenize_config()
        return {"model": path_fingerprint(self.path, self.options.fingerprint), "dtype": self.options.dtype,
                "max_length": cfg.max_length, "chat_template": cfg.chat_template}

    def load(self) -> RewardModel:
        if self.model is None:
            from ..modeling.tiny import load_tokenizer

            self.tokenizer = load_tokenizer(self.path)
            self.model = RewardModel.from_pretrained(self.path, dtype=self.options.dtype,
                                                     device=resolve_device(self.options.device))
        return self.model

    def score(self, prompts, responses, progress=None) -> np.ndarray:
        _check_lengths(prompts, responses)
        model = self.load()
        items, self.truncated = _tokenize_items(prompts, responses, self.tokenizer, self.tokenize_config())
        device = next(model.parameters()).device
        return _batched(items, self.options.batch_size, self.tokenizer.pad_token_id, device,
                        lambda b: model(b["input_ids"], b["attention_mask"]).rewards, progress)

    def close(self) -> None:
        self.model = None


class EnsembleSource(RewardSource):
    """The M members of a ``train-rm`` ensemble (``ensemble.json``): [N, M], one column per member.

    Members are loaded and scored one at a time, so only one is resident.
    """

    kind = "ensemble"

    def __init__(self, path: str | Path, options: ModelOptions | None = None):
        self.path = Path(path)
        self.options = options or ModelOptions()
        self.options.check()
        self.members = [RewardModelSource(p, dataclasses.replace(self.options)) for p in ensemble_members(self.path)]
        self.columns = [p.name for p in ensemble_members(self.path)]

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.path} ({len(self.members)} members)"

    @property
    def work_units(self) -> int:
        return len(self.members)

    def _identity(self) -> dict[str, Any]:
        return {"members": [m.fingerprint() for m in self.members]}

    def score(self, prompts, responses, progress=None) -> np.ndarray:
        _check_lengths(prompts, responses)
        columns = []
        for member in self.members:
            columns.append(member.score(prompts, responses, progress))
            member.close()
        return np.stack(columns, axis=-1)


class TeacherRatioSource(RewardSource):
    """r_t(x, y) = log pi_t(y|x) - log mu_t(y|x) (SPO, 004 section 4.2).

    ``teacher`` (pi_t, e.g. an instruct model) and ``base`` (mu_t, its pre-alignment base) are causal LM
    directories; each log-prob is the SUM over the response tokens (prompt excluded), each model with its own
    tokenizer. A teacher equal to its base gives exactly 0.
    """

    kind = "teacher_ratio"

    def __init__(self, teacher: str | Path, base: str | Path, options: ModelOptions | None = None,
                 trust_remote_code: bool = False):
        self.teacher, self.base = Path(teacher), Path(base)
        self.options = options or ModelOptions()
        self.options.check()
        self.trust_remote_code = trust_remote_code
        for what, path in (("teacher", self.teacher), ("base", self.base)):
            if not (path / "config.json").is_file():
                raise ConfigError(f"teacher_ratio {what} '{path}' is not a model directory (no config.json)")
        self.truncated = 0

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.teacher} / {self.base}"

    def tokenize_config(self) -> TokenizeConfig:
        return TokenizeConfig(max_length=self.options.max_length or 1024,
                              chat_template=self.options.chat_template or "auto")

    def _identity(self) -> dict[str, Any]:
        cfg = self.tokenize_config()
        mode = self.options.fingerprint
        return {"teacher": path_fingerprint(self.teacher, mode), "base": path_fingerprint(self.base, mode),
                "dtype": self.options.dtype, "max_length": cfg.max_length, "chat_template": cfg.chat_template}

    def _logps(self, path: Path, prompts, responses, progress: Progress | None) -> np.ndarray:
        from transformers import AutoModelForCausalLM

        from ..modeling.logprobs import batch_logps
        from ..modeling.tiny import load_tokenizer

        tokenizer = load_tokenizer(path)
        device = resolve_device(self.options.device)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[self.options.dtype],
                                                     trust_remote_code=self.trust_remote_code).to(device).eval()
        items, truncated = _tokenize_items(prompts, responses, tokenizer, self.tokenize_config())
        self.truncated = max(self.truncated, truncated)
        chunk = self.options.logprob_chunk_size
        values = _batched(items, self.options.batch_size, tokenizer.pad_token_id, device,
                          lambda b: batch_logps(model, b, chunk).logps[:, 0], progress)
        return values  # the model is freed when this frame ends

    @property
    def work_units(self) -> int:
        return 2

    def score(self, prompts, responses, progress=None) -> np.ndarray:
        _check_lengths(prompts, responses)
        teacher = self._logps(self.teacher, prompts, responses, progress)
        base = self._logps(self.base, prompts, responses, progress)
        return teacher - base


# ---- rule and imported sources --------------------------------------------------------------------------------


def import_function(spec: str) -> Callable[..., Any]:
    """The callable named by ``module:function`` (dots after the colon reach attributes)."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ConfigError(f"a rule is given as 'module:function', got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"rule {spec!r}: cannot import module '{module_name}' ({err})") from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"rule {spec!r}: module '{module_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"rule {spec!r} is not callable")
    return obj


class RuleSource(RewardSource):
    """A Python callable ``fn(prompt, response) -> float`` given as ``module:function``.

    The fingerprint holds the spec and a hash of the module's source file, so editing the rule recomputes.
    """

    kind = "rule"

    def __init__(self, function: str | Callable[[Text, Text], float], name: str | None = None):
        if callable(function):
            self.fn = function
            self.spec = f"{function.__module__}:{function.__qualname__}"
        else:
            self.fn = import_function(function)
            self.spec = function
        self.label = name or self.spec

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.label}"

    def _identity(self) -> dict[str, Any]:
        module = inspect.getmodule(self.fn)
        file = getattr(module, "__file__", None)
        try:
            code = inspect.getsource(self.fn)
        except (OSError, TypeError):
            code = None
        return {"spec": self.spec, "module_file": file_digest(file) if file and Path(file).is_file() else None,
                "code": code}

    def score(self, prompts, responses, progress=None) -> np.ndarray:
        _check_lengths(prompts, responses)
        out = np.zeros(len(prompts), dtype=np.float64)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            value = self.fn(p, r)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise BadReward(i, f"rule {self.spec} returned {value!r}, not a number")
            out[i] = float(value)
            if progress is not None:
                progress(1)
        return out


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

    @property
    def name(self) -> str:
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

    def load(self) -> Any:
        """Load what scoring needs (models), so that the scoring time excludes it; optional."""
        return None

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
        _check_lengths(prompts, responses)
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
class _ImportedConfig:
    column: str = "rewards"
    range: list[float] | None = None
    data: str | None = None
    format: str | None = None


@dataclass
class _ModelConfig(ModelOptions):
    path: str = ""


@dataclass
class _TeacherConfig(ModelOptions):
    teacher: str = ""
    base: str = ""
    trust_remote_code: bool = False


TYPES = {"reward_model": "reward_model", "rm": "reward_model", "ensemble": "ensemble", "rule": "rule",
         "teacher_ratio": "teacher_ratio", "teacher": "teacher_ratio", "imported": "imported"}


def build_source(config: dict[str, Any] | str) -> RewardSource:
    """A reward source from a config mapping ``{type: ..., ...}`` (or a path to a reward model / ensemble).

    Types and fields: ``reward_model`` (path, batch_size, device, dtype, max_length, chat_template,
    fingerprint); ``ensemble`` (the same; ``reward_model`` on an ensemble directory also gives one);
    ``rule`` (function: ``module:function``, name); ``teacher_ratio`` (teacher, base, and the model fields);
    ``imported`` (column, range, data, format). Checks the fields and paths; loads no model.
    """
    if isinstance(config, (str, Path)):
        config = {"type": "reward_model", "path": str(config)}
    if not isinstance(config, dict) or "type" not in config:
        raise ConfigError(f"a reward source is a mapping with a `type` ({', '.join(sorted(set(TYPES.values())))}), "
                          f"got {config!r}")
    options = {k: v for k, v in config.items() if k != "type"}
    kind = TYPES.get(str(config["type"]))
    if kind is None:
        raise ConfigError(f"unknown reward source type {config['type']!r}; choose one of "
                          f"{', '.join(sorted(set(TYPES.values())))}")
    if kind in ("reward_model", "ensemble"):
        cfg = from_dict(_ModelConfig, options, f"{kind} source")
        if not cfg.path or not Path(cfg.path).is_dir():
            raise ConfigError(f"{kind} source: path '{cfg.path}' is not a directory; train one with "
                              f"`rewardalign train-rm`")
        model_opts = ModelOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(ModelOptions)})
        if kind == "ensemble" or is_ensemble_dir(cfg.path):
            return EnsembleSource(cfg.path, model_opts)
        return RewardModelSource(cfg.path, model_opts)
    if kind == "teacher_ratio":
        cfg = from_dict(_TeacherConfig, options, "teacher_ratio source")
        if not cfg.teacher or not cfg.base:
            raise ConfigError("teacher_ratio source needs `teacher` and `base` model paths")
        model_opts = ModelOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(ModelOptions)})
        return TeacherRatioSource(cfg.teacher, cfg.base, model_opts, cfg.trust_remote_code)
    if kind == "rule":
        cfg = from_dict(_RuleConfig, options, "rule source")
        return RuleSource(cfg.function, cfg.name)
    cfg = from_dict(_ImportedConfig, options, "imported source")
    return ImportedSource(cfg.column, cfg.range, cfg.data, cfg.format)
