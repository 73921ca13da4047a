"""Alignment objectives as pure functions of [B, K] tensors: one registry, one call.

    from rewardalign.objectives import ObjectiveInputs, compute_objective, get_objective

    get_objective("dro").requirements({"prompt_normalization": False})   # what to build, before training
    hparams = validate_hparams("dro", {"beta": 0.1})                      # once: checked, defaults filled
    loss, metrics = compute_objective("dro", inputs, **hparams)           # every step: no host-device sync
    loss, metrics = compute_objective("dro", inputs, check=True, **hparams)   # also check the values

Metrics are detached 0-dim tensors (NaN where there is nothing to average); ``mean_metrics`` turns a logging
window of them into floats with one transfer. The contract in full: :mod:`rewardalign.objectives.registry`.

Each objective's formula, paper, equation and defaults: ``get_objective(name).doc``.
"""

from rewardalign.objectives.inputs import ObjectiveInputs
from rewardalign.objectives.metrics import mean_metrics
from rewardalign.objectives.registry import (
    OBJECTIVES,
    Needs,
    Objective,
    ObjectiveError,
    compute_objective,
    get_objective,
    validate_hparams,
)

__all__ = [
    "OBJECTIVES",
    "Needs",
    "Objective",
    "ObjectiveError",
    "ObjectiveInputs",
    "compute_objective",
    "get_objective",
    "mean_metrics",
    "validate_hparams",
]
