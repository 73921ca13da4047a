"""DRO's offset at the demo's full alignment budget: the evidence behind its default.

    python benchmarks/dro_offset.py [--tasks arithmetic,sort,examples/tasks/count.py:CountTask] [--seeds 1000,]
                                    [--steps 200] [--lrs 1e-4,3e-4] [--quick] [--work runs/claims]

DRO regresses beta * log(pi / pi_ref) of every sampled response on its reward minus an offset. With z0 = 0 and a
reward model whose rewards sit mostly below zero, every target pushes the sampled responses down, EOS included,
and a long enough run moves the mass onto endless responses (the collapse of the demo's earlier defaults: KL 15,
43% of samples without EOS at 200 steps). This runs DRO with each offset of ``claims.DRO_OFFSETS`` (none, the
mean training reward ``z0: auto``, the group's mean reward ``baseline: group_mean``) at the demo's full budget
(``--steps``, default 200 steps of 8 groups) and each learning rate, at the default beta, on the worlds of
``benchmarks/claims.py`` (tuning seeds by default: the default is chosen where nothing is measured), each with and
without the prompt term of 001 Algorithm 1 (``prompt_normalization``), and prints gold reward, KL and the share of
samples without EOS, per task and averaged; RPO (the other objective that collapsed) at its defaults beside them.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import budget_runs
import claims

from rewardalign.demo.config import METHODS
from rewardalign.runs import write_text

VARIANTS = {**claims.DRO_OFFSETS, **{f"{name} no prompt term": args | {"prompt_normalization": False}
                                     for name, args in claims.DRO_OFFSETS.items()}}
"""Each offset with and without the prompt term of 001 Algorithm 1 (``prompt_normalization``)."""
OTHERS = {"rpo": {}, "rpo beta 0.3": {"beta": 0.3}}
"""RPO (Fisch 2024 distillation), the other objective that collapsed at the demo's earlier settings: at its
defaults and at the beta the claims' tuning picked."""


def one(task: str, seed: int, work: str, quick: bool, variant: str, lr: float, steps: int,
        rm_kind: str) -> dict[str, Any]:
    method = "rpo" if variant in OTHERS else "dro"
    args = OTHERS[variant] if variant in OTHERS else VARIANTS[variant]
    spec = dataclasses.replace(METHODS[method], learning_rate=lr, objective_args=dict(args))
    name = f"offset_{variant.replace(' ', '_')}@lr{lr:g}_steps{steps}"
    return budget_runs.run_at_steps(task, seed, work, quick, spec, name, steps, rm_kind)


def main(argv: list[str] | None = None) -> int:
    parser = budget_runs.parser(__doc__.split("\n\n")[0], "1e-4,3e-4",
                                "learning rates (default 1e-4 (the demo's DRO), 3e-4)")
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    claims.check_tasks(tasks)
    seeds = args.seeds
    lrs = args.lrs
    cells = [(t, s, v, lr) for t in tasks for s in seeds for v in [*VARIANTS, *OTHERS] for lr in lrs]
    with claims._pool(args.workers) as pool:
        pending = {c: pool.submit(one, c[0], c[1], args.work, args.quick, c[2], c[3], args.steps, args.rm_kind)
                   for c in cells}
        done = {c: f.result() for c, f in pending.items()}
    lines = [f"`python benchmarks/dro_offset.py {' '.join(argv if argv is not None else sys.argv[1:])}`: DRO at "
             f"beta 0.1, {args.steps} steps x 8 groups, seeds {seeds}", "",
             *budget_runs.header("offset", tasks)]
    for v in [*VARIANTS, *OTHERS]:
        for lr in lrs:
            lines.append(budget_runs.row(v, lr, {t: [done[(t, s, v, lr)] for s in seeds] for t in tasks})[0])
    text = "\n".join(lines)
    write_text(Path(args.work) / "dro_offset.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
