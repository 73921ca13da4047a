"""``rewardalign train-rm --config rm.yaml``: bt / oracle / ensemble reward models on preference pairs.

The run folder (``output_dir``) gets the reward model (or ``member_i/`` + ``ensemble.json``), the resolved
config, ``metrics.jsonl`` and ``summary.json``; the held-out accuracy and BT loss are printed at the end.
"""

from __future__ import annotations

import argparse

from ..config import TRAINING_ARGS_NOTE, add_config_arguments, resolve
from .config import RewardModelConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, RewardModelConfig, TRAINING_ARGS_NOTE + ". Kinds: bt, oracle, ensemble.")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from accelerate import PartialState

    from ..train.common import print_summary
    from .train import held_out_line, train_reward_model

    summary = train_reward_model(resolve(args.config, overrides))
    if not PartialState().is_main_process:
        return 0
    shown = {k: v for k, v in summary.items() if k not in ("members", "member_evals", "pairs_train", "pairs_eval")}
    print_summary(f"train-rm ({summary['kind']})", shown)
    print(held_out_line(summary))
    return 0
