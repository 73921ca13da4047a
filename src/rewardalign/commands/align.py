"""``rewardalign align --config align.yaml [--field value ...]``: offline alignment with any objective."""

from __future__ import annotations

import argparse

from ..config import TRAINING_ARGS_NOTE, add_config_arguments, from_dict, resolve
from ..train.configs import AlignConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, AlignConfig, TRAINING_ARGS_NOTE + "\nHyperparameters: --objective_args.beta 0.1")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    cfg = from_dict(AlignConfig, resolve(args.config, overrides), "align")
    from ..runs import print_summary
    from ..train.align import run_align

    summary = run_align(cfg)
    print_summary(f"align ({summary['objective']})", summary)
    return 0
