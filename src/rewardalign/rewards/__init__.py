"""Reward models (bt, oracle, ensemble), reward sources, transforms and annotation.

- :mod:`~rewardalign.rewards.losses`: Bradley-Terry (margin, centering) and the Oracle's BT + NLL loss;
- :mod:`~rewardalign.rewards.models`: :class:`RewardModel` (a causal LM + scalar head), ensembles, save / load;
- :mod:`~rewardalign.rewards.train`: ``train-rm`` on ``transformers.Trainer``;
- :mod:`~rewardalign.rewards.sources`: :class:`RewardSource` and :func:`build_source`;
- :mod:`~rewardalign.rewards.transforms`: none / standardize / minmax / sigmoid;
- :mod:`~rewardalign.rewards.annotate`: ``annotate``, cached.

Heavy modules (transformers) load on first use of the names below. The annotation entry point is
``rewardalign.rewards.annotate.annotate`` (the package attribute ``annotate`` is that module).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "bradley_terry_loss": "losses",
    "center_penalty": "losses",
    "reward_model_loss": "losses",
    "RewardModel": "models",
    "RewardEnsemble": "models",
    "RewardOutput": "models",
    "ensemble_members": "models",
    "RewardModelConfig": "train",
    "RewardTrainer": "train",
    "train_reward_model": "train",
    "evaluate_pairs": "train",
    "pair_metrics": "train",
    "RewardSource": "sources",
    "RewardModelSource": "sources",
    "EnsembleSource": "sources",
    "RuleSource": "sources",
    "TeacherRatioSource": "sources",
    "ImportedSource": "sources",
    "build_source": "sources",
    "Transform": "transforms",
    "parse_transform": "transforms",
    "standardize": "transforms",
    "minmax": "transforms",
    "sigmoid": "transforms",
    "AnnotateConfig": "annotate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
