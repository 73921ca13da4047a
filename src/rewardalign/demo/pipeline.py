"""``run_demo``: the whole pipeline of the papers on a gym task, offline, in one call (see :mod:`rewardalign.demo`)."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..evaluate.metrics import eos_warning
from ..evaluate.report import compare_runs
from ..runs import write_json
from .config import DemoConfig, demo_config
from .learning import StageDidNotLearn
from .methods import headline, run_method, sft_baseline, sharpened_row
from .report import cut_warning, results_table, stop_message, write_report, write_stopped_report
from .stages import build_world, torch_threads

# ---- the command ------------------------------------------------------------------------------------------------


def run_demo(raw: dict[str, Any] | DemoConfig, command: str = "rewardalign demo") -> dict[str, Any]:
    """Run the whole demo from a config mapping; returns ``demo.json``'s content. When SFT or the reward model
    did not learn (:mod:`.learning`) and ``force`` is off, it stops there: ``stopped`` holds why, the report says
    so and no method is aligned or ranked. ``failed_gates`` holds the gates that failed, also when ``force`` ran
    the methods on."""
    cfg = raw if isinstance(raw, DemoConfig) else demo_config(raw)
    with torch_threads(cfg.threads):
        return _run_demo(cfg, command)


def _run_demo(cfg: DemoConfig, command: str) -> dict[str, Any]:
    start = time.perf_counter()
    log = tqdm.write if cfg.verbose else (lambda _msg: None)  # lines above the progress bars
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    try:
        world = build_world(cfg, out, log)
    except StageDidNotLearn as err:
        _warn_cut(cfg, err.stats)
        seconds = time.perf_counter() - start
        write_stopped_report(cfg, err.stats, err.failures, seconds, command)
        result = {"config": dataclasses.asdict(cfg), "stats": err.stats, "stopped": err.failures,
                  "failed_gates": err.failures, "rows": [], "seconds": round(seconds, 1)}
        write_json(out / "demo.json", result)
        print(stop_message(cfg, err.stats, err.failures), file=sys.stderr)
        log(f"written: {out / 'report.md'}, demo.json")
        return result
    _warn_cut(cfg, world.stats)
    runs = out / "runs"
    t0 = time.perf_counter()
    sft_eval = sft_baseline(cfg, world, runs / "sft")
    log(f"[evaluate sft] {'cached' if sft_eval.get('cached') else f'{time.perf_counter() - t0:.1f} s'}")
    rows = [{"name": "sft", "objective": None, "feedback": None, "learning_rate": None, "objective_args": {},
             "eval": headline(sft_eval)}]
    t0 = time.perf_counter()
    sharpened = sharpened_row(cfg, world, runs / "sft_sharpened", sft_eval["rewards"])
    if sharpened is not None:
        cached = sharpened.pop("cached")
        log(f"[evaluate {sharpened['name']}] {'cached' if cached else f'{time.perf_counter() - t0:.1f} s'}")
    bar = tqdm(cfg.methods, desc="methods", unit="method", disable=not cfg.verbose)
    for name in bar:
        bar.set_postfix_str(name)
        row = run_method(cfg, world, name, cfg.method(name), runs / name, sft_eval["rewards"], cache=cfg.reuse)
        rows.append(row)
        ev = row["eval"]
        when = "cached" if row.get("cached") else f"{row['seconds']:.1f} s"
        log(f"[{name}] {when}: gold reward {ev['reward_mean']:.3f}, win rate {ev['win_rate']:.3f}, KL {ev['kl']:.2f}")
        warning = eos_warning(ev.get("eos_missing_fraction"))
        if warning:
            print(f"[{name}] {warning}", file=sys.stderr)
    plots: dict[str, str] = {}
    if cfg.plots:
        report = compare_runs([runs / "sft", *(runs / n for n in cfg.methods)], out)
        plots = report["plots"]
    seconds = time.perf_counter() - start
    write_report(cfg, world, rows, plots, seconds, command, sharpened)
    result = {"config": dataclasses.asdict(cfg), "stats": world.stats, "stopped": [],
              "failed_gates": world.failed_gates, "rows": rows,
              "sharpened_sft": sharpened, "plots": plots, "table": results_table(rows, sharpened),
              "seconds": round(seconds, 1)}
    write_json(out / "demo.json", result)
    log("")
    log(result["table"])
    log(f"\nwritten: {out / 'report.md'}, demo.json, compare.md" + "".join(f", {p}" for p in plots.values())
        + f" ({seconds:.0f} s)")
    return result


def _warn_cut(cfg: DemoConfig, stats: dict[str, Any]) -> None:
    warning = cut_warning(cfg, stats)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
