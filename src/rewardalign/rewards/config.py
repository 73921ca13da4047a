"""The config fields of ``train-rm`` and ``annotate``, checked without loading any model (a light module: the
command line lists these fields in its help without importing torch or transformers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import FORMAT_OPTIONS_HELP, ConfigError, RunFields, check_data_path, check_model_path, opt
from ..data.tokenize import TokenizeConfig

KINDS = ("bt", "oracle", "likelihood", "ensemble")
MEMBER_KINDS = ("bt", "oracle", "likelihood")


@dataclass
class RewardModelConfig(RunFields):
    """The fields of ``rm.yaml`` besides transformers ``TrainingArguments`` fields (output_dir, learning_rate,
    num_train_epochs, per_device_train_batch_size, eval_strategy, report_to, ...), which sit beside them.

    kind: ``bt`` | ``oracle`` (BT + ``oracle_alpha`` * NLL of the chosen response, 002 Eq. 5) | ``likelihood``
    (BT on r = ``likelihood_beta`` / |y| * log pi(y|x) of the causal LM itself, SimPO's implicit reward) |
    ``ensemble`` (``members`` reward models of kind ``member_kind``, seeds ``seed + i``, each on a bootstrap
    resample of the training pairs when ``bootstrap``). ``seed`` also seeds the data order and the head
    initialisation.
    """

    eval_data: str | None = opt(None, "held-out groups; unset: eval_fraction of the prompts of data")
    eval_split: str | None = opt(None, "the split of eval_data (a datasets directory)")
    eval_fraction: float = opt(0.1, "share of the prompts held out when eval_data is unset")
    kind: str = opt("bt", "bt, oracle (BT + oracle_alpha * NLL of the chosen response, 002 Eq. 5), likelihood "
                          "(BT on the causal LM's beta * mean token log-prob, SimPO's reward) or ensemble")
    margin: float = opt(0.0, "BT margin: -logsig(r_w - r_l - margin)")
    center_coefficient: float = opt(0.0, "weight of mean((r_w + r_l)^2), keeping rewards centred")
    oracle_alpha: float = opt(0.1, "oracle: weight a of the NLL term, (1 - a) * BT + a * NLL")
    likelihood_beta: float = opt(2.0, "likelihood: beta of r = beta / |y| * log pi(y|x)")
    members: int = opt(3, "ensemble: number of reward models (seeds seed + i)")
    member_kind: str = opt("bt", "ensemble: kind of each member, bt, oracle or likelihood")
    bootstrap: bool = opt(False, "ensemble: each member on a bootstrap resample of the training pairs")

    def tokenize_config(self) -> TokenizeConfig:
        try:
            return TokenizeConfig.of(self)
        except ValueError as err:
            raise ConfigError(str(err)) from err

    def check(self) -> None:
        """Every check that needs no model; a ConfigError says what to change."""
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.member_kind not in MEMBER_KINDS:
            raise ConfigError(f"member_kind must be one of {', '.join(MEMBER_KINDS)}, got {self.member_kind!r}")
        if self.kind == "ensemble" and (not isinstance(self.members, int) or self.members < 2):
            raise ConfigError(f"an ensemble needs members >= 2, got {self.members!r}")
        if not 0.0 <= float(self.oracle_alpha) <= 1.0:
            raise ConfigError(f"oracle_alpha must lie in [0, 1], got {self.oracle_alpha}")
        if float(self.center_coefficient) < 0:
            raise ConfigError(f"center_coefficient must be >= 0, got {self.center_coefficient}")
        if self.base_kind == "likelihood":
            if float(self.center_coefficient):
                raise ConfigError("center_coefficient must be 0 for a likelihood reward model: its rewards have no "
                                  "free offset to centre (it is set after training, from the held-out mean)")
            if not float(self.likelihood_beta) > 0:
                raise ConfigError(f"likelihood_beta must be > 0, got {self.likelihood_beta}")
        if not 0.0 <= float(self.eval_fraction) < 1.0:
            raise ConfigError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")
        if self.on_error not in ("raise", "drop"):
            raise ConfigError(f"on_error must be 'raise' or 'drop', got {self.on_error!r}")
        if not isinstance(self.format_options, dict):
            raise ConfigError("format_options must be a mapping of the format's options")
        self.tokenize_config()

        check_model_path(self.model)
        check_data_path(self.data)
        if self.eval_data:
            check_data_path(self.eval_data, "eval_data")

    @property
    def base_kind(self) -> str:
        """The kind each trained model has: ``member_kind`` for an ensemble."""
        return self.member_kind if self.kind == "ensemble" else self.kind


@dataclass
class AnnotateConfig:
    """The fields of ``annotate.yaml``.

    data/format/format_options/split/on_error: how the input is loaded (``rewardalign.data``);
    source: the reward source mapping (see :func:`rewardalign.rewards.sources.build_source`); transform:
    ``none`` | ``standardize`` | ``minmax`` | ``sigmoid`` or ``{kind, range, target}``; output: the JSONL to
    write; cache / cache_dir: the raw-reward cache; progress: the tqdm bar.
    """

    data: str | None = opt(None, "the data to annotate: any format rewardalign.data loads")
    output: str | None = opt(None, "the JSONL of native groups to write (with a .meta.json sidecar)")
    source: dict[str, Any] | str | None = opt(None, "rm:<path>, rule:<module or file.py>:<fn>, gym:<task>, or "
                                                    "a mapping {type: reward_model | ensemble | rule | ...}")
    format: str | None = opt(None, "the data's format, when it is not detected")
    format_options: dict[str, Any] = opt(help=FORMAT_OPTIONS_HELP, factory=dict)
    split: str | None = opt(None, "the split of a datasets directory")
    on_error: str = opt("raise", "a bad row: raise (stop, naming file, row, field) or drop (count and report)")
    transform: Any = opt("none", "none, standardize, minmax, sigmoid, or {kind, range, target}")
    target: str | None = opt(None, "where transformed values go: scores or rewards (default: the transform's)")
    cache: bool = opt(True, "reuse raw rewards cached for the same source, data and options")
    cache_dir: str | None = opt(None, "the raw-reward cache (default: beside output)")
    progress: bool = opt(True, "show a progress bar")

    def check(self) -> None:
        check_data_path(self.data)
        if not self.output:
            raise ConfigError("no output given: set `output: PATH.jsonl` in the config or pass --output PATH")
        if self.source is None:
            raise ConfigError("no reward source given: set `source: {type: reward_model, path: ...}` "
                              "(types: reward_model, ensemble, rule, teacher_ratio, imported)")
        if self.on_error not in ("raise", "drop"):
            raise ConfigError(f"on_error must be 'raise' or 'drop', got {self.on_error!r}")
        if not isinstance(self.format_options, dict):
            raise ConfigError("format_options must be a mapping of the format's options")
        if Path(self.output).resolve() == Path(self.data).resolve():
            raise ConfigError("output must differ from the input data file")
