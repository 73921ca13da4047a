"""Paired comparisons over several (task, seed) worlds: a measure with a confidence interval per task and pooled
over tasks, from a two-level bootstrap (seeds, then prompts within a seed).

A world contributes units ``u_{t,s,i}``: usually the per-prompt difference between two methods evaluated on the
same prompts, ``u = r_A(p) - r_B(p)`` with ``r(p)`` the mean gold reward of a prompt's samples (pairing on prompts
removes the prompts' own difficulty from the comparison). Then

    theta_t = mean_s mean_i u_{t,s,i}        (task t: its seeds weigh the same)
    theta   = mean_t theta_t                 (pooled: each task weighs the same)

One bootstrap replicate draws, independently for every task, its seeds with replacement and, for each drawn seed,
its units with replacement, and recomputes theta_t and theta. The interval is the ``(1 - confidence) / 2`` and
``(1 + confidence) / 2`` quantiles of the replicates. Redrawing seeds carries the run-to-run spread of training
into the interval; redrawing prompts the evaluation's sampling noise. With few seeds the seed level is coarse (a
bootstrap over n draws has a variance (n - 1) / n of the sample's), so a narrow interval from three seeds is
optimistic rather than conservative. A world that has only a mean and its standard error (a measure with no
per-prompt split) is drawn from a normal distribution at the inner level.

``verdict`` reads an interval against the claimed side of 0: "yes" when the interval lies on it, "no" when it
lies on the other side, "inconclusive" when it straddles 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import Estimate

SIDES = (">0", ">=0", "<0")


@dataclass(frozen=True)
class WorldUnits:
    """One world's contribution: its unit values, or (for a measure with no per-unit split) a mean and its
    standard error."""

    values: tuple[float, ...] = ()
    mean: float = math.nan
    se: float = math.nan

    @classmethod
    def of(cls, values: Sequence[float]) -> WorldUnits:
        finite = tuple(float(v) for v in values if v is not None and math.isfinite(v))
        if not finite:
            raise ValueError("a world needs at least one finite unit value")
        return cls(values=finite, mean=float(np.mean(finite)))

    @classmethod
    def normal(cls, mean: float, se: float) -> WorldUnits:
        if not (math.isfinite(mean) and math.isfinite(se) and se >= 0):
            raise ValueError(f"a world's mean and standard error must be finite (se >= 0), got {mean}, {se}")
        return cls(mean=float(mean), se=float(se))

    def draws(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Bootstrap means of this world, independently for every cell of ``shape``."""
        if not self.values:
            return rng.normal(self.mean, self.se, size=shape)
        x = np.asarray(self.values)
        return x[rng.integers(0, x.size, size=(*shape, x.size))].mean(axis=-1)


def prompt_differences(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> list[float]:
    """Per prompt, the mean reward of ``a``'s samples minus ``b``'s ([prompt][sample] each, the same prompts in
    the same order; NaN samples are ignored, a prompt with none on either side gives NaN)."""
    if len(a) != len(b):
        raise ValueError(f"paired rewards: {len(a)} prompts against {len(b)}")
    out = []
    for ra, rb in zip(a, b):
        fa = [v for v in ra if v is not None and math.isfinite(v)]
        fb = [v for v in rb if v is not None and math.isfinite(v)]
        out.append(float(np.mean(fa) - np.mean(fb)) if fa and fb else math.nan)
    return out


@dataclass(frozen=True)
class PairedResult:
    """Per task and pooled estimates of one measure."""

    tasks: dict[str, Estimate]
    pooled: Estimate


def bootstrap(worlds: Mapping[str, Sequence[WorldUnits]], confidence: float = 0.95, n_boot: int = 4000,
              seed: int = 0) -> PairedResult:
    """theta per task and pooled, with two-level bootstrap intervals (module docstring). ``worlds``: for each
    task, one :class:`WorldUnits` per seed; a task without worlds is left out. ``Estimate.n`` counts seeds
    (pooled: all seeds)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    tasks, reps = {}, []
    for task, units in worlds.items():
        if not units:
            continue
        s = len(units)
        theta = float(np.mean([u.mean for u in units]))
        pick = rng.integers(0, s, size=(n_boot, s))  # the seeds of each replicate
        inner = np.stack([u.draws(rng, (n_boot, s)) for u in units])  # [world, replicate, slot]
        rep = inner[pick, np.arange(n_boot)[:, None], np.arange(s)[None, :]].mean(axis=1)
        lo, hi = np.quantile(rep, q)
        tasks[task] = Estimate(theta, float(lo), float(hi), s)
        reps.append(rep)
    if not tasks:
        raise ValueError("no world to compare")
    pooled_rep = np.mean(reps, axis=0)
    lo, hi = np.quantile(pooled_rep, q)
    pooled = Estimate(float(np.mean([e.mean for e in tasks.values()])), float(lo), float(hi),
                      sum(e.n for e in tasks.values()))
    return PairedResult(tasks, pooled)


def verdict(estimate: Estimate, side: str) -> str:
    """"yes" when the interval lies on the claimed ``side`` of 0 (``>0``, ``>=0`` or ``<0``), "no" when on the
    other side, "inconclusive" when it straddles 0 or is undefined."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    lo, hi = estimate.lo, estimate.hi
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    holds, fails = {">0": (lo > 0, hi <= 0), ">=0": (lo >= 0, hi < 0), "<0": (hi < 0, lo >= 0)}[side]
    return "yes" if holds else "no" if fails else "inconclusive"
