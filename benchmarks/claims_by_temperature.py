"""The papers' claims with every policy's gold reward measured at a lower sampling temperature.

    python benchmarks/claims_by_temperature.py [--temperature 0.5] [--quick] [--work runs/claims] [--workers 2]

Reads ``claims.json`` of ``benchmarks/claims.py`` (run it first, with the same ``--work``), evaluates every run
it measured again at ``--temperature`` (same prompts, sampling seed and gold reward; into a temporary folder, the
runs are left as they are), keeps each run's KL and log-prob shifts from its temperature-1 evaluation (how far
training moved it, which the matched-KL pairing reads), and prints the claims table measured on those gold
rewards. Aligning also sharpens a policy (``benchmarks/by_temperature.py``): a claim that holds at temperature 1
and at a lower one does not rest on how sharp each policy happens to be.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import claims
import claims_measure

from rewardalign.demo.methods import evaluate_run
from rewardalign.demo.stages import build_world, torch_threads


def reevaluate(task: str, seed: int, work: str, quick: bool, temperature: float, names: list[str]
               ) -> dict[str, dict[str, Any]]:
    """{run: {reward_mean, prompt_rewards}} of the (task, seed) world's runs sampled at ``temperature``."""
    cfg = claims.seed_config(seed, Path(work), quick, task, force=True)
    at_t = dataclasses.replace(cfg, eval_temperature=temperature)
    out = {}
    with torch_threads(cfg.threads), tempfile.TemporaryDirectory() as tmp:
        world = build_world(cfg, log=lambda _m: None)
        for i, name in enumerate(names):
            model = world.sft if name == "sft" else str(Path(world.root) / "claims" / name)
            result = evaluate_run(at_t, world, model, Path(tmp) / str(i))
            out[name] = {"reward_mean": result["reward_mean"], "prompt_rewards": result["rewards"]}
    return out


def at_temperature(by_task: dict[str, dict[int, dict[str, Any]]], rewards: dict[tuple[str, int], dict[str, Any]]
                   ) -> dict[str, dict[int, dict[str, Any]]]:
    """``by_task`` with each run's gold reward (mean and per prompt) replaced by ``rewards[(task, seed)][run]``."""
    out = copy.deepcopy(by_task)
    for (task, seed), runs in rewards.items():
        for name, new in runs.items():
            row = out[task][seed][name]
            row["eval"]["reward_mean"] = new["reward_mean"]
            row["eval"]["reward_ci"] = None
            row["prompt_rewards"] = new["prompt_rewards"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--quick", action="store_true", help="the demo's --quick sizes (as claims.py ran)")
    parser.add_argument("--work", default="runs/claims", help="claims.py's work folder (its claims.json)")
    parser.add_argument("--workers", type=int, default=2, help="processes, one torch thread each (default 2)")
    args = parser.parse_args(argv)
    if args.temperature < 0:
        parser.error(f"--temperature must be 0 (greedy) or above, got {args.temperature:g}")
    path = Path(args.work) / "claims.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no claims.json; run benchmarks/claims.py with the same --work first")
    saved = json.loads(path.read_text())
    by_task = {t: {int(s): runs for s, runs in seeds.items()} for t, seeds in saved["by_task"].items() if seeds}
    start = time.perf_counter()
    with claims._pool(args.workers) as pool:
        pending = {(t, s): pool.submit(reevaluate, t, s, args.work, args.quick, args.temperature, list(runs))
                   for t, seeds in by_task.items() for s, runs in seeds.items()}
        rewards = {key: f.result() for key, f in pending.items()}
    best = saved["settings"]
    tasks = list(by_task)
    cs = claims_measure.measure(at_temperature(by_task, rewards), lambda m: claims.at_beta(m, best[m]["beta"]),
                                f"{round(100 * claims.NOISE)}%")
    print(f"`python benchmarks/claims_by_temperature.py --temperature {args.temperature:g}"
          f"{' --quick' if args.quick else ''} --work {args.work} --workers {args.workers}`: the runs of "
          f"`{saved['command']}`, gold rewards at temperature {args.temperature:g} "
          f"({time.perf_counter() - start:.0f} s)\n")
    print(claims_measure.pooled_table(cs, tasks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
