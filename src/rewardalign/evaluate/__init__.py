"""Evaluation: sampling, metrics, judges, ``rewardalign evaluate`` and ``rewardalign compare``.

- :mod:`.generation`: seeded, batched sampling of n responses per prompt (``generate_samples``);
- :mod:`.metrics`: pure functions (mean reward with CI, win rate, KL estimate, likelihood displacement, length);
- :mod:`.judges`: judge callables and the ``gym:`` / ``rule:`` / ``rm:`` spec strings;
- :mod:`.evaluator`: ``evaluate_model``, everything measured on one policy;
- :mod:`.command`: ``rewardalign evaluate``; :mod:`.report` and :mod:`.plots`: ``rewardalign compare``.

``evaluate_model``, ``generate_samples``, ``SamplingConfig`` and ``resolve_judge`` are importable from here too;
they are loaded on first use, so ``rewardalign compare`` does not import torch and transformers.
"""

from importlib import import_module
from typing import Any

from .metrics import (
    Estimate,
    clustered_mean_ci,
    kl_estimate,
    length_stats,
    logp_shift,
    mean_ci,
    win_rate,
)

_LAZY = {
    "evaluate_model": "evaluator",
    "generate_samples": "generation",
    "SamplingConfig": "generation",
    "resolve_judge": "judges",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Estimate",
    "SamplingConfig",
    "evaluate_model",
    "generate_samples",
    "resolve_judge",
    "clustered_mean_ci",
    "kl_estimate",
    "length_stats",
    "logp_shift",
    "mean_ci",
    "win_rate",
]
