"""``rewardalign annotate --config annotate.yaml``: rewards from a reward source into the data set (cached).

Writes a JSONL of native groups with ``rewards`` (and ``scores`` / ``reward_members``), a sidecar
``<output stem>.meta.json``, and prints the throughput and the reward statistics.
"""

from __future__ import annotations

import argparse

from ..config import add_config_arguments, from_dict, resolve
from ..rewards.config import AnnotateConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, AnnotateConfig, "Sources: rm:<path>, rule:<module or file.py>:<function>, "
                         "gym:<task>, or {type: reward_model | ensemble | rule | gym | teacher_ratio | imported, "
                         "...}. Transforms: none, standardize, minmax, sigmoid.")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    cfg = from_dict(AnnotateConfig, resolve(args.config, overrides), "annotate")
    from ..rewards.annotate import run_annotate

    run_annotate(cfg, verbose=True)
    return 0
