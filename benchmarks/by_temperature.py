"""Every policy of the demo sampled at lower temperatures: does a method beat the SFT policy sampled the same way?

    python benchmarks/by_temperature.py [--tasks arithmetic,sort,examples/tasks/count.py:CountTask] [--seeds 0,1,2]
                                        [--temperatures 0.5,0.1] [--quick] [--work runs/demo_seeds]

The demo evaluates every policy at temperature 1 (``eval_temperature``). Aligning a policy also sharpens it, and on
a task whose gold reward follows the SFT model's own likelihood (benchmarks/rm_headroom.py) sharpening alone
raises the gold reward, so a method's gain over SFT at temperature 1 mixes what it learned from the rewards with
what lowering the temperature would give. This evaluates the SFT policy and every aligned policy of each world's
demo (``benchmarks/claims.py``'s worlds; ``demo.json`` and ``runs/<method>`` from ``benchmarks/demo_seeds.py``,
run first) at each temperature, on the demo's evaluation prompts and samples (same prompts, same sampling seed,
same gold reward), and prints, per task, each policy's gold reward at temperature 1 (the demo's) and at each
temperature, and its win rate against SFT sampled at the same temperature; mean ± standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import claims

from rewardalign.demo.methods import evaluate_run, sft_baseline
from rewardalign.demo.stages import build_world, torch_threads


def demo_policies(root: Path) -> list[str]:
    """The aligned policies of the world's demo (``demo.json``'s rows after SFT's), in the demo's order."""
    path = root / "demo.json"
    if not path.is_file():
        raise SystemExit(f"{root}: no demo.json; run benchmarks/demo_seeds.py with the same --work first")
    return [r["name"] for r in json.loads(path.read_text())["rows"] if r["name"] != "sft"]


def world_rows(task: str, seed: int, work: Path, quick: bool, temperatures: list[float]) -> dict[str, dict[str, Any]]:
    """{policy: {"gold T": ..., "win T": ...}} for SFT and every aligned policy of the world's demo."""
    cfg = claims.seed_config(seed, work, quick, task, force=True)
    root = Path(cfg.output)
    names = demo_policies(root)
    out: dict[str, dict[str, Any]] = {}
    with torch_threads(cfg.threads):
        world = build_world(cfg, log=lambda _m: None)
        for t in [1.0, *temperatures]:
            at_t = dataclasses.replace(cfg, eval_temperature=t)
            with tempfile.TemporaryDirectory() as tmp:
                base = sft_baseline(at_t, world, Path(tmp) / "sft")
                out.setdefault("sft", {})[f"gold {t:g}"] = base["reward_mean"]
                for name in names:
                    result = evaluate_run(at_t, world, str(root / "runs" / name), Path(tmp) / name, base["rewards"])
                    out.setdefault(name, {})[f"gold {t:g}"] = result["reward_mean"]
                    out[name][f"win {t:g}"] = result["win_rate"]
    return out


def temperature_list(text: str) -> list[float]:
    """``--temperatures``: comma-separated sampling temperatures, each above 0."""
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated numbers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"temperatures above 0, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    claims.add_world_arguments(parser, "arithmetic,sort,examples/tasks/count.py:CountTask", "runs/demo_seeds")
    parser.add_argument("--temperatures", default="0.5,0.1", type=temperature_list)
    args = parser.parse_args(argv)
    tasks = claims.task_list(args.tasks)
    seeds, temperatures = args.seeds, args.temperatures
    print(f"Command: python benchmarks/by_temperature.py --tasks {args.tasks} --seeds {','.join(map(str, seeds))} "
          f"--temperatures {','.join(f'{t:g}' for t in temperatures)}{' --quick' if args.quick else ''} "
          f"--work {args.work}\n")
    columns = [f"{what} {t:g}" for t in [1.0, *temperatures] for what in ("gold", "win")]
    for task in tasks:
        per_seed = [world_rows(task, seed, args.work, args.quick, temperatures) for seed in seeds]
        print(f"\n{task} (mean ± sd over seeds {','.join(map(str, seeds))}; win: against SFT sampled at the same "
              "temperature)\n")
        print("| policy | " + " | ".join(c.replace("gold", "gold reward, T =").replace("win", "win rate, T =")
                                          for c in columns) + " |")
        print("|---|" + "---|" * len(columns))
        for name in per_seed[0]:
            cells = [claims.mean_std([rows[name].get(c) for rows in per_seed]) for c in columns]
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
