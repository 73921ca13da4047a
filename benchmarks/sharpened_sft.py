"""The SFT policy sampled at a lower temperature: the baseline an aligned policy's gain must beat.

    python benchmarks/sharpened_sft.py [--tasks arithmetic,sort,examples/tasks/count.py:CountTask] [--seeds 0,1,2]
                                       [--temperatures 0.7,0.5] [--quick] [--work runs/claims]

The demo evaluates every policy, SFT included, at temperature 1 (``eval_temperature``). Aligning a policy
sharpens it, and on a task whose gold reward follows the SFT model's own likelihood (benchmarks/rm_headroom.py)
sharpening alone raises the gold reward. This evaluates the SFT policy of each world (``benchmarks/claims.py``'s
worlds, built if missing) at each temperature, on the demo's evaluation prompts and samples (same prompts, same
sampling seed, same gold reward), and prints its gold reward and win rate against SFT at temperature 1; beside
them, where the world's demo has run (``demo.json``), the best aligned method's gold reward at temperature 1.
Mean ± standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import claims

from rewardalign.demo.methods import evaluate_run, sft_baseline
from rewardalign.demo.stages import build_world, torch_threads


def best_method(root: Path) -> tuple[str, float] | None:
    """The aligned method with the highest gold reward in the world's ``demo.json``, if the demo ran there."""
    path = root / "demo.json"
    if not path.is_file():
        return None
    rows = [r for r in json.loads(path.read_text())["rows"] if r["name"] != "sft"]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["eval"]["reward_mean"])
    return best["name"], best["eval"]["reward_mean"]


def world_row(task: str, seed: int, work: Path, quick: bool, temperatures: list[float]) -> dict[str, float | str]:
    cfg = claims.seed_config(seed, work, quick, task, force=True)
    with torch_threads(cfg.threads):
        world = build_world(cfg, log=lambda _m: None)
        base = sft_baseline(cfg, world, Path(world.root) / "runs" / "sft")
        row: dict[str, float | str] = {"T = 1": base["reward_mean"]}
        for t in temperatures:
            with tempfile.TemporaryDirectory() as tmp:
                result = evaluate_run(dataclasses.replace(cfg, eval_temperature=t), world, world.sft, tmp,
                                      base["rewards"])
            row[f"T = {t}"] = result["reward_mean"]
            row[f"win, T = {t}"] = result["win_rate"]
    best = best_method(Path(world.root))
    if best is not None:
        row["best method"], row["best method, T = 1"] = best
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="arithmetic,sort,examples/tasks/count.py:CountTask")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--temperatures", default="0.7,0.5")
    parser.add_argument("--quick", action="store_true", help="the demo's --quick sizes")
    parser.add_argument("--work", type=Path, default=Path("runs/claims"), help="the worlds' folder (claims.py's)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    temperatures = [float(t) for t in args.temperatures.split(",") if t]
    print(f"SFT gold reward by sampling temperature. Command: python benchmarks/sharpened_sft.py --tasks {args.tasks} "
          f"--seeds {args.seeds} --temperatures {args.temperatures}{' --quick' if args.quick else ''} "
          f"--work {args.work}\n")
    columns = ["T = 1"] + [f"{p}T = {t}" for t in temperatures for p in ("", "win, ")] + ["best method, T = 1"]
    print("| task | seed | " + " | ".join(columns) + " | best method |\n|---|---|" + "---|" * (len(columns) + 1))
    for task in args.tasks.split(","):
        rows = []
        for seed in seeds:
            rows.append(world_row(task, seed, args.work, args.quick, temperatures))
            cells = [f"{rows[-1][c]:.3f}" if c in rows[-1] else "-" for c in columns]
            print(f"| {task} | {seed} | " + " | ".join(cells) + f" | {rows[-1].get('best method', '-')} |", flush=True)
        cells = [claims.mean_std([r[c] for r in rows]) if all(c in r for r in rows) else "-" for c in columns]
        print(f"| {task} | mean ± sd | " + " | ".join(cells) + " | |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
