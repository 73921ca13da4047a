"""What every training run does with its data before a model loads: load and split the groups, check that they
carry what the objective needs, tokenise them."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, RunFields, check_data_path
from ..data import DropReport, Group, load_groups
from ..data.pipeline import TokenizedDataset, prepare_dataset
from ..data.schema import DataError
from ..data.tokenize import TokenizeConfig, TokenizeStats
from ..objectives import OBJECTIVES, get_objective, validate_hparams


def tokenize_config(cfg: RunFields) -> TokenizeConfig:
    """The tokenisation settings of a run's config."""
    try:
        return TokenizeConfig.of(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def load_training_groups(cfg: Any, seed: int) -> tuple[list[Group], list[Group], DropReport]:
    """(training groups, held-out groups, drops) of a run: ``cfg.eval_data`` when given, else a seeded
    ``cfg.eval_fraction`` of ``cfg.data``."""
    check_data_path(cfg.data)
    if getattr(cfg, "eval_data", None):
        check_data_path(cfg.eval_data, "eval_data")
    drops = DropReport()
    load_opts = dict(format=cfg.format, split=cfg.split, on_error=cfg.on_error, **cfg.format_options)
    groups, dropped = load_groups(cfg.data, **load_opts)
    drops.extend(dropped)
    if getattr(cfg, "eval_data", None):
        eval_groups, dropped = load_groups(cfg.eval_data, **load_opts)
        drops.extend(dropped)
    else:
        groups, eval_groups = split_eval(groups, getattr(cfg, "eval_fraction", 0.0), seed)
    return groups, eval_groups, drops


def prepare_training_data(cfg: Any, tokenizer: Any, tok_cfg: TokenizeConfig, seed: int
                          ) -> tuple[TokenizedDataset, TokenizedDataset | None, TokenizeStats, DropReport]:
    """(training set, held-out set or None, tokenisation stats, drops) of a run, as Arrow-backed tokenised data
    sets through the content-keyed cache under ``cfg.cache_dir``/data (:func:`rewardalign.data.pipeline.
    prepare_dataset`): ``cfg.eval_data`` when given, else a seeded ``cfg.eval_fraction`` of ``cfg.data``."""
    if not cfg.data:
        raise ConfigError("no data given: set `data: PATH` in the config or pass --data PATH")
    if not 0.0 <= cfg.eval_fraction < 1.0:
        raise ConfigError(f"eval_fraction must be in [0, 1), got {cfg.eval_fraction}")
    drops = DropReport()
    options = dict(format=cfg.format, split=cfg.split, on_error=cfg.on_error, drops=drops,
                   cache_dir=Path(cfg.cache_dir) / "data", **cfg.format_options)
    train, stats = prepare_dataset(cfg.data, tokenizer, tok_cfg, **options)
    if cfg.eval_data:
        held, _ = prepare_dataset(cfg.eval_data, tokenizer, tok_cfg, **options)
    else:
        train, held = train.split(cfg.eval_fraction, seed)
    if not len(train):
        raise ConfigError("no training group is left after tokenisation; raise max_length or check the data")
    return train, (held if len(held) else None), stats, drops


def check_objective(name: str, args: dict[str, Any]) -> dict[str, Any]:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{name}'; choose one of: {', '.join(sorted(OBJECTIVES))}")
    try:
        return validate_hparams(name, args)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(str(err)) from err


def check_data_fits(objective: str, hparams: dict[str, Any], data: TokenizedDataset, source: str) -> None:
    """The data must carry what the objective needs; the error names the first group that lacks it (read from
    the data set's columns, no group is built)."""
    needs = get_objective(objective).requirements(hparams)
    wanted = [(("rewards",), needs.rewards and not needs.ensemble), (("reward_members", "rewards"), needs.ensemble),
              (("scores",), needs.scores), (("labels",), needs.labels)]
    hints = {
        "rewards": "annotate the data with a reward source (rewardalign annotate) or choose a preference objective "
                   "such as dpo",
        "reward_members": "annotate with an ensemble reward model",
        "scores": "give scores in [0, 1] (annotate with a transform, e.g. sigmoid or minmax)",
        "labels": "give binary labels (the binary format) or choose another objective",
    }
    for names, needed in wanted:
        first = data.first_missing(*names) if needed else None
        if first is not None:
            name = names[0]
            raise DataError(int(data.index[first]), name, f"objective '{objective}' needs {name} and this group of "
                                                          f"{source} has none: {hints[name]}")
    ks = np.asarray(data.ks)
    short = np.flatnonzero(ks < needs.min_k)
    if len(short):
        first = int(short[0])
        raise DataError(int(data.index[first]), "responses", f"objective '{objective}' needs K >= {needs.min_k} "
                                                             f"responses per group, this group of {source} has {ks[first]}")


def split_eval(groups: list[Group], fraction: float, seed: int) -> tuple[list[Group], list[Group]]:
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"eval_fraction must be in [0, 1), got {fraction}")
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    n_eval = int(round(fraction * len(groups)))
    held = set(order[:n_eval])
    return [g for i, g in enumerate(groups) if i not in held], [g for i, g in enumerate(groups) if i in held]
