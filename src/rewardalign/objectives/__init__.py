"""Alignment objectives as pure functions of [B, K] tensors: one registry, one call.

    from rewardalign.objectives import ObjectiveInputs, compute_objective, get_objective

    get_objective("dro").requirements({"prompt_normalization": False})   # what to build, before training
    loss, metrics = compute_objective("dro", inputs, beta=0.1, z0=0.0)

Each objective's formula, paper, equation and defaults: ``get_objective(name).doc``.
"""

from rewardalign.objectives.inputs import ObjectiveInputs
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
    "validate_hparams",
]
