"""The demo's learning rates at its full alignment budget: the claims' grid tunes at the --quick budget (40 steps).

    python benchmarks/tune_budget.py [--tasks arithmetic,sort,examples/tasks/count.py:CountTask] [--seeds 1000,]
                                     [--steps 200] [--lrs 1e-5,3e-5,1e-4] [--betas 1] [--quick] [--work runs/claims]
                                     [--rm-kind likelihood --settings runs/tune_likelihood/tune.json]

``benchmarks/claims.py --tune`` picks each method's learning rate and beta at the --quick budget (40 steps of 8
groups). A learning rate is tuned for a number of steps: at five times as many (the demo's default 200) the best
one of 40 steps can carry a method far from the SFT policy. This runs every method of the demo at its tuned beta
(``rewardalign.demo.config.METHODS``) and each learning rate for ``--steps`` steps, on the worlds of
``benchmarks/claims.py`` (the tuning seed by default: nothing measured), and prints gold reward, KL and the share of
samples without EOS per task, their mean, and each method's best learning rate by mean gold reward. With
``--betas`` (multipliers of the tuned beta, e.g. ``0.333,1,3``: the claims' grid) the grid is joint, and the
last line gives each method's best (learning rate, beta) instead (written to ``tune_budget_steps<N>_betas.md``).
With ``--settings`` (a ``tune.json`` of ``claims.py --tune``, e.g. on the worlds of ``--rm-kind likelihood``) each
method's tuned beta is that grid's instead of ``METHODS``'.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import budget_runs
import claims

from rewardalign.demo.config import DEFAULT_METHODS, METHODS, MethodSpec
from rewardalign.runs import write_json, write_text


def tuned_specs(settings: Path | None, rm_kind: str) -> dict[str, MethodSpec]:
    """``METHODS``, or with ``settings`` (a claims ``tune.json`` of the same ``rm_kind``) each method's tuned beta
    from that grid."""
    if settings is None:
        return METHODS
    best = claims.load_tuning(settings, rm_kind)["best"]
    return {m: dataclasses.replace(spec, objective_args={**spec.objective_args, "beta": best[m]["beta"]})
            if m in best else spec for m, spec in METHODS.items()}


def beta(spec: MethodSpec, factor: float) -> float:
    """``factor`` times the tuned beta of ``spec``, to four significant digits."""
    return float(f"{spec.objective_args['beta'] * factor:.4g}")


def one(task: str, seed: int, work: str, quick: bool, method: str, spec: MethodSpec, lr: float, steps: int,
        factor: float, rm_kind: str) -> dict[str, Any]:
    spec = dataclasses.replace(spec, learning_rate=lr)
    name = f"budget_{method}@lr{lr:g}_steps{steps}"
    if factor != 1.0:  # the tuned beta keeps its runs' old names (and caches)
        b = beta(spec, factor)
        spec = dataclasses.replace(spec, objective_args={**spec.objective_args, "beta": b})
        name = f"budget_{method}@lr{lr:g}_beta{b:g}_steps{steps}"
    return budget_runs.run_at_steps(task, seed, work, quick, spec, name, steps, rm_kind)


def best_rates(done: dict[tuple, dict[str, Any]], tasks: list[str], seeds: list[int], methods: list[str],
               lrs: list[float], factors: tuple[float, ...] = (1.0,), specs: dict[str, MethodSpec] = METHODS
               ) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Each method's (learning rate, beta factor) of the highest gold reward averaged over tasks and seeds, and the
    table rows (named ``method`` at the tuned beta, ``method beta B`` at another)."""
    best, rows = {}, []
    for m in methods:
        means = {}
        for f in factors:
            label = m if f == 1.0 else f"{m} beta {beta(specs[m], f):g}"
            for lr in lrs:
                evs = {t: [done[(t, s, m, lr, f)] for s in seeds] for t in tasks}
                line, means[(lr, f)] = budget_runs.row(label, lr, evs)
                rows.append(line)
        best[m] = max(means, key=means.get)
    return best, rows


def main(argv: list[str] | None = None) -> int:
    parser = budget_runs.parser(__doc__.split("\n\n")[0], "1e-5,3e-5,1e-4", "learning rates (default 1e-5,3e-5,1e-4)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="demo methods, comma-separated")
    parser.add_argument("--betas", default="1", type=budget_runs.rates,
                        help="multipliers of each method's tuned beta (default 1; the claims' grid: 0.333,1,3)")
    parser.add_argument("--settings", type=Path, default=None,
                        help="the tuned betas of this claims tune.json (default: rewardalign.demo.config.METHODS)")
    args = parser.parse_args(argv)
    specs = tuned_specs(args.settings, args.rm_kind)
    tasks = [t for t in args.tasks.split(",") if t]
    claims.check_tasks(tasks)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown demo method(s) {unknown}; known: {', '.join(METHODS)}")
    lrs, factors = args.lrs, tuple(args.betas)
    # tasks vary fastest, so the first workers build different worlds instead of waiting on the same one
    cells = [(t, s, m, lr, f) for m in methods for f in factors for lr in lrs for s in args.seeds for t in tasks]
    with claims._pool(args.workers) as pool:
        pending = {c: pool.submit(one, c[0], c[1], args.work, args.quick, c[2], specs[c[2]], c[3], args.steps, c[4],
                                  args.rm_kind) for c in cells}
        done = {c: f.result() for c, f in pending.items()}
    best, rows = best_rates(done, tasks, args.seeds, methods, lrs, factors, specs)
    command = f"python benchmarks/tune_budget.py {' '.join(argv if argv is not None else sys.argv[1:])}"
    joint = factors != (1.0,)
    grid = f"at its tuned beta x {', '.join(map(format, factors))}" if joint else "at its tuned beta"
    lines = [f"`{command}`: every method {grid}, {args.steps} steps x 8 groups, seeds {args.seeds}, reward model "
             f"{args.rm_kind}", "",
             *budget_runs.header("method", tasks), *rows, ""]
    if joint:
        lines.append("Best (learning rate, beta) by mean gold: "
                     + ", ".join(f"{m} {lr:g} {beta(specs[m], f):g}" for m, (lr, f) in best.items()))
    else:
        lines.append("Best learning rate by mean gold: " + ", ".join(f"{m} {lr:g}" for m, (lr, _) in best.items()))
    text = "\n".join(lines)
    suffix = "_betas" if joint else ""
    write_text(Path(args.work) / f"tune_budget_steps{args.steps}{suffix}.md", text + "\n")
    write_json(Path(args.work) / f"tune_budget_steps{args.steps}{suffix}.json",
               {"command": command, "rm_kind": args.rm_kind,
                "best": {m: {"learning_rate": lr, "beta": beta(specs[m], f)} for m, (lr, f) in best.items()}})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
