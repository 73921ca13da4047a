"""The papers' qualitative claims, measured on several gym tasks and seeds: for each claim an estimate with a 95%
interval paired on prompts, a verdict per task and pooled over tasks.

    python benchmarks/claims.py --tune [--tasks arithmetic,sort,examples/tasks/count.py:CountTask] [--quick]  # first
    python benchmarks/claims.py [--tasks ...] [--seeds 3] [--quick] [--workers 2]
    python benchmarks/claims.py --tasks sort,examples/tasks/reverse.py:ReverseTask --seeds 0,1,2 --quick
    python benchmarks/claims.py --stages --tasks arithmetic,sort --seeds 3  # only the worlds: did SFT and the RM learn?

Pipeline. For each task and seed the demo's pipeline (``rewardalign.demo.stages.build_world``: SFT, K = 4
samples, BT "human" preferences from the gold reward, a reward model, annotation) is built once and cached in
``<work>/<task>/seed<N>``; then many cheap align + evaluate runs reuse it (each cached by every setting that
matters, so an interrupted benchmark resumes). Tasks are built-in names or specs (``package.module:Class``,
``path/to/file.py:Class``); the spec string, not the class, goes to the spawn workers, which load it again. A
world whose SFT or reward model did not learn (the demo's quality gates) is left out and named in the output,
unless ``--force``. Every run trains the demo's budget (``align_steps`` steps of ``align_batch_size`` groups).
The reward model is the papers' score head (``rm_kind: bt``), not the demo's default likelihood reward model:
the published claims and their tuning were measured on it (``--rm-kind likelihood`` builds and measures the demo's
worlds instead; a work folder holds one kind at a time, so give each kind its own ``--work``).

Tuning (``--tune``, on seeds 1000, ... of the same tasks, never measured): every method gets the same grid, the
learning rates TUNE_LRS x its default β times BETA_MULTIPLIERS, and keeps the cell with the best held-out gold
reward averaged over seeds and then tasks (``tune.json``, which the measured run reads). DRO is tuned once per
offset of DRO_OFFSETS with 001's prompt term beside ``dro`` at its defaults (``benchmarks/dro_offset.py`` has
the evidence for those defaults at the demo's full budget).

Runs per measured world, at the tuned settings:

- a β sweep (tuned β x 1/3, 1, 3) of ``dpo`` (best vs random pairs of the RM-ranked groups), ``spo``,
  ``spo_abs``, ``dro``, ``rpo`` (RM rewards of the K responses) and ``una_score_mse`` (sigmoid scores): the
  reward-KL frontiers;
- ``una_binary_bce`` on the binary labels (RM reward above the group mean);
- the noisy-preference experiment of 002: "human" pairs (every pair of every group, BT-labelled on the gold
  reward) with 30% of the preferences flipped; ``dpo`` on those pairs as labelled, and ``drdo`` on the same
  pairs with the rewards of an Oracle reward model (002 Eq. 5: BT + 0.1 x NLL of the chosen response) trained
  on the same noisy pairs, its focal preference term on the pairs' own (noisy) chosen/rejected order.

Measures (``claims_measure``). Gold reward: the mean gold reward of the samples of each held-out prompt; KL:
Monte-Carlo KL(pi || SFT) on the policy's samples; Δ log p(chosen): the mean log-prob change of the held-out
groups' best (by RM) response. Differences between methods are per prompt (the same prompts for every run of a
world); "at matched KL" pairs each run with the other method's best run within its KL. Intervals: a bootstrap
over seeds and, within a seed, prompts (``rewardalign.evaluate.paired``); verdict "yes" when the 95% interval
lies on the claimed side of 0, "no" when on the other side, "inconclusive" otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import dataclasses
import json
import math
import multiprocessing
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import claims_measure

from rewardalign.demo.config import METHODS, QUICK, RM_LEARNING_RATES, DemoConfig, MethodSpec, demo_config
from rewardalign.demo.learning import StageDidNotLearn
from rewardalign.demo.methods import nested_rewards, run_method, sft_baseline
from rewardalign.demo.stages import (
    Stages,
    World,
    build_world,
    preference_pairs,
    torch_threads,
    train_reward_model_stage,
)
from rewardalign.runs import write_json, write_text

BETA_MULTIPLIERS = (1 / 3, 1.0, 3.0)
"""β of a sweep, and of the tuning grid: the tuned (or default) β times these."""
SWEEP = ("dpo", "spo", "spo_abs", "dro", "rpo", "una_score_mse")
BASELINES = ("ipo", "simpo", "kto")
"""The demo's other baselines: tuned on the same grid, not measured by the claims (the demo runs every method at this
grid's best: ``rewardalign.demo.config.METHODS``)."""
TUNED = (*SWEEP, "una_binary_bce", "drdo", *BASELINES)
"""The methods tuned on the same grid: those the claims measure and :data:`BASELINES`; the noisy-pair rows are
added to them."""
NOISE = 0.3
RM_KIND = "bt"
"""The worlds' reward model unless ``--rm-kind`` says otherwise: the papers' score head, which the published claims
and their tuning ran on."""
TUNE_LRS = (3e-5, 1e-4, 3e-4)
"""The learning rates of the tuning grid (the best of a wider grid was always among these, --tune of earlier
versions)."""


# ---- the settings and the jobs -----------------------------------------------------------------------------------


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


def noise_spec(method: str) -> MethodSpec:
    """``dpo`` or ``drdo`` on the noisy human pairs, ordered as labelled (``order_by: position``)."""
    feedback = {"dpo": "human pairs (noisy)", "drdo": "human pairs (noisy) + Oracle rewards"}[method]
    spec = METHODS[method]
    return dataclasses.replace(spec, feedback=feedback, objective_args={**spec.objective_args, "order_by": "position"})


NOISY_DATA = f"pairs_flip{round(100 * NOISE)}_rm.jsonl"
DRO_OFFSETS = {name: args | {"prompt_normalization": True} for name, args in (
    ("dro[z0=0]", {"z0": 0.0, "baseline": "none"}), ("dro[z0=auto]", {"z0": "auto", "baseline": "none"}),
    ("dro[baseline=group_mean]", {"z0": 0.0, "baseline": "group_mean"}))}
"""DRO's offsets with 001's prompt term (none, the mean training reward, a per-prompt baseline: the group's mean
reward, DRO's V(x)), tuned beside ``dro`` (the defaults) as evidence at the claims' budget; the default's evidence
at the demo's full budget is ``benchmarks/dro_offset.py``'s."""


def base_specs() -> dict[str, tuple[MethodSpec, str | None]]:
    """Every tuned row: its spec before tuning and its data file (None: the annotated K = 4 groups)."""
    rows: dict[str, tuple[MethodSpec, str | None]] = {m: (METHODS[m], None) for m in TUNED}
    rows |= {f"{m}_noisy": (noise_spec(m), NOISY_DATA) for m in ("dpo", "drdo")}
    return rows


def tuned_spec(row: str, tuned: dict[str, dict[str, Any]]) -> tuple[MethodSpec, str | None]:
    """A row's spec with its tuned learning rate and β (``tuned[row]``, from ``--tune``)."""
    spec, data = base_specs()[row]
    if row not in tuned:
        raise SystemExit(f"no tuned settings for {row!r}: run `python benchmarks/claims.py --tune` first (or give "
                         "--settings)")
    best = tuned[row]
    return dataclasses.replace(spec, learning_rate=best["learning_rate"],
                               objective_args={**spec.objective_args, "beta": best["beta"]}), data


def at_beta(name: str, beta: float) -> str:
    return f"{name}@{beta:.3g}"


def seed_jobs(seed: int, tuned: dict[str, dict[str, Any]], multipliers: Sequence[float] = BETA_MULTIPLIERS
              ) -> list[Job]:
    """A measured world's runs: the β sweeps around each tuned β (at its tuned learning rate), UNA on binary
    labels and the noisy-pair runs at their tuned settings."""
    jobs = []
    for name in SWEEP:
        spec, _ = tuned_spec(name, tuned)
        for m in multipliers:
            beta = float(f"{spec.objective_args['beta'] * m:.3g}")
            jobs.append(Job(seed, at_beta(name, beta),
                            dataclasses.replace(spec, objective_args={**spec.objective_args, "beta": beta})))
    for row in ("una_binary_bce", "dpo_noisy", "drdo_noisy"):
        spec, data = tuned_spec(row, tuned)
        jobs.append(Job(seed, row, spec, data))
    return jobs


def tune_jobs(seed: int) -> list[tuple[str, float, float, Job]]:
    """The tuning grid of one world: every row x TUNE_LRS x (its default β x BETA_MULTIPLIERS), and DRO once more
    per offset of DRO_OFFSETS; (row, learning rate, beta, job)."""
    rows = base_specs()
    rows |= {name: (dataclasses.replace(METHODS["dro"], objective_args=args), None)
             for name, args in DRO_OFFSETS.items()}
    jobs = []
    for row, (spec, data) in rows.items():
        for lr in TUNE_LRS:
            for m in BETA_MULTIPLIERS:
                beta = float(f"{default_beta(spec.objective) * m:.3g}")
                args = {**spec.objective_args, "beta": beta}
                job = Job(seed, f"tune_{row}@lr{lr:g}_beta{beta:g}",
                          dataclasses.replace(spec, learning_rate=lr, objective_args=args), data)
                jobs.append((row, lr, beta, job))
    return jobs


# ---- the per-seed world (in a worker) ---------------------------------------------------------------------------


def task_folder(task: str) -> str:
    """A folder name for a task name or spec (``examples/tasks/reverse.py:ReverseTask`` ->
    ``examples_tasks_reverse.py_ReverseTask``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", task).strip("_.")


def seed_config(seed: int, work: Path, quick: bool, task: str, force: bool = False,
                rm_kind: str = RM_KIND) -> DemoConfig:
    return demo_config({"seed": seed, "output": str(work / task_folder(task) / f"seed{seed}"), "quick": quick,
                        "task": task, "verbose": False, "plots": False, "force": force, "rm_kind": rm_kind})


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


def _prepare_seed(seed: int, work: str, quick: bool, task: str, force: bool = False,
                  rm_kind: str = RM_KIND) -> tuple[DemoConfig, World, list[list[float]], dict[str, Any]]:
    """The (task, seed) world, its noisy pairs and the SFT baseline, in a worker; raises StageDidNotLearn where a
    quality gate fails (unless ``force``)."""
    cfg = seed_config(seed, Path(work), quick, task, force, rm_kind)
    with torch_threads(cfg.threads):
        world = build_world(cfg, log=lambda _m: None)
        noise = noisy_pairs(cfg, world, lambda _m: None)
        base = sft_baseline(cfg, world, Path(world.root) / "claims" / "sft")
    return cfg, world, base["rewards"], {"sft": _row_eval(base), "noise": noise}


def _build_world(seed: int, work: str, quick: bool, task: str, rm_kind: str) -> dict[str, Any]:
    """Only the (task, seed) world's stages (``--stages``), gates reported rather than enforced: its statistics."""
    cfg = seed_config(seed, Path(work), quick, task, force=True, rm_kind=rm_kind)
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
    keys = ("reward_mean", "reward_ci", "kl", "chosen_logp_shift", "chosen_logp_shift_ci", "rejected_logp_shift",
            "eos_missing_fraction")
    return {k: result.get(k) for k in keys}


def _run_job(cfg: DemoConfig, world: World, baseline: list[list[float]], job: Job) -> dict[str, Any]:
    with torch_threads(cfg.threads):
        data = str(Path(world.root) / "data" / job.data) if job.data else None
        run_dir = Path(world.root) / "claims" / job.name
        row = run_method(cfg, world, job.name, job.spec, run_dir, baseline, data=data)
    return row | {"seed": job.seed, "prompt_rewards": prompt_rewards(run_dir / "samples.jsonl")}


def prompt_rewards(samples: Path) -> list[list[float]]:
    """The gold reward of every sample of an evaluation's ``samples.jsonl``, nested [prompt][sample]."""
    records = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    return nested_rewards(records, 1 + max(r["prompt_index"] for r in records),
                          1 + max(r["sample_index"] for r in records))


# ---- tables and plots ----------------------------------------------------------------------------------------


def mean_std(values: Sequence[float | None], digits: int = 3) -> str:
    """``mean ± std`` over the finite values (one value alone, "–" for none)."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def check_tasks(tasks: Sequence[str]) -> None:
    """Every task spec loads here, before any worker starts (one line for a typo, not a worker's traceback)."""
    from rewardalign.config import ConfigError
    from rewardalign.gym import get_task

    if not tasks:
        raise SystemExit("no task given (--tasks)")
    for task in tasks:
        try:
            get_task(task)
        except ConfigError as err:
            raise SystemExit(f"--tasks: {err}") from None


def runs_table(by_seed: dict[int, dict[str, dict[str, Any]]]) -> str:
    """Every run's gold reward, KL, samples without EOS and likelihood shifts, mean ± std over seeds (SFT first)."""
    names = sorted({n for rows in by_seed.values() for n in rows if n != "sft"}, key=_run_order)
    lines = ["| run | lr | gold reward | KL(π‖SFT) | no EOS | Δ log p chosen | Δ log p rejected |",
             "|---|---|---|---|---|---|---|"]

    columns = (("reward_mean", 3), ("kl", 2), ("eos_missing_fraction", 2), ("chosen_logp_shift", 2),
               ("rejected_logp_shift", 2))
    for n in ["sft", *names]:
        rows = [by_seed[s][n] for s in sorted(by_seed) if n in by_seed[s]]
        ev = [r["eval"] for r in rows]
        lr = f"{rows[0]['learning_rate']:g}" if n != "sft" else "–"
        cells = [mean_std([e.get(key) for e in ev], digits) for key, digits in columns]
        lines.append(f"| {n} | {lr} | " + " | ".join(cells) + " |")
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
    return futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_exit_with_parent, initargs=(os.getpid(),))


def _exit_with_parent(parent: int) -> None:
    """In a worker: exit as soon as the benchmark that started it is gone (killed, or stopped by Ctrl-C), rather
    than run on through its queue of jobs with no one to report to."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


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
                   force: bool, log: Callable[[str], None], start: float, rm_kind: str = RM_KIND
                   ) -> tuple[dict, dict[tuple[str, int], str]]:
    """Every (task, seed) world, built in the pool: ({(task, seed): prepared}, {(task, seed): why it was left
    out}); a world whose SFT or reward model did not learn is left out unless ``force``."""
    prepared = {(t, s): pool.submit(_prepare_seed, s, str(work), quick, t, force, rm_kind) for t in tasks
                for s in seeds}
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
               tuned: dict[str, dict[str, Any]], force: bool = False, log: Callable[[str], None] = print,
               rm_kind: str = RM_KIND) -> dict[str, Any]:
    """Every claim's runs on every (task, seed) world; ``by_task[task][seed][run name]`` is the run's row (the
    SFT policy's as ``sft``)."""
    start = time.perf_counter()
    with _pool(workers) as pool:
        worlds, stopped = prepare_worlds(pool, tasks, seeds, work, quick, force, log, start, rm_kind)
        pending = {}
        for (t, s), (cfg, world, baseline, _) in worlds.items():
            for job in seed_jobs(s, tuned):
                pending[pool.submit(_run_job, cfg, world, baseline, job)] = (t, job)
        by_task: dict[str, dict[int, dict[str, dict[str, Any]]]] = {t: {} for t in tasks}
        for (t, s), (_, _, baseline, extra) in worlds.items():
            by_task[t][s] = {"sft": {"eval": extra["sft"], "prompt_rewards": baseline, "learning_rate": 0.0}}
        for f in futures.as_completed(pending):
            t, job = pending[f]
            row = f.result()
            by_task[t][job.seed][job.name] = row
            ev = row["eval"]
            log(f"[{t} seed {job.seed}] {job.name}: gold {ev['reward_mean']:.3f}, KL {ev['kl']:.2f}, "
                f"Δlogp chosen {ev['chosen_logp_shift']:+.2f} ({row['seconds']:.0f} s)")
    return {"by_task": by_task,
            "worlds": {f"{t} seed {s}": w[1].stats | {"noise": w[3]["noise"]} for (t, s), w in worlds.items()},
            "stopped": {f"{t} seed {s}": why for (t, s), why in stopped.items()},
            "seconds": round(time.perf_counter() - start, 1)}


def tune(tasks: Sequence[str], seeds: Sequence[int], work: Path, quick: bool, workers: int, force: bool = False,
         log: Callable[[str], None] = print, rm_kind: str = RM_KIND) -> dict[str, Any]:
    """The tuning grid (``tune_jobs``) on the tuning seeds of every task: for every row the (learning rate, β)
    with the best held-out gold reward, averaged over seeds and then over tasks (each task weighs the same); the
    measured claims use other seeds."""
    start = time.perf_counter()
    with _pool(workers) as pool:
        worlds, stopped = prepare_worlds(pool, tasks, seeds, work, quick, force, log, start, rm_kind)
        pending = {}
        for (t, s), (cfg, world, baseline, _) in worlds.items():
            for row, lr, beta, job in tune_jobs(s):
                pending[pool.submit(_run_job, cfg, world, baseline, job)] = (t, row, lr, beta)
        results: dict[str, dict[tuple[float, float], dict[str, list[dict[str, Any]]]]] = {}
        for f in futures.as_completed(pending):
            t, row, lr, beta = pending[f]
            ev = f.result()["eval"]
            results.setdefault(row, {}).setdefault((lr, beta), {}).setdefault(t, []).append(ev)
            log(f"[{t}] {row} lr {lr:g} β {beta:g}: gold {ev['reward_mean']:.3f}, KL {ev['kl']:.2f}, "
                f"no EOS {ev['eos_missing_fraction']:.2f}")
    if not worlds:
        raise SystemExit("no world passed the quality gates: " + json.dumps({str(k): v for k, v in stopped.items()}))

    def mean(cell: dict[str, list[dict[str, Any]]], key: str) -> float:
        return statistics.mean(statistics.mean(e[key] for e in evs) for evs in cell.values())

    best, lines = {}, ["| row | best lr | best β | gold | KL | no EOS | grid: mean gold | grid: worst gold (lr, β) | "
                       "grid: most samples without EOS (lr, β) |", "|---|---|---|---|---|---|---|---|---|"]
    # rows and cells in the grid's order, not the order the runs finished in: the table and its ties stay put
    order = list(dict.fromkeys(row for row, *_ in tune_jobs(0)))
    results = {row: dict(sorted(results[row].items())) for row in order if row in results}
    for row, cells in results.items():
        (lr, beta), cell = max(cells.items(), key=lambda kv: mean(kv[1], "reward_mean"))
        worst_key, worst = min(cells.items(), key=lambda kv: mean(kv[1], "reward_mean"))
        eos_key, eos = max(cells.items(), key=lambda kv: mean(kv[1], "eos_missing_fraction"))
        best[row] = {"learning_rate": lr, "beta": beta, "reward_mean": mean(cell, "reward_mean"),
                     "kl": mean(cell, "kl"), "eos_missing_fraction": mean(cell, "eos_missing_fraction")}
        grid_mean = statistics.mean(mean(c, "reward_mean") for c in cells.values())
        lines.append(f"| {row} | {lr:g} | {beta:g} | {best[row]['reward_mean']:.3f} | {best[row]['kl']:.2f} | "
                     f"{best[row]['eos_missing_fraction']:.2f} | {grid_mean:.3f} | {mean(worst, 'reward_mean'):.3f} "
                     f"({worst_key[0]:g}, {worst_key[1]:g}) | {mean(eos, 'eos_missing_fraction'):.2f} "
                     f"({eos_key[0]:g}, {eos_key[1]:g}) |")
    grid = {row: [{"learning_rate": lr, "beta": beta, "reward_mean": mean(c, "reward_mean"), "kl": mean(c, "kl"),
                   "eos_missing_fraction": mean(c, "eos_missing_fraction")} for (lr, beta), c in cells.items()]
            for row, cells in results.items()}
    return {"best": best, "table": "\n".join(lines), "grid": grid,
            "stopped": {f"{t} seed {s}": why for (t, s), why in stopped.items()},
            "seconds": round(time.perf_counter() - start, 1)}


def load_tuning(settings: Path, rm_kind: str) -> dict[str, Any]:
    """The ``tune.json`` of ``--tune`` at ``settings``; one line (SystemExit) when it is missing, not a tune.json,
    or tuned on worlds of another reward model than ``rm_kind`` (a file from before ``--rm-kind`` is bt's)."""
    if not settings.is_file():
        raise SystemExit(f"{settings}: no tuned settings; run `python benchmarks/claims.py --tune` first")
    try:
        tuning = json.loads(settings.read_text())
    except ValueError as err:
        raise SystemExit(f"{settings}: not a tune.json of claims.py --tune ({err})") from None
    if not isinstance(tuning, dict) or not isinstance(tuning.get("best"), dict):
        raise SystemExit(f"{settings}: not a tune.json of claims.py --tune (no 'best' settings)")
    if tuning.get("rm_kind", RM_KIND) != rm_kind:
        raise SystemExit(f"{settings} was tuned with --rm-kind {tuning.get('rm_kind', RM_KIND)}, not {rm_kind}")
    return tuning


def seed_list(text: str, first: int) -> list[int]:
    """``"3"`` -> ``[first, first + 1, first + 2]``; ``"0,1,2"`` -> ``[0, 1, 2]``; ``"1000,"`` -> ``[1000]``."""
    parts = [p for p in text.split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are a count or a comma-separated list, got {text!r}") from None
    if len(values) == 1 and "," not in text:
        if not 1 <= values[0] <= 50:
            raise argparse.ArgumentTypeError(f"a count of seeds is 1-50, got {values[0]} (one seed: '{values[0]},')")
        return list(range(first, first + values[0]))
    return values


def add_world_arguments(parser: argparse.ArgumentParser, tasks: str, work: str) -> None:
    """``--tasks``, ``--seeds`` (as :func:`seed_list`), ``--quick`` and ``--work``: the worlds a benchmark reads
    (this benchmark's, or demo_seeds.py's)."""
    parser.add_argument("--tasks", default=tasks, help="gym tasks, comma-separated: names or specs")
    parser.add_argument("--seeds", default="3", type=lambda text: seed_list(text, 0),
                        help="a count (0, 1, ...) or a list 0,1,2 (default 3)")
    parser.add_argument("--quick", action="store_true", help="the demo's --quick sizes")
    parser.add_argument("--work", type=Path, default=Path(work), help="the worlds' folder")


def task_list(text: str) -> list[str]:
    """The comma-separated tasks of ``--tasks``, each checked to load (one line for a typo)."""
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    check_tasks(tasks)
    return tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="3", type=lambda text: seed_list(text, 0),
                        help="measured seeds: a count (0, 1, ...) or a list 0,1,2 (default 3)")
    parser.add_argument("--quick", action="store_true", help="the demo's --quick sizes")
    parser.add_argument("--work", default="runs/claims", help="work folder (cached worlds and runs)")
    parser.add_argument("--tasks", "--task", default="arithmetic,sort,examples/tasks/count.py:CountTask",
                        help="gym tasks, comma-separated: names or specs such as path/to/file.py:Class (default "
                             "arithmetic, sort and examples/tasks/count.py:CountTask: keyword's and reverse's reward "
                             "models do not learn at the --quick sizes)")
    parser.add_argument("--workers", type=int, default=2, help="processes, one torch thread each (default 2)")
    parser.add_argument("--output", default=None, help="where to write the tables (default: --work)")
    parser.add_argument("--force", action="store_true", help="keep worlds whose SFT or reward model did not learn")
    parser.add_argument("--tune", action="store_true", help="run the tuning grid (writes tune.json) instead")
    parser.add_argument("--settings", default=None,
                        help="the tuned settings the claims run with (default: <work>/tune.json, from --tune)")
    parser.add_argument("--rm-kind", default=RM_KIND, choices=tuple(RM_LEARNING_RATES),
                        help="the worlds' reward model (default bt, the papers' score head, which the published "
                             "claims and their tuning ran on; the demo's default is likelihood)")
    parser.add_argument("--stages", action="store_true",
                        help="only build the worlds (data, SFT, reward model) and tabulate whether they learned")
    parser.add_argument("--tune-seeds", default="1", type=lambda text: seed_list(text, 1000),
                        help="tuning seeds: a count (1000, 1001, ...) or a list 1000,1001 (default 1: 1000)")
    args = parser.parse_args(argv)
    command = "python benchmarks/claims.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                   else sys.argv[1:]))
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    check_tasks(tasks)
    work = Path(args.work)
    out = Path(args.output) if args.output else work
    out.mkdir(parents=True, exist_ok=True)
    setup = (f"{'quick' if args.quick else 'default'} sizes ({json.dumps(QUICK) if args.quick else 'the demo defaults'}"
             f"), {args.workers} worker process(es) × 1 torch thread, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPU cores, reward model {args.rm_kind}")
    if args.stages:
        seeds = args.seeds
        start = time.perf_counter()
        with _pool(args.workers) as pool:
            pending = {(t, s): pool.submit(_build_world, s, str(work), args.quick, t, args.rm_kind) for s in seeds for t in tasks}
            stats = {key: f.result() for key, f in pending.items()}
        text = (f"`{command.strip()}` ({time.perf_counter() - start:.0f} s; {setup})\n\n{stages_table(stats)}\n")
        write_text(out / "stages.md", text)
        print(text)
        return 0
    if args.tune:
        seeds = args.tune_seeds
        result = tune(tasks, seeds, work, args.quick, args.workers, args.force, rm_kind=args.rm_kind)
        text = (f"`{command.strip()}` (seeds {seeds}; {setup}; {result['seconds']:.0f} s)\n\n{result['table']}\n"
                + "".join(f"\n- left out, a stage did not learn: {w}: {why}" for w, why in result["stopped"].items()))
        write_text(out / "tune.md", text)
        write_json(out / "tune.json", result | {"command": command.strip(), "seeds": seeds, "tasks": tasks,
                                                "rm_kind": args.rm_kind})
        print("\n" + text)
        return 0
    seeds = args.seeds
    settings = Path(args.settings) if args.settings else work / "tune.json"
    tuning = load_tuning(settings, args.rm_kind)
    if set(tuning.get("seeds", [])) & set(seeds):
        raise SystemExit(f"the measured seeds {seeds} overlap the tuning seeds {tuning['seeds']} of {settings}")
    result = run_claims(tasks, seeds, work, args.quick, args.workers, tuning["best"], args.force,
                        rm_kind=args.rm_kind)
    write_json(out / "claims.json", {"command": command.strip(), "settings": tuning["best"], **result})
    text = report(result, tuning, tasks, seeds, f"`{command.strip()}`: {setup}; wall time {result['seconds']:.0f} s "
                  f"(runs already in {work} are reused)", out)
    write_text(out / "claims.md", text)
    print(text + f"\nwritten: {out / 'claims.md'}, claims.json")
    return 0


def report(result: dict[str, Any], tuning: dict[str, Any], tasks: Sequence[str], seeds: Sequence[int], setup: str,
           out: Path) -> str:
    """claims.md: the pooled table with per-task verdicts, each task's estimates, and every run per task."""
    by_task = {t: s for t, s in result["by_task"].items() if s}
    best = tuning["best"]
    cs = claims_measure.measure(by_task, lambda m: at_beta(m, best[m]["beta"]), f"{round(100 * NOISE)}%")
    shown = [t for t in tasks if t in by_task]
    md = ["# The papers' claims, measured on the gym", "", setup, "",
          f"Tasks {', '.join(f'`{t}`' for t in tasks)}; measured seeds {list(seeds)}; settings tuned on seeds "
          f"{tuning.get('seeds')} of the same tasks (`{tuning.get('command')}`): for every method the (learning "
          f"rate, β) of {{{', '.join(f'{lr:g}' for lr in TUNE_LRS)}}} × (default β × {{1/3, 1, 3}}) with the best "
          "gold reward.", "",
          "Estimates: mean over tasks of the mean over seeds, with a 95% interval from a bootstrap that redraws "
          "seeds and, within each seed, the held-out prompts (differences between methods are paired on prompts; "
          "log-prob shifts use the evaluation's own interval at the inner level). holds: yes when the interval "
          "lies on the claimed side of 0, no when on the other side, inconclusive when it straddles 0.", "",
          *(f"- left out, a stage did not learn: {w}: {why}" for w, why in result["stopped"].items()), "",
          "## Pooled over tasks, with the verdict on each task", "", claims_measure.pooled_table(cs, shown), "",
          "## Per task: estimate [95% CI] (verdict)", "", claims_measure.task_table(cs, shown), "",
          "## Tuned settings", "", "| row | lr | β |", "|---|---|---|",
          *(f"| {row} | {b['learning_rate']:g} | {b['beta']:g} |" for row, b in best.items()), ""]
    for task in shown:
        plot = frontier_plot(by_task[task], out / f"claims_frontier_{task_folder(task)}.png")
        md += [f"## Every run on `{task}` (mean ± std over seeds)", "", runs_table(by_task[task]), ""]
        if plot is not None:
            md += [f"![reward-KL frontier, {task}]({plot.name})", ""]
    return "\n".join(md)


if __name__ == "__main__":
    sys.exit(main())
