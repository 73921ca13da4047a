"""The config fields of ``train-rm`` and ``annotate``, checked without loading any model (a light module: the
command line lists these fields in its help without importing torch or transformers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunFields

KINDS = ("bt", "oracle", "ensemble")


@dataclass
class RewardModelConfig(RunFields):
    """The fields of ``rm.yaml`` besides transformers ``TrainingArguments`` fields (output_dir, learning_rate,
    num_train_epochs, per_device_train_batch_size, eval_strategy, report_to, ...), which sit beside them.

    kind: ``bt`` | ``oracle`` (BT + ``oracle_alpha`` * NLL of the chosen response, 002 Eq. 5) | ``ensemble``
    (``members`` reward models of kind ``member_kind``, seeds ``seed + i``, each on a bootstrap resample of the
    training pairs when ``bootstrap``). ``seed`` also seeds the data order and the head initialisation.
    """

    eval_data: str | None = None
    eval_split: str | None = None
    eval_fraction: float = 0.1
    kind: str = "bt"
    margin: float = 0.0
    center_coefficient: float = 0.0
    oracle_alpha: float = 0.1
    members: int = 3
    member_kind: str = "bt"
    bootstrap: bool = False

    def check(self) -> None:
        """Every check that needs no model; a ConfigError says what to change."""
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.member_kind not in ("bt", "oracle"):
            raise ConfigError(f"member_kind must be 'bt' or 'oracle', got {self.member_kind!r}")
        if self.kind == "ensemble" and (not isinstance(self.members, int) or self.members < 2):
            raise ConfigError(f"an ensemble needs members >= 2, got {self.members!r}")
        if not 0.0 <= float(self.oracle_alpha) <= 1.0:
            raise ConfigError(f"oracle_alpha must lie in [0, 1], got {self.oracle_alpha}")
        if float(self.center_coefficient) < 0:
            raise ConfigError(f"center_coefficient must be >= 0, got {self.center_coefficient}")
        if not 0.0 <= float(self.eval_fraction) < 1.0:
            raise ConfigError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")
        if self.on_error not in ("raise", "drop"):
            raise ConfigError(f"on_error must be 'raise' or 'drop', got {self.on_error!r}")
        if not isinstance(self.format_options, dict):
            raise ConfigError("format_options must be a mapping of the format's options")
        self.tokenize_config()
        from ..train.common import check_model_path  # torch and transformers: only when a run starts

        check_model_path(self.model)
        for name in ("data", "eval_data"):
            path = getattr(self, name)
            if name == "data" and not path:
                raise ConfigError("no data given: set `data: PATH` in the config or pass --data PATH")
            if path and _looks_local(path) and not Path(path).exists():
                raise ConfigError(f"{name} file '{path}' does not exist")

    @property
    def base_kind(self) -> str:
        """The kind each trained model has: ``member_kind`` for an ensemble."""
        return self.member_kind if self.kind == "ensemble" else self.kind


def _looks_local(path: str) -> bool:
    p = Path(path)
    return p.suffix != "" or p.is_absolute() or path.startswith(".")


@dataclass
class AnnotateConfig:
    """The fields of ``annotate.yaml``.

    data/format/format_options/split/on_error/score_range: how the input is loaded (``rewardalign.data``);
    source: the reward source mapping (see :func:`rewardalign.rewards.sources.build_source`); transform:
    ``none`` | ``standardize`` | ``minmax`` | ``sigmoid`` or ``{kind, range, target}``; output: the JSONL to
    write; cache / cache_dir: the raw-reward cache; progress: the tqdm bar.
    """

    data: str | None = None
    output: str | None = None
    source: dict[str, Any] | str | None = None
    format: str | None = None
    format_options: dict[str, Any] = field(default_factory=dict)
    split: str | None = None
    on_error: str = "raise"
    score_range: list[float] | None = None
    transform: Any = "none"
    target: str | None = None
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = True

    def check(self) -> None:
        if not self.data:
            raise ConfigError("no data given: set `data: PATH` in the config or pass --data PATH")
        if not self.output:
            raise ConfigError("no output given: set `output: PATH.jsonl` in the config or pass --output PATH")
        if self.source is None:
            raise ConfigError("no reward source given: set `source: {type: reward_model, path: ...}` "
                              "(types: reward_model, ensemble, rule, teacher_ratio, imported)")
        if self.on_error not in ("raise", "drop"):
            raise ConfigError(f"on_error must be 'raise' or 'drop', got {self.on_error!r}")
        if not isinstance(self.format_options, dict):
            raise ConfigError("format_options must be a mapping of the format's options")
        p = Path(self.data)
        if (p.suffix or p.is_absolute() or self.data.startswith(".")) and not p.exists():
            raise ConfigError(f"data file '{self.data}' does not exist")
        if Path(self.output).resolve() == p.resolve():
            raise ConfigError("output must differ from the input data file")
