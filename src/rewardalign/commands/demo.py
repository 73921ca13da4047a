"""``rewardalign demo [--quick] [--task T] [--seed S] [--output DIR] [--field value ...]``: the whole pipeline on
a gym task, offline (see :mod:`rewardalign.demo`)."""

from __future__ import annotations

import argparse
import copy

from ..config import apply_overrides, field_help, load_yaml, parse_overrides
from ..demo.config import DEFAULT_METHODS, METHODS, DemoConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config; any field can also be given as --field value")
    parser.add_argument("--quick", action="store_true", default=None,
                        help="a CI-sized run (under 2 minutes on two CPU cores)")
    parser.add_argument("--output", help="output folder (default runs/demo)")
    parser.add_argument("--task", help="gym task: arithmetic (default), sort, keyword, package.module:Class or "
                                       "path/to/file.py:Class (docs/tasks.md)")
    parser.add_argument("--force", action="store_true", default=None,
                        help="continue and rank the methods even when SFT or the reward model did not learn")
    parser.add_argument("--seed", type=int, help="seed of every stage (default 0)")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "config fields:\n" + field_help(DemoConfig)
        + "\n\nMethods: " + ", ".join(METHODS) + " (default: " + ", ".join(DEFAULT_METHODS) + "). "
        "Per-method settings: --method_args.dpo.learning_rate 3e-4 --method_args.dpo.objective_args.beta 0.05"
    )


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raw = apply_overrides(load_yaml(args.config), parse_overrides(overrides))
    for name in ("quick", "output", "task", "seed", "force"):
        value = getattr(args, name, None)
        if value is not None:
            raw[name] = value
    parts = ["rewardalign demo"] + (["--config", args.config] if args.config else [])
    parts += ["--quick"] if raw.get("quick") else []
    parts += ["--force"] if raw.get("force") else []
    parts += [f"--{n} {raw[n]}" for n in ("output", "task", "seed") if n in raw] + list(overrides)
    from ..demo.pipeline import run_demo

    result = run_demo(copy.deepcopy(raw), " ".join(parts))
    return 1 if result["stopped"] else 0
