"""``rewardalign online --config online.yaml [--field value ...]``: UNA online, or the RLOO baseline."""

from __future__ import annotations

import argparse

from ..config import TRAINING_ARGS_NOTE, add_config_arguments, from_dict, resolve
from ..train.configs import OnlineConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, OnlineConfig, TRAINING_ARGS_NOTE + "\nHyperparameters: --objective_args.beta 0.1")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    cfg = from_dict(OnlineConfig, resolve(args.config, overrides), "online")
    from ..runs import print_summary
    from ..train.online import run_online

    summary = run_online(cfg)
    print_summary(f"online ({summary['algorithm']}: {summary['objective']})", summary)
    return 0
