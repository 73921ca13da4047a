"""``rewardalign evaluate --config eval.yaml``: sample a model on prompts; reward, KL, win rate, drift."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import add_config_arguments, from_dict, resolve
from ..evaluate.config import EvalConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, EvalConfig)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    cfg = from_dict(EvalConfig, resolve(args.config, overrides), "evaluate")
    from ..evaluate.metrics import eos_warning
    from ..evaluate.run import run_evaluate, summary_lines
    from ..runs import print_summary

    result = run_evaluate(cfg)
    print_summary("evaluate", summary_lines(result))
    print(f"{'written':>22}: {Path(cfg.output_dir) / 'eval.json'}, samples.jsonl")
    warning = eos_warning(result["eos_missing_fraction"])
    if warning:
        print(warning, file=sys.stderr)
    return 0
