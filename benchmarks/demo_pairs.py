"""Two runs of ``benchmarks/demo_seeds.py`` on the same worlds, paired by task and seed: for each method the gold
reward under each run and their difference per seed, mean ± std over seeds. Built to compare two reward models on
the same SFT model, samples and "human" pairs:

    python benchmarks/demo_seeds.py --tasks arithmetic --seeds 3 --work runs/likelihood
    cp -r runs/likelihood runs/bt && python benchmarks/demo_seeds.py --tasks arithmetic --seeds 3 --rm-kind bt --work runs/bt
    python benchmarks/demo_pairs.py runs/likelihood/demo_seeds.json runs/bt/demo_seeds.json --labels likelihood,bt

(the copy keeps the stages both runs share, so the second rebuilds only the reward model, the annotation and the
methods). A pair whose SFT policies differ is not on the same world: the script names it and leaves it out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from claims import mean_std


def gold(result: dict[str, Any]) -> dict[str, float]:
    """Each policy's gold reward in one demo's result (SFT's first)."""
    return {row["name"]: row["eval"]["reward_mean"] for row in result["rows"]}


def pair_results(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]
                 ) -> tuple[dict[str, list[tuple[dict[str, float], dict[str, float]]]], list[str]]:
    """The two runs' gold rewards per task, paired on ``"<task> seed <N>"``; and the pairs left out: a demo that
    ranked nothing in either run, or whose SFT policies differ (not the same world)."""
    paired: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {}
    left_out = []
    for key in [k for k in a if k in b]:
        ga, gb = gold(a[key]), gold(b[key])
        if "sft" not in ga or "sft" not in gb:
            left_out.append(f"{key}: ranked nothing in {'the first' if 'sft' not in ga else 'the second'} run")
        elif ga["sft"] != gb["sft"]:
            left_out.append(f"{key}: SFT gold reward {ga['sft']:.3f} against {gb['sft']:.3f}, not the same world")
        else:
            paired.setdefault(key.rsplit(" seed ", 1)[0], []).append((ga, gb))
    return paired, left_out


def task_table(pairs: list[tuple[dict[str, float], dict[str, float]]], labels: tuple[str, str]) -> list[str]:
    """Per method: gold reward under each run, the paired difference and the seeds where the first is higher (SFT,
    the same in both, above the table)."""
    lines = [f"SFT {mean_std([ga['sft'] for ga, _ in pairs])} in both.", "",
             f"| method | {labels[0]} | {labels[1]} | {labels[0]} - {labels[1]} | seeds {labels[0]} higher |",
             "|---|---|---|---|---|"]
    for name in [n for n in pairs[0][0] if n != "sft"]:
        both = [(ga[name], gb[name]) for ga, gb in pairs if name in ga and name in gb]
        diffs = [x - y for x, y in both]
        lines.append(f"| {name} | {mean_std([x for x, _ in both])} | {mean_std([y for _, y in both])} | "
                     f"{mean_std(diffs)} | {sum(d > 0 for d in diffs)} of {len(diffs)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="demo_seeds.json (or demo_seeds_forced.json) of the first run")
    parser.add_argument("second", type=Path, help="the same of the second run, on copies of the same worlds")
    parser.add_argument("--labels", default="first,second", help="the two runs' names, comma-separated")
    args = parser.parse_args(argv)
    labels = tuple(args.labels.split(","))
    if len(labels) != 2:
        raise SystemExit(f"--labels: two names, comma-separated, got {args.labels!r}")
    runs = []
    for path in (args.first, args.second):
        try:
            runs.append(json.loads(path.read_text())["results"])
        except (OSError, ValueError, KeyError) as err:
            raise SystemExit(f"{path}: not a demo_seeds.json ({err})") from None
    paired, left_out = pair_results(*runs)
    md = [f"Gold reward, mean ± std over seeds; the difference paired on seeds ({args.first} against {args.second})", ""]
    md += [f"- left out: {line}" for line in left_out]
    for task, pairs in paired.items():
        md += ["", f"## `{task}`: {len(pairs)} seed(s)", "", *task_table(pairs, labels)]
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
