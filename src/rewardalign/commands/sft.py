"""``rewardalign sft --config sft.yaml [--field value ...]``: supervised fine-tuning on demonstrations."""

from __future__ import annotations

import argparse

from ..config import TRAINING_ARGS_NOTE, add_config_arguments, from_dict, resolve
from ..train.configs import SFTConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, SFTConfig, TRAINING_ARGS_NOTE)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    cfg = from_dict(SFTConfig, resolve(args.config, overrides), "sft")
    from ..runs import print_summary
    from ..train.sft import run_sft

    print_summary("sft", run_sft(cfg))
    return 0
