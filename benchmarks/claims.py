"""The papers' qualitative claims, measured on the gym over several seeds: a table of measured values, each with
its source, its mean and spread over seeds, and whether it holds.

    python benchmarks/claims.py [--seeds 3] [--quick] [--work runs/claims] [--tasks arithmetic,sort] [--workers 2]
    python benchmarks/claims.py --tasks arithmetic,examples/tasks/reverse.py:ReverseTask --seeds 0,1,2
    python benchmarks/claims.py --tune [--tune-seeds 3]       # the learning-rate grid behind the demo's METHODS
    python benchmarks/claims.py --stages --tasks arithmetic,sort  # only the worlds: did SFT and the RM learn?

Pipeline. For each task and seed the demo's pipeline (``rewardalign.demo.stages.build_world``: SFT, K = 4
samples, BT "human" preferences from the gold reward, a BT reward model, annotation) is built once and cached in
``<work>/<task>/seed<N>``; then many cheap align + evaluate runs reuse it (each cached by every setting that
matters, so an interrupted benchmark resumes). Tasks are built-in names or specs (``package.module:Class``,
``path/to/file.py:Class``); the spec string, not the class, goes to the spawn workers, which load it again. A
world whose SFT or reward model did not learn (the demo's quality gates) is left out and named in the output,
unless ``--force``. Every method trains the demo's budget (``align_steps`` steps of
``align_batch_size`` groups) with its learning rate of ``METHODS`` (one grid for all, tuned on a seed that is
not measured here, ``--tune``); the learning rate is not re-tuned per beta.

Runs per seed:

- a beta sweep (beta = default x 1/3, 1, 3) of ``dpo`` (best vs random pairs of the RM-ranked groups),
  ``spo``, ``spo_abs``, ``dro``, ``rpo`` (RM rewards of the K responses) and ``una_score_mse`` (sigmoid scores):
  the reward-KL frontiers;
- ``una_binary_bce`` on the binary labels (RM reward above the group mean), default beta;
- the noisy-preference experiment of 002: "human" pairs (every pair of every group, BT-labelled on the gold
  reward) with 30% of the preferences flipped; ``dpo`` on those pairs as labelled, and ``drdo`` on the same
  pairs with the rewards of an Oracle reward model (002 Eq. 5: BT + 0.1 x NLL of the chosen response) trained
  on the same noisy pairs, its focal preference term on the pairs' own (noisy) chosen/rejected order.

Measures. Gold reward: the mean gold reward of 4 samples on each held-out prompt. KL: Monte-Carlo KL(pi ||
SFT) on the policy's samples. Delta log p(chosen): the mean log-prob change of the held-out groups' best (by
RM) response. "At matched KL" (the frontier gap of A over B): each run of A is compared with the best run of B
that used no more KL, and each run of B with the best run of A that used no more KL; the gap is the mean of
those reward differences (A's advantage). A method that stays at a lower KL than every run of the other is
thus compared at its own KL budget only (where the other has no run, nothing is compared).

Verdict ("holds?"): with m the mean and s the standard deviation over seeds of the claim's measure, yes when
[m - s, m + s] lies on the claimed side of the threshold, no when it lies on the other side, inconclusive when
it straddles it (or fewer than 2 seeds gave a value).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import dataclasses
import json
import math
import multiprocessing
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardalign.demo.config import METHODS, QUICK, DemoConfig, MethodSpec, demo_config
from rewardalign.demo.learning import StageDidNotLearn
from rewardalign.demo.methods import run_method, sft_baseline
from rewardalign.demo.stages import (
    Stages,
    World,
    build_world,
    preference_pairs,
    torch_threads,
    train_reward_model_stage,
)

BETA_MULTIPLIERS = (1 / 3, 1.0, 3.0)
SWEEP = ("dpo", "spo", "spo_abs", "dro", "rpo", "una_score_mse")
EXPLICIT = ("dro", "rpo", "spo", "spo_abs", "una_score_mse")
NOISE = 0.3
LR_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)


# ---- the jobs ---------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One align + evaluate run: ``name`` is unique within a (task, seed) world."""

    seed: int
    name: str
    spec: MethodSpec
    data: str | None = None  # a world file name under data/ (default: the annotated K = 4 groups)


def default_beta(objective: str) -> float:
    from rewardalign.objectives import get_objective

    return float(get_objective(objective).defaults["beta"])


def sweep_jobs(seed: int, multipliers: Sequence[float] = BETA_MULTIPLIERS) -> list[Job]:
    jobs = []
    for name in SWEEP:
        spec = METHODS[name]
        for m in multipliers:
            beta = float(f"{default_beta(spec.objective) * m:.3g}")
            args = {**spec.objective_args, "beta": beta}
            jobs.append(Job(seed, f"{name}@{beta:g}", dataclasses.replace(spec, objective_args=args)))
    return jobs


NOISE_LR = {"dpo": 1e-4, "drdo": 3e-5}
"""Learning rates of the noisy-pairs runs: the best of LR_GRID on the noisy pairs of the tuning seeds (--tune)."""


def noise_spec(method: str, lr: float | None = None) -> MethodSpec:
    """``dpo`` or ``drdo`` on the noisy human pairs, ordered as labelled (``order_by: position``)."""
    feedback = {"dpo": "human pairs (noisy)", "drdo": "human pairs (noisy) + Oracle rewards"}[method]
    spec = METHODS[method]
    return dataclasses.replace(spec, feedback=feedback, learning_rate=lr if lr is not None else NOISE_LR[method],
                               objective_args={**spec.objective_args, "order_by": "position"})


def noise_jobs(seed: int) -> list[Job]:
    tag = f"flip{round(100 * NOISE)}"
    return [Job(seed, f"{m}_{tag}", noise_spec(m), f"pairs_{tag}_rm.jsonl") for m in ("dpo", "drdo")]


def seed_jobs(seed: int, quick: bool) -> list[Job]:
    jobs = sweep_jobs(seed, (1.0, 3.0) if quick else BETA_MULTIPLIERS)
    jobs.append(Job(seed, "una_binary_bce", METHODS["una_binary_bce"]))
    return jobs + noise_jobs(seed)


# ---- the per-seed world (in a worker) ---------------------------------------------------------------------------


def task_folder(task: str) -> str:
    """A folder name for a task name or spec (``examples/tasks/reverse.py:ReverseTask`` ->
    ``examples_tasks_reverse.py_ReverseTask``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", task).strip("_.")


def seed_config(seed: int, work: Path, quick: bool, task: str, force: bool = False) -> DemoConfig:
    return demo_config({"seed": seed, "output": str(work / task_folder(task) / f"seed{seed}"), "quick": quick,
                        "task": task, "verbose": False, "plots": False, "force": force})


def noisy_pairs(cfg: DemoConfig, world: World, log: Callable[[str], None]) -> dict[str, Any]:
    """Pairs with NOISE of the preferences flipped, an Oracle reward model trained on them, and the pairs
    annotated with it (``data/pairs_flip30_rm.jsonl``, chosen first as labelled)."""
    from rewardalign.rewards.annotate import run_annotate as annotate

    root = Path(world.root)
    tag = f"flip{round(100 * NOISE)}"
    stages = Stages(root, log)
    key = {"world": world.stats["reward_model"], "noise": NOISE, "cfg": dataclasses.asdict(cfg) | {"output": None}}
    annotator = cfg.annotator | {"flip_prob": NOISE}
    out: dict[str, Any] = {}
    out["pairs"] = stages.run(f"pairs_{tag}", key, lambda: preference_pairs(cfg, root, annotator, f"pairs_{tag}"))
    out["oracle"] = stages.run(f"oracle_{tag}", key, lambda: train_reward_model_stage(
        cfg, root, pairs=f"pairs_{tag}", out=f"oracle_{tag}", kind="oracle"))

    def _annotate() -> dict[str, Any]:
        summary = annotate({"data": str(root / "data" / f"pairs_{tag}.jsonl"), "format": "pairs",
                            "output": str(root / "data" / f"pairs_{tag}_rm.jsonl"),
                            "source": {"type": "reward_model", "path": str(root / f"oracle_{tag}"),
                                       "batch_size": 256},
                            "transform": "none", "progress": False,
                            "cache_dir": str(root / "cache" / "annotate")}, verbose=False)
        return {"responses": summary["responses"], "statistics": summary["statistics"]}

    out["annotation"] = stages.run(f"annotate_{tag}", key, _annotate)
    return out


def _prepare_seed(seed: int, work: str, quick: bool, task: str, force: bool = False
                  ) -> tuple[DemoConfig, World, list[list[float]], dict[str, Any]]:
    """The (task, seed) world, its noisy pairs and the SFT baseline, in a worker; raises StageDidNotLearn where a
    quality gate fails (unless ``force``)."""
    cfg = seed_config(seed, Path(work), quick, task, force)
    with torch_threads(cfg.threads):
        world = build_world(cfg, log=lambda _m: None)
        noise = noisy_pairs(cfg, world, lambda _m: None)
        base = sft_baseline(cfg, world, Path(world.root) / "claims" / "sft")
    return cfg, world, base["rewards"], {"sft": _row_eval(base), "noise": noise}


def _build_world(seed: int, work: str, quick: bool, task: str) -> dict[str, Any]:
    """Only the (task, seed) world's stages (``--stages``), gates reported rather than enforced: its statistics."""
    cfg = seed_config(seed, Path(work), quick, task, force=True)
    with torch_threads(cfg.threads):
        return build_world(cfg, log=lambda _m: None).stats


def stages_table(stats: dict[tuple[str, int], dict[str, Any]]) -> str:
    """Did the stages learn, per (task, seed): SFT's held-out gold reward beside the demonstrations' and random
    responses', and the reward model's held-out accuracies (against the noisy labels, and against the gold order
    of held-out groups' pairs: the quality gate's measure)."""
    lines = ["| task | seed | SFT gold | demonstrations | random | SFT / demonstrations | SFT steps (best) | "
             "RM accuracy, labels | RM accuracy, gold | RM steps |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (task, seed), s in sorted(stats.items()):
        d, sft, rm, ann = s["data"], s["sft"], s["reward_model"], s["annotation"]
        lines.append(f"| {task} | {seed} | {sft['heldout_gold']:.3f} | {d['demonstration_gold_mean']:.3f} | "
                     f"{d['random_gold_mean']:.3f} | {sft['heldout_gold'] / d['demonstration_gold_mean']:.2f} | "
                     f"{sft['steps']} ({sft['best_step']}) | {rm['heldout_accuracy']:.3f} | "
                     f"{ann['heldout_rm_gold_agreement']:.3f} | {rm['steps']} |")
    return "\n".join(lines)


def _row_eval(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("reward_mean", "reward_ci", "kl", "chosen_logp_shift", "rejected_logp_shift")
    return {k: result.get(k) for k in keys}


def _run_job(cfg: DemoConfig, world: World, baseline: list[list[float]], job: Job) -> dict[str, Any]:
    with torch_threads(cfg.threads):
        data = str(Path(world.root) / "data" / job.data) if job.data else None
        row = run_method(cfg, world, job.name, job.spec, Path(world.root) / "claims" / job.name, baseline,
                         data=data)
    return row | {"seed": job.seed}


# ---- claims -----------------------------------------------------------------------------------------------------


def frontier_gap(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    """A's gold-reward advantage over B at matched KL from (kl, reward) points (see the module docstring)."""
    def best_within(points, kl):
        fits = [r for k, r in points if k <= kl]
        return max(fits) if fits else None

    diffs = []
    for kl, r in b:
        best = best_within(a, kl)
        if best is not None:
            diffs.append(best - r)
    for kl, r in a:
        best = best_within(b, kl)
        if best is not None:
            diffs.append(r - best)
    return statistics.mean(diffs) if diffs else math.nan


@dataclass
class Claim:
    claim: str
    source: str
    measure: str
    side: str  # ">0", ">=0" or "<0": the claimed side of 0
    values: list[float]

    @property
    def finite(self) -> list[float]:
        return [v for v in self.values if v is not None and math.isfinite(v)]

    def verdict(self) -> str:
        vals = self.finite
        if len(vals) < 2:
            return "inconclusive"
        m, s = statistics.mean(vals), statistics.stdev(vals)
        lo, hi = m - s, m + s
        holds, fails = {">0": (lo > 0, hi <= 0), ">=0": (lo >= 0, hi < 0), "<0": (hi < 0, lo >= 0)}[self.side]
        return "yes" if holds else "no" if fails else "inconclusive"

    def summary(self) -> str:
        vals = self.finite
        if not vals:
            return "–"
        if len(vals) == 1:
            return f"{vals[0]:+.3f} (1 seed)"
        return f"{statistics.mean(vals):+.3f} ± {statistics.stdev(vals):.3f}"


def _get(rows: dict[str, dict[str, Any]], name: str, key: str) -> float:
    row = rows.get(name)
    value = row["eval"].get(key) if row else None
    return float(value) if isinstance(value, (int, float)) else math.nan


def _points(rows: dict[str, dict[str, Any]], method: str) -> list[tuple[float, float]]:
    return [(r["eval"]["kl"], r["eval"]["reward_mean"]) for name, r in rows.items()
            if name.split("@")[0] == method and "@" in name
            and r["eval"].get("kl") is not None and r["eval"].get("reward_mean") is not None]


def measure_claims(by_seed: dict[int, dict[str, dict[str, Any]]]) -> list[Claim]:
    """The claims' measures, one value per seed."""
    seeds = sorted(by_seed)

    def per_seed(fn: Callable[[dict[str, dict[str, Any]]], float]) -> list[float]:
        return [fn(by_seed[s]) for s in seeds]

    def at_default(method: str) -> str:
        return f"{method}@{default_beta(METHODS[method].objective):g}"

    tag = f"flip{round(100 * NOISE)}"
    claims = [
        Claim("DRO keeps the chosen responses' log-prob at or above the reference", "000/001 Fig. 2",
              "Δ log p(chosen), DRO, default β", ">=0",
              per_seed(lambda r: _get(r, at_default("dro"), "chosen_logp_shift"))),
        Claim("... while DPO lowers it", "000/001 Fig. 2", "Δ log p(chosen), DPO, default β", "<0",
              per_seed(lambda r: _get(r, at_default("dpo"), "chosen_logp_shift"))),
        Claim("SPO on all K = 4 scored responses beats DPO (best vs random) at matched KL", "004 Table 2, Fig. 1",
              "gold reward gap SPO − DPO at matched KL (β sweeps)", ">0",
              per_seed(lambda r: frontier_gap(_points(r, "spo"), _points(r, "dpo")))),
        Claim("SPO-abs on all K = 4 scored responses beats DPO (best vs random) at matched KL",
              "004 Table 2, Fig. 1", "gold reward gap SPO-abs − DPO at matched KL (β sweeps)", ">0",
              per_seed(lambda r: frontier_gap(_points(r, "spo_abs"), _points(r, "dpo")))),
        Claim("SPO-abs does not lower the chosen likelihood", "004 Fig. 2", "Δ log p(chosen), SPO-abs, default β",
              ">=0", per_seed(lambda r: _get(r, at_default("spo_abs"), "chosen_logp_shift"))),
        Claim("UNA with scores beats UNA with binary labels", "003 Table 1",
              "gold reward UNA-score − UNA-binary (BCE), default β", ">0",
              per_seed(lambda r: _get(r, at_default("una_score_mse"), "reward_mean")
                       - _get(r, "una_binary_bce", "reward_mean"))),
        Claim(f"DRDO beats DPO when {round(100 * NOISE)}% of the preference labels are flipped",
              "002 Sec. 3-6 (noisy preferences)", "gold reward DRDO − DPO on the noisy pairs", ">0",
              per_seed(lambda r: _get(r, f"drdo_{tag}", "reward_mean") - _get(r, f"dpo_{tag}", "reward_mean"))),
    ]
    names = {"dro": "DRO", "rpo": "RPO (reward distillation)", "una_score_mse": "UNA-score"}
    sources = {"dro": "000/001", "rpo": "Fisch 2024, as used in 002", "una_score_mse": "003"}
    for m in ("dro", "rpo", "una_score_mse"):  # SPO and SPO-abs: the rows above
        claims.append(Claim(f"{names[m]} dominates DPO on the reward-KL frontier", f"{sources[m]}",
                            f"gold reward gap {names[m]} − DPO at matched KL (β sweeps)", ">0",
                            per_seed(lambda r, m=m: frontier_gap(_points(r, m), _points(r, "dpo")))))
    claims.append(Claim(
        "Every explicit-reward objective (DRO, RPO, SPO, SPO-abs, UNA-score) dominates DPO on the reward-KL "
        "frontier", "000/001, 003, 004", "the smallest of their five gaps to DPO at matched KL", ">0",
        per_seed(lambda r: min(frontier_gap(_points(r, m), _points(r, "dpo")) for m in EXPLICIT))))
    return claims


def claims_table(claims: list[Claim], seeds: Sequence[int], command: str) -> str:
    lines = [f"`{command}`", "",
             "| # | claim | source | measure | mean ± std over seeds | per seed (" + ", ".join(map(str, seeds))
             + ") | holds? |", "|---|---|---|---|---|---|---|"]
    for i, c in enumerate(claims, 1):
        per = ", ".join("–" if v is None or not math.isfinite(v) else f"{v:+.3f}" for v in c.values)
        side = {">0": "> 0", ">=0": "≥ 0", "<0": "< 0"}[c.side]
        lines.append(f"| {i} | {c.claim} | {c.source} | {c.measure} (claimed {side}) | "
                     f"{c.summary()} | {per} | **{c.verdict()}** |")
    return "\n".join(lines)


def runs_table(by_seed: dict[int, dict[str, dict[str, Any]]], sft: dict[int, dict[str, Any]]) -> str:
    """Every run's gold reward, KL and chosen shift, mean ± std over seeds."""
    names = sorted({n for rows in by_seed.values() for n in rows}, key=_run_order)
    lines = ["| run | lr | gold reward | KL(π‖SFT) | Δ log p chosen | Δ log p rejected |", "|---|---|---|---|---|---|"]

    def ms(values: list[float], digits: int = 3) -> str:
        vals = [v for v in values if v is not None and math.isfinite(v)]
        if not vals:
            return "–"
        if len(vals) == 1:
            return f"{vals[0]:.{digits}f}"
        return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"

    lines.append(f"| sft | – | {ms([s['reward_mean'] for s in sft.values()])} | 0 | 0 | 0 |")
    for n in names:
        rows = [by_seed[s][n] for s in sorted(by_seed) if n in by_seed[s]]
        ev = [r["eval"] for r in rows]
        lines.append(f"| {n} | {rows[0]['learning_rate']:g} | {ms([e['reward_mean'] for e in ev])} | "
                     f"{ms([e['kl'] for e in ev], 2)} | {ms([e['chosen_logp_shift'] for e in ev], 2)} | "
                     f"{ms([e['rejected_logp_shift'] for e in ev], 2)} |")
    return "\n".join(lines)


def _run_order(name: str) -> tuple:
    base, _, beta = name.partition("@")
    return (base, float(beta) if beta else 0.0)


def frontier_plot(by_seed: dict[int, dict[str, dict[str, Any]]], path: Path) -> Path | None:
    """Mean gold reward against mean KL over seeds (error bars: std over seeds; KL on a log axis), one curve per
    swept objective through its betas."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    curves: dict[str, list[tuple[float, float, float, float, float]]] = {}
    for n in {n for rows in by_seed.values() for n in rows if "@" in n}:
        evs = [by_seed[s][n]["eval"] for s in by_seed if n in by_seed[s]]
        kls = [e["kl"] for e in evs if e.get("kl") is not None]
        rws = [e["reward_mean"] for e in evs if e.get("reward_mean") is not None]
        if not kls or not rws:
            continue
        base, _, beta = n.partition("@")
        spread = (statistics.stdev(kls) if len(kls) > 1 else 0.0, statistics.stdev(rws) if len(rws) > 1 else 0.0)
        curves.setdefault(base, []).append((statistics.mean(kls), statistics.mean(rws), *spread, float(beta)))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 5))
    for base in sorted(curves):
        pts = sorted(curves[base])
        xs, ys = [max(p[0], 1e-3) for p in pts], [p[1] for p in pts]
        lower = [min(p[2], 0.9 * x) for p, x in zip(pts, xs)]  # a log axis cannot reach 0
        ax.errorbar(xs, ys, xerr=[lower, [p[2] for p in pts]], yerr=[p[3] for p in pts], marker="o", capsize=3,
                    label=base)
        for x, y, p in zip(xs, ys, pts):
            ax.annotate(f"β={p[4]:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("KL(π ‖ SFT), sampled estimate (log scale)")
    ax.set_ylabel("gold reward (mean ± std over seeds)")
    ax.set_title(f"reward-KL frontiers, {len(by_seed)} seed(s)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- driver -----------------------------------------------------------------------------------------------------


def _pool(workers: int) -> futures.Executor:
    if workers <= 1:
        return _Inline()
    return futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


class _Inline(futures.Executor):
    """An executor that runs each call at once, in this process (``--workers 1``)."""

    def submit(self, fn, /, *args, **kwargs):
        f: futures.Future = futures.Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            f.set_exception(err)
        return f


def prepare_worlds(pool: futures.Executor, tasks: Sequence[str], seeds: Sequence[int], work: Path, quick: bool,
                   force: bool, log: Callable[[str], None], start: float) -> tuple[dict, dict[tuple[str, int], str]]:
    """Every (task, seed) world, built in the pool: ({(task, seed): prepared}, {(task, seed): why it was left
    out}); a world whose SFT or reward model did not learn is left out unless ``force``."""
    prepared = {(t, s): pool.submit(_prepare_seed, s, str(work), quick, t, force) for t in tasks for s in seeds}
    worlds, stopped = {}, {}
    for (t, s), f in prepared.items():
        try:
            worlds[(t, s)] = f.result()
            log(f"[{t} seed {s}] world ready ({time.perf_counter() - start:.0f} s)")
        except StageDidNotLearn as err:
            stopped[(t, s)] = str(err)
            log(f"[{t} seed {s}] left out: {err}")
    return worlds, stopped


def run_claims(tasks: Sequence[str], seeds: Sequence[int], work: Path, quick: bool, workers: int,
               force: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every claim's runs on every (task, seed) world; ``by_task[task][seed][run name]`` is the run's row."""
    start = time.perf_counter()
    with _pool(workers) as pool:
        worlds, stopped = prepare_worlds(pool, tasks, seeds, work, quick, force, log, start)
        pending = {}
        for (t, s), (cfg, world, baseline, _) in worlds.items():
            for job in seed_jobs(s, quick):
                pending[pool.submit(_run_job, cfg, world, baseline, job)] = (t, job)
        by_task: dict[str, dict[int, dict[str, dict[str, Any]]]] = {
            t: {s: {} for s in seeds if (t, s) in worlds} for t in tasks}
        for f in futures.as_completed(pending):
            t, job = pending[f]
            row = f.result()
            by_task[t][job.seed][job.name] = row
            ev = row["eval"]
            log(f"[{t} seed {job.seed}] {job.name}: gold {ev['reward_mean']:.3f}, KL {ev['kl']:.2f}, "
                f"Δlogp chosen {ev['chosen_logp_shift']:+.2f} ({row['seconds']:.0f} s)")
    return {"by_task": by_task, "sft": {t: {s: w[3]["sft"] for (tt, s), w in worlds.items() if tt == t}
                                        for t in tasks},
            "worlds": {f"{t} seed {s}": w[1].stats | {"noise": w[3]["noise"]} for (t, s), w in worlds.items()},
            "stopped": {f"{t} seed {s}": why for (t, s), why in stopped.items()},
            "seconds": round(time.perf_counter() - start, 1)}


def tune(tasks: Sequence[str], seeds: Sequence[int], work: Path, quick: bool, workers: int, methods: Sequence[str],
         force: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The learning-rate grid: every method x LR_GRID on the tuning seeds of every task; the best by held-out gold
    reward averaged over the (task, seed) worlds (the measured claims use other seeds)."""
    start = time.perf_counter()
    tag = f"flip{round(100 * NOISE)}"
    rows = [*methods, *(f"{m}_{tag}" for m in NOISE_LR)]
    with _pool(workers) as pool:
        worlds, stopped = prepare_worlds(pool, tasks, seeds, work, quick, force, log, start)
        pending = {}
        for (t, s), (cfg, world, baseline, _) in worlds.items():
            for row in rows:
                for lr in LR_GRID:
                    if row in METHODS:
                        job = Job(s, f"tune_{row}@lr{lr:g}", dataclasses.replace(METHODS[row], learning_rate=lr))
                    else:
                        job = Job(s, f"tune_{row}@lr{lr:g}", noise_spec(row.split("_")[0], lr),
                                  f"pairs_{tag}_rm.jsonl")
                    pending[pool.submit(_run_job, cfg, world, baseline, job)] = (t, s, row, lr)
        results: dict[str, dict[float, list[dict[str, Any]]]] = {m: {lr: [] for lr in LR_GRID} for m in rows}
        for f in futures.as_completed(pending):
            t, s, m, lr = pending[f]
            ev = f.result()["eval"]
            results[m][lr].append(ev)
            log(f"[{t} seed {s}] {m} lr {lr:g}: gold {ev['reward_mean']:.3f}, KL {ev['kl']:.2f}")
    if not worlds:
        raise SystemExit("no world passed the quality gates: " + json.dumps({str(k): v for k, v in stopped.items()}))

    def mean(m: str, lr: float, key: str) -> float:
        return statistics.mean(e[key] for e in results[m][lr])

    best = {m: max(LR_GRID, key=lambda lr, m=m: mean(m, lr, "reward_mean")) for m in rows}
    lines = ["| method | " + " | ".join(f"lr {lr:g}: gold (KL)" for lr in LR_GRID) + " | best |",
             "|---|" + "---|" * (len(LR_GRID) + 1)]
    for m in rows:
        cells = [f"{mean(m, lr, 'reward_mean'):.3f} ({mean(m, lr, 'kl'):.1f})" for lr in LR_GRID]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {best[m]:g} |")
    return {"best": best, "table": "\n".join(lines), "results": results,
            "stopped": {f"{t} seed {s}": why for (t, s), why in stopped.items()},
            "seconds": round(time.perf_counter() - start, 1)}


def seed_list(text: str, first: int) -> list[int]:
    """``"3"`` -> ``[first, first + 1, first + 2]``; ``"0,1,2"`` -> ``[0, 1, 2]``."""
    parts = [p for p in text.split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are a count or a comma-separated list, got {text!r}") from None
    if len(values) == 1 and "," not in text:
        return list(range(first, first + values[0]))
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="3", help="measured seeds: a count (0, 1, ...) or a list 0,1,2 (default 3)")
    parser.add_argument("--quick", action="store_true", help="the demo's --quick sizes and a 2-point beta sweep (default x 1, 3)")
    parser.add_argument("--work", default="runs/claims", help="work folder (cached worlds and runs)")
    parser.add_argument("--tasks", "--task", default="arithmetic",
                        help="gym tasks, comma-separated: names or specs such as path/to/file.py:Class (default "
                             "arithmetic)")
    parser.add_argument("--workers", type=int, default=2, help="processes, one torch thread each (default 2)")
    parser.add_argument("--output", default=None, help="where to write claims.md / claims.json (default: --work)")
    parser.add_argument("--force", action="store_true", help="keep worlds whose SFT or reward model did not learn")
    parser.add_argument("--tune", action="store_true", help="run the learning-rate grid instead of the claims")
    parser.add_argument("--stages", action="store_true",
                        help="only build the worlds (data, SFT, reward model) and tabulate whether they learned")
    parser.add_argument("--tune-seeds", default="3",
                        help="tuning seeds: a count (1000, 1001, ...) or a list 1000,1001 (default 3)")
    args = parser.parse_args(argv)
    command = "python benchmarks/claims.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                   else sys.argv[1:]))
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    work = Path(args.work)
    out = Path(args.output) if args.output else work
    out.mkdir(parents=True, exist_ok=True)
    if args.stages:
        seeds = seed_list(args.seeds, 0)
        start = time.perf_counter()
        with _pool(args.workers) as pool:
            pending = {(t, s): pool.submit(_build_world, s, str(work), args.quick, t) for s in seeds for t in tasks}
            stats = {key: f.result() for key, f in pending.items()}
        text = (f"`{command.strip()}` ({time.perf_counter() - start:.0f} s, {args.workers} worker(s) × 1 torch "
                f"thread)\n\n{stages_table(stats)}\n")
        (out / "stages.md").write_text(text)
        print(text)
        return 0
    if args.tune:
        seeds = seed_list(args.tune_seeds, 1000)
        result = tune(tasks, seeds, work, args.quick, args.workers, list(METHODS), args.force)
        text = f"`{command.strip()}`\n\n{result['table']}\n\nbest: {json.dumps(result['best'])}\n"
        (out / "tune.md").write_text(text)
        (out / "tune.json").write_text(json.dumps(result, indent=1, default=str))
        print("\n" + text + f"({result['seconds']:.0f} s)")
        return 0
    seeds = seed_list(args.seeds, 0)
    result = run_claims(tasks, seeds, work, args.quick, args.workers, args.force)
    setup = (f"Tasks {', '.join(f'`{t}`' for t in tasks)}, seeds {seeds}, "
             f"{'quick' if args.quick else 'default'} sizes ({json.dumps(QUICK) if args.quick else 'the demo defaults'}"
             f"); {args.workers} worker process(es) × 1 torch thread; wall time {result['seconds']:.0f} s (this "
             f"invocation: worlds and runs already in {work} are reused).")
    notes = [
        "- holds?: with m ± s the mean and standard deviation over seeds, yes when [m − s, m + s] lies on the "
        "claimed side of 0, no when it lies on the other side, inconclusive when it straddles 0.",
        "- Every run: the demo's budget (align_steps × align_batch_size groups, constant learning rate) and the "
        "learning rate of `rewardalign.demo.config.METHODS` (best of {1e-5, 3e-5, 1e-4, 3e-4, 1e-3} on the tuning "
        f"seeds 1000-1002, `--tune`), not re-tuned per β; the noisy-pair runs: {NOISE_LR} (tuned the same way "
        "on the noisy pairs).",
        "- Gold reward and KL: 4 samples per held-out prompt; Δ log p: held-out groups' best / worst response by "
        "the RM; matched KL: each run against the other method's best run within its KL (module docstring).",
    ]
    stopped = [f"- left out, a stage did not learn: {world}: {why}" for world, why in result["stopped"].items()]
    md = ["# The papers' claims, measured on the gym", "", setup, "", *notes, *stopped, ""]
    claims_json = {}
    for task in tasks:
        by_seed = result["by_task"][task]
        if not by_seed:
            continue
        claims = measure_claims(by_seed)
        claims_json[task] = [dataclasses.asdict(c) | {"verdict": c.verdict()} for c in claims]
        table = claims_table(claims, sorted(by_seed), command.strip())
        runs = runs_table(by_seed, result["sft"][task])
        plot = frontier_plot(by_seed, out / f"claims_frontier_{task_folder(task)}.png")
        md += [f"## Task `{task}`", "", table, "", "### Every run", "", runs, ""]
        if plot is not None:
            md += [f"![reward-KL frontier]({plot.name})", ""]
        print(f"\n## {task}\n\n" + table + "\n\n" + runs)
    (out / "claims.md").write_text("\n".join(md))
    (out / "claims.json").write_text(json.dumps({"command": command.strip(), "claims": claims_json, **result},
                                                indent=1, default=str))
    print("\n" + setup + "\n" + "\n".join(stopped))
    print(f"\nwritten: {out / 'claims.md'}, claims.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
