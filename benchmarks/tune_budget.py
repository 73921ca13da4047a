"""The demo's learning rates at its full alignment budget: the claims' grid tunes at the --quick budget (40 steps).

    python benchmarks/tune_budget.py [--tasks arithmetic,sort,examples/tasks/count.py:CountTask] [--seeds 1000,]
                                     [--steps 200] [--lrs 1e-5,3e-5,1e-4] [--quick] [--work runs/claims]

``benchmarks/claims.py --tune`` picks each method's learning rate and beta at the --quick budget (40 steps of 8
groups). A learning rate is tuned for a number of steps: at five times as many (the demo's default 200) the best
one of 40 steps can carry a method far from the SFT policy. This runs every method of the demo at its tuned beta
(``rewardalign.demo.config.METHODS``) and each learning rate for ``--steps`` steps, on the worlds of
``benchmarks/claims.py`` (the tuning seed by default: nothing measured), and prints gold reward, KL and the share of
samples without EOS per task, their mean, and each method's best learning rate by mean gold reward.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import budget_runs
import claims

from rewardalign.demo.config import DEFAULT_METHODS, METHODS
from rewardalign.runs import write_json, write_text


def one(task: str, seed: int, work: str, quick: bool, method: str, lr: float, steps: int) -> dict[str, Any]:
    spec = dataclasses.replace(METHODS[method], learning_rate=lr)
    return budget_runs.run_at_steps(task, seed, work, quick, spec, f"budget_{method}@lr{lr:g}_steps{steps}", steps)


def best_rates(done: dict[tuple, dict[str, Any]], tasks: list[str], seeds: list[int], methods: list[str],
               lrs: list[float]) -> tuple[dict[str, float], list[str]]:
    """Each method's learning rate of the highest gold reward averaged over tasks and seeds, and the table rows."""
    best, rows = {}, []
    for m in methods:
        means = {}
        for lr in lrs:
            line, means[lr] = budget_runs.row(m, lr, {t: [done[(t, s, m, lr)] for s in seeds] for t in tasks})
            rows.append(line)
        best[m] = max(means, key=means.get)
    return best, rows


def main(argv: list[str] | None = None) -> int:
    parser = budget_runs.parser(__doc__.split("\n\n")[0], "1e-5,3e-5,1e-4", "learning rates (default 1e-5,3e-5,1e-4)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="demo methods, comma-separated")
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    claims.check_tasks(tasks)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown demo method(s) {unknown}; known: {', '.join(METHODS)}")
    lrs = args.lrs
    # tasks vary fastest, so the first workers build different worlds instead of waiting on the same one
    cells = [(t, s, m, lr) for m in methods for lr in lrs for s in args.seeds for t in tasks]
    with claims._pool(args.workers) as pool:
        pending = {c: pool.submit(one, c[0], c[1], args.work, args.quick, c[2], c[3], args.steps) for c in cells}
        done = {c: f.result() for c, f in pending.items()}
    best, rows = best_rates(done, tasks, args.seeds, methods, lrs)
    command = f"python benchmarks/tune_budget.py {' '.join(argv if argv is not None else sys.argv[1:])}"
    lines = [f"`{command}`: every method at its tuned beta, {args.steps} steps x 8 groups, seeds {args.seeds}", "",
             *budget_runs.header("method", tasks), *rows, "",
             "Best learning rate by mean gold: " + ", ".join(f"{m} {lr:g}" for m, lr in best.items())]
    text = "\n".join(lines)
    write_text(Path(args.work) / f"tune_budget_steps{args.steps}.md", text + "\n")
    write_json(Path(args.work) / f"tune_budget_steps{args.steps}.json", {"command": command, "best": best})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
