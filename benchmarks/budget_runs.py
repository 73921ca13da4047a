"""What ``dro_offset.py`` and ``tune_budget.py`` share: runs on the worlds of ``benchmarks/claims.py`` at another
alignment budget (``--steps``) over a grid of learning rates, and their table (per task: gold reward, KL and the
share of samples without EOS, averaged over seeds; then the mean gold reward over tasks and the worst EOS share)."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any

import claims

from rewardalign.demo.config import RM_LEARNING_RATES, MethodSpec


def rates(text: str) -> list[float]:
    """``--lrs`` (and tune_budget's ``--betas``): comma-separated numbers."""
    try:
        values = [float(x) for x in text.split(",") if x]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"comma-separated numbers, got {text!r}")
    return values


def parser(description: str, lrs: str, lrs_help: str) -> argparse.ArgumentParser:
    """The options both take: tasks, seeds (the tuning seed by default), steps, learning rates (``lrs``, the default
    as text: argparse parses it too), sizes, workers."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tasks", default="arithmetic,sort,examples/tasks/count.py:CountTask")
    p.add_argument("--seeds", default="1000,", type=lambda text: claims.seed_list(text, 1000),
                   help="a list (default 1000,: the tuning seed)")
    p.add_argument("--steps", type=int, default=200, help="alignment steps (default 200, the demo's)")
    p.add_argument("--lrs", default=lrs, type=rates, help=lrs_help)
    p.add_argument("--quick", action="store_true", help="the worlds of the --quick sizes")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", default="runs/claims", help="the claims benchmark's work folder")
    p.add_argument("--rm-kind", default=claims.RM_KIND, choices=tuple(RM_LEARNING_RATES),
                   help="the worlds' reward model (default bt, as claims.py)")
    return p


def run_at_steps(task: str, seed: int, work: str, quick: bool, spec: MethodSpec, name: str,
                 steps: int, rm_kind: str = claims.RM_KIND) -> dict[str, Any]:
    """One method (``spec``) on the (task, seed) world for ``steps`` alignment steps: its evaluation."""
    cfg, world, baseline, _ = claims._prepare_seed(seed, work, quick, task, rm_kind=rm_kind)
    cfg = dataclasses.replace(cfg, align_steps=steps)
    return claims._run_job(cfg, world, baseline, claims.Job(seed, name, spec))["eval"]


def header(first: str, tasks: Sequence[str]) -> list[str]:
    return ([f"| {first} | lr | " + " | ".join(f"{claims.task_folder(t)}: gold, KL, no EOS" for t in tasks)
             + " | mean gold | worst no EOS |", "|---|---|" + "---|" * (len(tasks) + 2)])


def row(name: str, lr: float, evs: dict[str, list[dict[str, Any]]]) -> tuple[str, float]:
    """A table row from each task's evaluations over seeds (``evs``), and its mean gold reward over tasks."""
    def mean(task: str, key: str) -> float:
        return statistics.mean(e[key] for e in evs[task])

    cells = [f"{mean(t, 'reward_mean'):.3f}, {mean(t, 'kl'):.2f}, {mean(t, 'eos_missing_fraction'):.2f}" for t in evs]
    gold = statistics.mean(mean(t, "reward_mean") for t in evs)
    worst = max(e["eos_missing_fraction"] for t in evs for e in evs[t])
    return f"| {name} | {lr:g} | " + " | ".join(cells) + f" | {gold:.3f} | {worst:.2f} |", gold
