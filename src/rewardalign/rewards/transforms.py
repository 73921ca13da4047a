"""Reward transforms (METHODS.md "Reward transforms"): from raw rewards r to the values written to the data.

- ``none``: nothing is derived;
- ``standardize``: global z-score z = (r - mean) / std over every response of the data set (population std),
  the statistics returned so the run can store them (a z-score is not in [0, 1]: it goes to ``rewards``);
- ``minmax``: s = (r - lo) / (hi - lo) from a DECLARED range [lo, hi] into [0, 1] (UltraFeedback's 1..10
  ratings give (s - 1) / 9); a value outside the declared range is an error, never clipped;
- ``sigmoid``: s = sigma(r) = 1 / (1 + exp(-r)), for reward-model logits (BT rewards are log-odds).

``minmax`` and ``sigmoid`` give scores in [0, 1], the ``scores`` UNA's score objectives need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import ConfigError

KINDS = ("none", "standardize", "minmax", "sigmoid")
TARGETS = ("scores", "rewards")


def standardize(values: np.ndarray, mean: float | None = None, std: float | None = None
                ) -> tuple[np.ndarray, dict[str, float]]:
    """z = (r - mean) / std with the data's own mean and population std unless given; returns (z, stats)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("cannot standardize an empty set of rewards")
    mean = float(values.mean()) if mean is None else float(mean)
    std = float(values.std()) if std is None else float(std)
    if not std > 0:
        raise ValueError(f"cannot standardize: every reward equals {mean} (std 0)")
    return (values - mean) / std, {"mean": mean, "std": std}


def minmax(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """s = (r - lo) / (hi - lo), for values inside the declared range [lo, hi] (ValueError otherwise)."""
    values = np.asarray(values, dtype=np.float64)
    if not lo < hi:
        raise ValueError(f"minmax needs lo < hi, got [{lo}, {hi}]")
    bad = out_of_range(values, lo, hi)
    if bad.size:
        raise ValueError(f"{bad.size} value(s) outside the declared range [{lo}, {hi}], first {values.flat[bad[0]]}")
    return (values - lo) / (hi - lo)


def out_of_range(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Flat indices of the values outside [lo, hi]."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return np.flatnonzero((values < lo) | (values > hi))


def sigmoid(values: np.ndarray) -> np.ndarray:
    """sigma(r), computed without overflow for large |r|."""
    values = np.asarray(values, dtype=np.float64)
    e = np.exp(-np.abs(values))
    return np.where(values >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@dataclass
class Transform:
    """A transform as configured: ``kind``, the declared ``range`` (minmax) and where its output goes.

    ``target``: ``scores`` (default for minmax and sigmoid: rewards stay raw, scores get the transform) or
    ``rewards`` (default for standardize: rewards are replaced, the raw values kept in ``meta.raw_rewards``).
    """

    kind: str = "none"
    range: tuple[float, float] | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"transform must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.range is not None:
            if len(self.range) != 2 or not float(self.range[0]) < float(self.range[1]):
                raise ConfigError(f"transform range must be [lo, hi] with lo < hi, got {self.range!r}")
            self.range = (float(self.range[0]), float(self.range[1]))
        if self.target is None:
            self.target = {"none": None, "standardize": "rewards"}.get(self.kind, "scores")
        elif self.target not in TARGETS:
            raise ConfigError(f"transform target must be 'scores' or 'rewards', got {self.target!r}")
        if self.kind == "standardize" and self.target == "scores":
            raise ConfigError("standardize gives z-scores, not values in [0, 1]: its target must be 'rewards' "
                              "(use minmax or sigmoid for scores)")
        if self.kind == "none" and self.target is not None:
            raise ConfigError("transform 'none' writes only rewards; drop `target` or choose a transform")

    def with_default_range(self, value_range: tuple[float, float] | None) -> Transform:
        """Fill a minmax range from the source's declared range; ConfigError when neither declares one."""
        if self.kind == "minmax" and self.range is None:
            if value_range is None:
                raise ConfigError("minmax needs a declared range: set `transform: {kind: minmax, range: [lo, hi]}` "
                                  "(e.g. [1, 10] for UltraFeedback ratings)")
            self.range = (float(value_range[0]), float(value_range[1]))
        return self

    def apply(self, values: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """(transformed values, statistics to store). Values must be finite."""
        values = np.asarray(values, dtype=np.float64)
        if self.kind == "standardize":
            return standardize(values)
        if self.kind == "minmax":
            lo, hi = self.range  # type: ignore[misc]
            return minmax(values, lo, hi), {"lo": lo, "hi": hi}
        if self.kind == "sigmoid":
            return sigmoid(values), {}
        return values.copy(), {}

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "range": list(self.range) if self.range else None, "target": self.target}


def parse_transform(spec: Any, target: str | None = None) -> Transform:
    """``none`` | ``standardize`` | ``minmax`` | ``sigmoid``, or a mapping {kind, range, target}."""
    if spec is None:
        spec = "none"
    if isinstance(spec, str):
        return Transform(kind=spec, target=target)
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"kind", "range", "target"})
        if unknown:
            raise ConfigError(f"unknown transform field(s) {unknown}; known: kind, range, target")
        return Transform(kind=spec.get("kind", "none"), range=spec.get("range"), target=spec.get("target", target))
    raise ConfigError(f"transform must be a name or a mapping, got {spec!r}")


def describe(values: np.ndarray) -> dict[str, float]:
    """mean, std (population), min, max of finite values (NaN when there are none)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max())}
