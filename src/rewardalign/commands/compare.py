"""``rewardalign compare RUN [RUN ...] --output DIR``: several run folders as one table, plots and JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders (summary.json, config.yaml, "
                                                               "metrics.jsonl, eval.json)")
    parser.add_argument("--output", default="compare", help="output folder (default: ./compare)")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ConfigError(f"compare takes run folders and --output only; unexpected: {' '.join(overrides)}")
    from ..evaluate.report import compare_runs

    report = compare_runs(args.runs, args.output)
    print(report["table"])
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"\nwritten: {Path(args.output) / 'compare.md'}, compare.json"
          + "".join(f", {name}" for name in report["plots"].values()))
    return 0
