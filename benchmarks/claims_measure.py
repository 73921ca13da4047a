"""The papers' claims as measures on the gym's worlds, paired on prompts, with a verdict per task and pooled.

A world is one (task, seed): its runs' rows, each with ``prompt_rewards`` (the mean gold reward of each held-out
prompt's samples, the same prompts for every run of the world) and ``eval`` (the headline metrics). A claim maps a
world to its units (``rewardalign.evaluate.paired.WorldUnits``):

- a difference between two methods: the per-prompt difference of their rewards;
- a frontier gap of A over B "at matched KL" (β sweeps): each run of B is matched with the best run of A that used
  no more KL, and each run of A with the best run of B that used no more KL; the unit of a prompt is the mean of
  its reward differences (A's run minus B's) over those matched pairs, so the mean of the units is the mean gap.
  (Which runs match is decided on the world's mean rewards and KLs, then held fixed in the bootstrap.) A method
  that stays below every run of the other's KL is compared at its own budget only;
- a log-prob shift on held-out groups (one method's): the shift and its standard error from the evaluation.

``rewardalign.evaluate.paired.bootstrap`` turns the units of every world into an estimate with a 95% interval per
task (seeds, then prompts, redrawn) and pooled over tasks (each task weighs the same); ``verdict`` reads the
interval against the claimed side of 0. A composite claim ("every explicit-reward objective dominates DPO") holds
when every part holds, fails when any part fails, and is inconclusive otherwise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardalign.evaluate.metrics import Estimate
from rewardalign.evaluate.paired import PairedResult, WorldUnits, bootstrap, prompt_differences, verdict

Rows = Mapping[str, Mapping[str, Any]]
"""One world's runs by name (``sft`` among them): each with ``eval`` and ``prompt_rewards``."""

Z95 = 1.959963984540054


def matched_pairs(a: Sequence[tuple[float, float, str]], b: Sequence[tuple[float, float, str]]
                  ) -> list[tuple[str, str]]:
    """(A's run, B's run) pairs at matched KL from (kl, reward, name) points (see the module docstring)."""
    def best_within(points, kl):
        fits = [(r, n) for k, r, n in points if k <= kl]
        return max(fits)[1] if fits else None

    pairs = []
    for kl, _, name in b:
        best = best_within(a, kl)
        if best is not None:
            pairs.append((best, name))
    for kl, _, name in a:
        best = best_within(b, kl)
        if best is not None:
            pairs.append((name, best))
    return pairs


def sweep_points(rows: Rows, method: str) -> list[tuple[float, float, str]]:
    """The (kl, reward, run name) of ``method``'s β sweep (runs named ``method@beta``)."""
    out = []
    for name, r in rows.items():
        ev = r.get("eval") or {}
        if name.partition("@")[0] == method and "@" in name and _finite(ev.get("kl")) and _finite(
                ev.get("reward_mean")):
            out.append((float(ev["kl"]), float(ev["reward_mean"]), name))
    return out


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def gap_units(rows: Rows, a: str, b: str) -> WorldUnits | None:
    """Per prompt, A's mean reward advantage over B across the matched pairs of their β sweeps."""
    pairs = matched_pairs(sweep_points(rows, a), sweep_points(rows, b))
    if not pairs:
        return None
    diffs = [prompt_differences(rows[x]["prompt_rewards"], rows[y]["prompt_rewards"]) for x, y in pairs]
    per_prompt = [statistics.mean(col) if all(math.isfinite(v) for v in col) else math.nan for col in zip(*diffs)]
    return WorldUnits.of(per_prompt)


def difference_units(rows: Rows, a: str, b: str) -> WorldUnits | None:
    """Per prompt, run ``a``'s mean reward minus run ``b``'s."""
    if a not in rows or b not in rows:
        return None
    return WorldUnits.of(prompt_differences(rows[a]["prompt_rewards"], rows[b]["prompt_rewards"]))


def shift_units(rows: Rows, run: str, key: str = "chosen_logp_shift") -> WorldUnits | None:
    """A run's log-prob shift on held-out groups, with its standard error from the evaluation's 95% interval."""
    ev = (rows.get(run) or {}).get("eval") or {}
    mean, ci = ev.get(key), ev.get(f"{key}_ci")
    if not _finite(mean) or not ci or not all(_finite(c) for c in ci):
        return None
    return WorldUnits.normal(float(mean), (ci[1] - ci[0]) / (2 * Z95))


@dataclass
class Claim:
    """One claim: ``units`` maps a world's rows to its units (None: not measurable on that world), or
    ``part_results`` holds the claims that must all hold (a composite)."""

    claim: str
    source: str
    measure: str
    side: str  # ">0", ">=0" or "<0": the claimed side of 0
    units: Callable[[Rows], WorldUnits | None] | None = None
    part_results: list[Claim] = field(default_factory=list, repr=False)
    result: PairedResult | None = field(default=None, repr=False)

    def measure_on(self, by_task: Mapping[str, Mapping[int, Rows]], n_boot: int = 4000) -> None:
        if self.units is None:
            return
        worlds = {t: [u for s in sorted(seeds) if (u := self.units(seeds[s])) is not None]
                  for t, seeds in by_task.items()}
        if any(worlds.values()):
            self.result = bootstrap(worlds, n_boot=n_boot)

    def verdict(self, task: str | None = None) -> str:
        if self.part_results:
            parts = [p.verdict(task) for p in self.part_results]
            return "yes" if all(v == "yes" for v in parts) else "no" if "no" in parts else "inconclusive"
        est = self.estimate(task)
        return verdict(est, self.side) if est is not None else "inconclusive"

    def estimate(self, task: str | None = None) -> Estimate | None:
        if self.part_results:  # the weakest part: the smallest estimate
            ests = [e for p in self.part_results if (e := p.estimate(task)) is not None]
            return min(ests, key=lambda e: e.mean) if ests else None
        if self.result is None:
            return None
        return self.result.pooled if task is None else self.result.tasks.get(task)


def claims(default_beta: Callable[[str], str], noise_tag: str) -> list[Claim]:
    """The claims; ``default_beta(method)`` names the run of ``method`` at its tuned β (``dro@0.1``)."""
    out = [
        Claim("DRO keeps the chosen responses' log-prob at or above the reference", "000/001 Fig. 2",
              "Δ log p(chosen), DRO, tuned β", ">=0", lambda r: shift_units(r, default_beta("dro"))),
        Claim("... while DPO lowers it", "000/001 Fig. 2", "Δ log p(chosen), DPO, tuned β", "<0",
              lambda r: shift_units(r, default_beta("dpo"))),
        Claim("SPO-abs does not lower the chosen likelihood", "004 Fig. 2", "Δ log p(chosen), SPO-abs, tuned β",
              ">=0", lambda r: shift_units(r, default_beta("spo_abs"))),
        Claim("UNA with scores beats UNA with binary labels", "003 Table 1",
              "gold reward UNA-score − UNA-binary (BCE), tuned settings", ">0",
              lambda r: difference_units(r, default_beta("una_score_mse"), "una_binary_bce")),
        Claim(f"DRDO beats DPO when {noise_tag} of the preference labels are flipped",
              "002 Sec. 3-6 (noisy preferences)", "gold reward DRDO − DPO on the noisy pairs", ">0",
              lambda r: difference_units(r, "drdo_noisy", "dpo_noisy")),
    ]
    names = {"spo": ("SPO", "004 Table 2, Fig. 1"), "spo_abs": ("SPO-abs", "004 Table 2, Fig. 1"),
             "dro": ("DRO", "000/001"), "rpo": ("RPO (reward distillation)", "Fisch 2024, as used in 002"),
             "una_score_mse": ("UNA-score", "003")}
    frontier = [Claim(f"{name} on all K = 4 scored responses dominates DPO (best vs random) on the reward-KL "
                      "frontier", source, f"gold reward gap {name} − DPO at matched KL (β sweeps)", ">0",
                      lambda r, m=m: gap_units(r, m, "dpo")) for m, (name, source) in names.items()]
    every = Claim("Every explicit-reward objective (SPO, SPO-abs, DRO, RPO, UNA-score) dominates DPO on the "
                  "reward-KL frontier", "000/001, 003, 004", "all five gaps above (shown: the smallest)", ">0",
                  part_results=frontier)
    return [*out, *frontier, every]


def measure(by_task: Mapping[str, Mapping[int, Rows]], default_beta: Callable[[str], str], noise_tag: str,
            n_boot: int = 4000) -> list[Claim]:
    """Every claim measured on ``by_task[task][seed]`` worlds."""
    out = claims(default_beta, noise_tag)
    for c in out:
        c.measure_on(by_task, n_boot)
    return out


def fmt(est: Estimate | None) -> str:
    if est is None:
        return "–"
    return f"{est.mean:+.3f} [{est.lo:+.3f}, {est.hi:+.3f}]"


def pooled_table(cs: Sequence[Claim], tasks: Sequence[str]) -> str:
    """Claim | pooled estimate [95% CI] | pooled verdict | the verdict on each task."""
    side_text = {">0": "> 0", ">=0": "≥ 0", "<0": "< 0"}
    lines = ["| # | claim | source | measure (claimed) | pooled [95% CI] | holds, pooled | "
             + " | ".join(f"holds, {t}" for t in tasks) + " |", "|---|---|---|---|---|---|" + "---|" * len(tasks)]
    for i, c in enumerate(cs, 1):
        per = " | ".join(c.verdict(t) for t in tasks)
        lines.append(f"| {i} | {c.claim} | {c.source} | {c.measure} ({side_text[c.side]}) | {fmt(c.estimate())} | "
                     f"**{c.verdict()}** | {per} |")
    return "\n".join(lines)


def task_table(cs: Sequence[Claim], tasks: Sequence[str]) -> str:
    """Each claim's estimate [95% CI] on each task."""
    lines = ["| # | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for i, c in enumerate(cs, 1):
        lines.append(f"| {i} | " + " | ".join(f"{fmt(c.estimate(t))} ({c.verdict(t)})" for t in tasks) + " |")
    return "\n".join(lines)
