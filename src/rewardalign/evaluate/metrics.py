"""Evaluation metrics as pure functions of numbers: rewards, win rates, KL, likelihood displacement, lengths.

Confidence intervals (``confidence`` 0.95 by default), two methods:

- ``normal``: mean +- z * s / sqrt(n), with z = Phi^-1((1 + confidence) / 2) (1.96 at 95%) and s the sample
  standard deviation (n - 1 in the denominator). Fine from a few dozen units on.
- ``bootstrap``: the percentile bootstrap: ``n_boot`` resamples of the n units with replacement (seeded),
  the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of their means. No normality assumption;
  better for skewed or bounded values (win rates near 0 or 1).

With fewer than two units the interval is undefined and reported as (nan, nan).

Units. The n samples of one prompt are not independent draws from the evaluation distribution (they share
the prompt), so a metric over samples is estimated as the mean over prompts of the per-prompt mean and its
interval is computed over those per-prompt means (a cluster CI: prompts are the units). With one prompt the
samples are the units. With the same number of samples per prompt the mean is the plain mean of all samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .config import CI_METHODS


@dataclass(frozen=True)
class Estimate:
    """A mean with its confidence interval [lo, hi] over ``n`` independent units."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def ci(self) -> tuple[float, float]:
        return (self.lo, self.hi)


def mean_ci(values: Sequence[float], confidence: float = 0.95, method: str = "normal",
            n_boot: int = 2000, seed: int = 0) -> Estimate:
    """The mean of ``values`` and its ``confidence`` interval by ``method`` (see the module docstring)."""
    if method not in CI_METHODS:
        raise ValueError(f"ci method must be one of {CI_METHODS}, got {method!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to average")
    if not np.isfinite(x).all():
        raise ValueError(f"value {x[~np.isfinite(x)][0]} at index {int(np.flatnonzero(~np.isfinite(x))[0])} "
                         "is not finite")
    mean = float(x.mean())
    if x.size < 2:
        return Estimate(mean, math.nan, math.nan, int(x.size))
    if method == "normal":
        z = NormalDist().inv_cdf((1 + confidence) / 2)
        half = z * float(x.std(ddof=1)) / math.sqrt(x.size)
        return Estimate(mean, mean - half, mean + half, int(x.size))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Estimate(mean, float(lo), float(hi), int(x.size))


def clustered_mean_ci(groups: Sequence[Sequence[float]], confidence: float = 0.95, method: str = "normal",
                      n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Mean over groups (prompts) of each group's mean, with the interval over the group means.

    With a single group its values are the units: mean_ci(groups[0]).
    """
    if not groups:
        raise ValueError("no groups to average")
    for p, values in enumerate(groups):
        if len(values) == 0:
            raise ValueError(f"group {p} has no values")
    if len(groups) == 1:
        return mean_ci(groups[0], confidence, method, n_boot, seed)
    return mean_ci([float(np.mean(v)) for v in groups], confidence, method, n_boot, seed)


def _paired(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{what}: {len(a)} prompts against {len(b)}")
    for p, (x, y) in enumerate(zip(a, b)):
        if len(x) != len(y):
            raise ValueError(f"{what}: prompt {p} has {len(x)} samples against {len(y)}")


def win_outcomes(rewards: Sequence[Sequence[float]], baseline: Sequence[Sequence[float]],
                 tie_tolerance: float = 0.0) -> list[list[float]]:
    """Per (prompt, sample index) pair: 1 if r > r_base + tol, 0 if r < r_base - tol, else 0.5 (a tie)."""
    _paired(rewards, baseline, "win rate")
    return [[1.0 if r - q > tie_tolerance else 0.0 if q - r > tie_tolerance else 0.5
             for r, q in zip(row, base)] for row, base in zip(rewards, baseline)]


def win_rate(rewards: Sequence[Sequence[float]], baseline: Sequence[Sequence[float]],
             tie_tolerance: float = 0.0, confidence: float = 0.95, method: str = "normal",
             seed: int = 0) -> tuple[Estimate, dict[str, int]]:
    """Win rate of the policy's samples against the baseline's, paired by prompt and sample index.

        win_rate = mean over pairs of w,   w = 1 (win), 1/2 (tie), 0 (loss)

    (a cluster CI over prompts), and the counts of wins, ties and losses.
    """
    outcomes = win_outcomes(rewards, baseline, tie_tolerance)
    flat = [w for row in outcomes for w in row]
    counts = {"wins": flat.count(1.0), "ties": flat.count(0.5), "losses": flat.count(0.0)}
    return clustered_mean_ci(outcomes, confidence, method, seed=seed), counts


def kl_estimate(policy_logps: Sequence[Sequence[float]], ref_logps: Sequence[Sequence[float]],
                confidence: float = 0.95, method: str = "normal", seed: int = 0) -> Estimate:
    """Monte-Carlo estimate of KL(pi || pi_ref) from samples y ~ pi(. | x):

        KL = E_x E_{y ~ pi(.|x)} [ log pi(y|x) - log pi_ref(y|x) ],

    log pi(y|x) the summed log-probs of the response tokens (stop token included). Unbiased when the samples
    are drawn from pi itself (temperature 1, no top-p / top-k cut), but noisy: a single term can be negative
    although the KL is not. Exactly 0 when pi == pi_ref.
    """
    _paired(policy_logps, ref_logps, "KL")
    diffs = [[a - b for a, b in zip(row, ref)] for row, ref in zip(policy_logps, ref_logps)]
    return clustered_mean_ci(diffs, confidence, method, seed=seed)


def logp_shift(policy_logps: Sequence[float], ref_logps: Sequence[float], confidence: float = 0.95,
               method: str = "normal", seed: int = 0) -> Estimate:
    """Likelihood displacement of given responses: the mean of log pi(y|x) - log pi_ref(y|x) over them.

    Negative on the chosen responses is the "likelihood displacement" of DPO-like objectives: the preferred
    responses become less likely than under the reference even as the margin over the rejected ones grows.
    """
    if len(policy_logps) != len(ref_logps):
        raise ValueError(f"logp shift: {len(policy_logps)} policy log-probs against {len(ref_logps)}")
    return mean_ci([a - b for a, b in zip(policy_logps, ref_logps)], confidence, method, seed=seed)


EOS_MISSING_WARN = 0.10
"""Above this share of samples without EOS, ``evaluate`` and the demo warn: the policy has pushed EOS down."""


def pair_agreement(gold: Sequence[Sequence[float]], scores: Sequence[Sequence[float]]) -> float:
    """Share of the response pairs of each group with different ``gold`` values whose ``scores`` differ the same
    way (a tie in the scores does not agree); NaN when no pair differs in gold."""
    agree = total = 0
    for g, s in zip(gold, scores):
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                if g[i] != g[j]:
                    total += 1
                    agree += (g[i] - g[j]) * (s[i] - s[j]) > 0
    return agree / total if total else math.nan


def eos_missing_fraction(finished: Sequence[Sequence[bool]]) -> float:
    """Share of responses that never emit a stop token (cut by max_new_tokens), from [prompt][sample] flags."""
    flat = [bool(f) for row in finished for f in row]
    if not flat:
        raise ValueError("no responses")
    return 1.0 - sum(flat) / len(flat)


def eos_warning(fraction: float | None) -> str | None:
    """One line of warning when more than :data:`EOS_MISSING_WARN` of the samples never emit EOS, else None."""
    if fraction is None or fraction <= EOS_MISSING_WARN:
        return None
    return (f"warning: {100 * fraction:.0f}% of the samples never emit EOS (more than {100 * EOS_MISSING_WARN:.0f}%): "
            f"the policy has pushed the end of its responses down, and its rewards are those of cut-off text")


def length_stats(tokens: Sequence[Sequence[int]], chars: Sequence[Sequence[int]]) -> dict[str, float]:
    """Mean response length in tokens (stop token excluded) and characters, and the longest in tokens."""
    flat_tokens = [t for row in tokens for t in row]
    flat_chars = [c for row in chars for c in row]
    if not flat_tokens:
        raise ValueError("no responses")
    out = {
        "tokens_mean": float(np.mean(flat_tokens)),
        "tokens_max": int(max(flat_tokens)),
        "chars_mean": float(np.mean(flat_chars)),
    }
    return out


def chosen_rejected(rewards: Sequence[float] | None = None, scores: Sequence[float] | None = None,
                    labels: Sequence[int] | None = None, k: int = 2) -> tuple[list[int], list[int]]:
    """Indices of a group's chosen and rejected responses, for likelihood displacement.

    Ranked by rewards, else scores (best = chosen, first on a tie; worst = rejected, last on a tie; a group
    whose values all tie has neither); with binary labels only, the label-1 responses are chosen and the
    label-0 ones rejected (K = 1 groups count on one side); without feedback a pair (K = 2) is listed chosen
    first. The same convention as the objectives' (:mod:`rewardalign.objectives.pairs`).
    """
    values = rewards if rewards is not None else scores
    if values is not None:
        best, worst = max(values), min(values)
        if best == worst:
            return [], []
        return [list(values).index(best)], [len(values) - 1 - list(values)[::-1].index(worst)]
    if labels is not None:
        return [i for i, b in enumerate(labels) if b == 1], [i for i, b in enumerate(labels) if b == 0]
    if k == 2:
        return [0], [1]
    raise ValueError(f"a group of {k} responses without rewards, scores or labels has no chosen/rejected order")
