"""``rewardalign train-rm --config rm.yaml``: bt / oracle / ensemble reward models on preference pairs.

The run folder (``output_dir``) gets the reward model (or ``member_i/`` + ``ensemble.json``), the resolved
config, ``metrics.jsonl`` and ``summary.json``; the held-out accuracy and BT loss are printed at the end.
"""

from __future__ import annotations

import argparse

from ..config import TRAINING_ARGS_NOTE, add_config_arguments, from_dict, resolve
from ..rewards.config import RewardModelConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, RewardModelConfig, TRAINING_ARGS_NOTE)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    cfg = from_dict(RewardModelConfig, resolve(args.config, overrides), "train-rm")
    from accelerate import PartialState

    from ..runs import print_summary
    from ..train.reward_model import held_out_line, run_train_rm

    summary = run_train_rm(cfg)
    if not PartialState().is_main_process:
        return 0
    shown = {k: v for k, v in summary.items() if k not in ("members", "member_evals", "pairs_train", "pairs_eval")}
    print_summary(f"train-rm ({summary['kind']})", shown)
    print(held_out_line(summary))
    return 0
