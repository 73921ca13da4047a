"""``rewardalign annotate --config annotate.yaml``: rewards from a reward source into the data set (cached).

Writes a JSONL of native groups with ``rewards`` (and ``scores`` / ``reward_members``), a sidecar
``<output stem>.meta.json``, and prints the throughput and the reward statistics. See
:mod:`rewardalign.rewards.annotate`.
"""

from __future__ import annotations

import argparse

from ..config import add_config_arguments, resolve
from .config import AnnotateConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, AnnotateConfig, ". Sources (source.type): reward_model, ensemble, rule, "
                         "teacher_ratio, imported. Transforms: none, standardize, minmax, sigmoid. "
                         "Example: --source.type rule --source.function mypkg.rules:length_reward")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from .annotate import annotate

    annotate(resolve(args.config, overrides), verbose=True)
    return 0
