"""``rewardalign demo`` on several seeds (and tasks): each figure of its table as mean ± standard deviation over
seeds, with the stages' quality beside it; the README's demo figures come from here.

    python benchmarks/demo_seeds.py [--tasks arithmetic] [--seeds 3] [--quick] [--workers 2] [--work runs/demo_seeds]
                                    [--force] [--rm-kind bt]

Each (task, seed) is one ``run_demo`` call into ``<work>/<task>/seed<N>`` (so its stages are cached there, the same
folders ``benchmarks/claims.py --work`` uses: a world built by one is reused by the other). A seed whose stages
did not learn (the demo's quality gates) is counted and named, and left out of the table. With ``--force`` its
methods run anyway, every seed enters the table, and the files are ``demo_seeds_forced.md``/``.json``: on a task
whose gates failed they show whether an objective drifts (KL, samples without EOS), not which method wins there.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from claims import _pool, check_tasks, mean_std, seed_list, task_folder

from rewardalign.demo.config import RM_LEARNING_RATES, DemoConfig
from rewardalign.demo.pipeline import run_demo
from rewardalign.runs import write_json, write_text


def one(task: str, seed: int, work: str, quick: bool, force: bool, rm_kind: str) -> dict[str, Any]:
    """One demo's ``demo.json`` content (``failed_gates``: the gates it failed, also when ``force`` ran it on)."""
    out = Path(work) / task_folder(task) / f"seed{seed}"
    result = run_demo({"task": task, "seed": seed, "quick": quick, "output": str(out), "verbose": False,
                       "plots": False, "force": force, "rm_kind": rm_kind},
                      command=f"rewardalign demo --task {task} --seed {seed}" + (" --quick" if quick else "")
                      + (" --force" if force else "") + (f" --rm_kind {rm_kind}" if rm_kind != DemoConfig.rm_kind else ""))
    return result


def stages_line(results: list[dict[str, Any]]) -> str:
    """SFT, demonstrations, random responses and the RM's held-out gold agreement, mean ± std over seeds."""
    def get(path: tuple[str, str]) -> list[float]:
        return [r["stats"].get(path[0], {}).get(path[1]) for r in results]

    return (f"SFT gold {mean_std(get(('sft', 'heldout_gold')))}, "
            f"demonstrations {mean_std(get(('data', 'demonstration_gold_mean')))}, "
            f"random responses {mean_std(get(('data', 'random_gold_mean')))}; reward model orders "
            f"{mean_std(get(('annotation', 'heldout_rm_gold_agreement')))} of held-out pairs as the gold reward")


def table(results: list[dict[str, Any]]) -> str:
    """One row per policy: gold reward, win rate against SFT, KL, samples without EOS, Δ log p chosen (the SFT
    policy sampled at a lower temperature, untrained, after SFT's row when the demos evaluated it)."""
    def policies(res: dict[str, Any]) -> list[dict[str, Any]]:
        return [*res["rows"][:1], *([res["sharpened_sft"]] if res.get("sharpened_sft") else []), *res["rows"][1:]]

    names = [row["name"] for row in policies(results[0])]
    lines = ["| policy | gold reward | win rate vs SFT | KL(π‖SFT) | no EOS | Δ log p chosen |",
             "|---|---|---|---|---|---|"]
    for name in names:
        evs = [next(r["eval"] for r in policies(res) if r["name"] == name) for res in results]
        cells = [mean_std([e.get("reward_mean") for e in evs]), mean_std([e.get("win_rate") for e in evs]),
                 mean_std([e.get("kl") for e in evs], 2), mean_std([e.get("eos_missing_fraction") for e in evs], 2),
                 mean_std([e.get("chosen_logp_shift") for e in evs], 2)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def task_section(task: str, by_seed: dict[int, dict[str, Any]], forced: bool) -> list[str]:
    """A task's markdown: how many seeds passed the gates, why the others failed, and the table over every seed
    whose methods ran (with ``forced``, failed seeds too)."""
    failed = [f"seed {s}: {'; '.join(r['failed_gates'])}" for s, r in by_seed.items() if r["failed_gates"]]
    ran = [r for r in by_seed.values() if r["rows"]]  # a stopped demo has no rows
    md = [f"## `{task}`: {len(by_seed) - len(failed)} of {len(by_seed)} seeds passed the quality gates", ""]
    md += [f"- {'failed, run on with --force' if forced else 'stopped'}, {line}" for line in failed]
    if ran:
        md += [f"- stages (mean ± std over seeds): {stages_line(ran)}", "", table(ran)]
    return [*md, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="arithmetic", help="gym tasks, comma-separated (names or specs)")
    parser.add_argument("--seeds", default="3", type=lambda text: seed_list(text, 0),
                        help="a count (0, 1, ...) or a list 0,1,2 (default 3)")
    parser.add_argument("--quick", action="store_true", help="the demo's --quick sizes")
    parser.add_argument("--workers", type=int, default=2, help="processes, one torch thread each (default 2)")
    parser.add_argument("--work", default="runs/demo_seeds", help="work folder (the demos' output folders)")
    parser.add_argument("--force", action="store_true",
                        help="run the methods on seeds that fail the gates too (demo_seeds_forced.md/json)")
    parser.add_argument("--rm-kind", default=DemoConfig.rm_kind, choices=tuple(RM_LEARNING_RATES),
                        help=f"the demo's rm_kind (default {DemoConfig.rm_kind}, the demo's)")
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    check_tasks(tasks)
    seeds = args.seeds
    start = time.perf_counter()
    with _pool(args.workers) as pool:  # its workers exit with the benchmark when it is killed
        pending = {(t, s): pool.submit(one, t, s, args.work, args.quick, args.force, args.rm_kind)
                   for t in tasks for s in seeds}
        done = {key: f.result() for key, f in pending.items()}
    command = "python benchmarks/demo_seeds.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                       else sys.argv[1:]))
    md = [f"`{command.strip()}`: {time.perf_counter() - start:.0f} s, {args.workers} worker(s) × 1 torch thread, "
          f"{platform.machine()}, {os.cpu_count()} CPU cores", ""]
    for task in tasks:
        md += task_section(task, {s: done[(task, s)] for s in seeds}, args.force)
    text = "\n".join(md)
    work = Path(args.work)
    name = "demo_seeds_forced" if args.force else "demo_seeds"
    write_text(work / f"{name}.md", text)
    write_json(work / f"{name}.json", {"command": command.strip(), "results": {
        f"{t} seed {s}": {"failed_gates": r["failed_gates"], "stats": r["stats"], "rows": r["rows"]} for (t, s), r in done.items()}})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
