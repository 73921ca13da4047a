"""``rewardalign data inspect PATH [--field value ...]``: statistics and rejected rows of a data set, before training.

The load options are spelt as in every training config (``--format``, ``--split``, ``--on_error``,
``--format_options.score_range "[1, 10]"``, ``--format_options.score_field rewards``,
``--format_options.expected_k 4``). Exit code: 0 when every row loads, 1 when rows were rejected (with
``--on_error raise``: at the first bad row), 2 when the source cannot be read as asked.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from ..config import (
    FORMAT_OPTIONS_HELP,
    ConfigError,
    apply_overrides,
    check_data_path,
    check_model_path,
    field_help,
    from_dict,
    opt,
    parse_overrides,
)
from ..data.formats import FORMATS


@dataclass
class InspectConfig:
    """The load options of ``data inspect``: the data fields of a training config, and a tokenizer."""

    format: str | None = opt(None, f"{', '.join(FORMATS)}; detected from the columns if unset")
    format_options: dict[str, Any] = opt(help=FORMAT_OPTIONS_HELP, factory=dict)
    split: str | None = opt(None, "the split of a datasets directory or hub data set")
    on_error: str = opt("drop", "drop: list every bad row (an inspection's purpose); raise: stop at the first")
    tokenizer: str | None = opt(None, "a tokenizer directory, for token length percentiles")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a .jsonl/.json/.parquet/.csv file, a save_to_disk directory or a Hub name")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "fields (--field value):\n" + field_help(InspectConfig)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    """Load ``args.path`` with the options of ``overrides``, print its statistics and rejected rows."""
    cfg = from_dict(InspectConfig, apply_overrides({}, parse_overrides(overrides)), "data inspect")
    if cfg.format is not None and cfg.format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
    if cfg.on_error not in ("raise", "drop"):
        raise ConfigError(f"on_error must be 'raise' or 'drop', got {cfg.on_error!r}")
    if not isinstance(cfg.format_options, dict):
        raise ConfigError("format_options must be a mapping of load options, e.g. {score_range: [1, 10]}")
    check_data_path(args.path)
    if cfg.tokenizer is not None:
        check_model_path(cfg.tokenizer, "tokenizer", hub=False, marker=("tokenizer.json", "tokenizer_config.json"))
    from ..data.formats import detect_format
    from ..data.inspect import format_inspection, inspect_groups, load_tokenizer_dir
    from ..data.loaders import load_groups, read_rows
    from ..data.schema import DataError, DataSourceError, DropReport

    try:
        report = DropReport()  # malformed lines skipped by on_error drop, then the rows the loader drops
        rows, columns = read_rows(args.path, split=cfg.split, on_error=cfg.on_error, report=report)
        if not columns:
            raise DataSourceError(args.path, "has no rows")
        format = cfg.format or detect_format(columns)
        groups, dropped = load_groups(rows, format, on_error=cfg.on_error, **cfg.format_options)
        report.extend(dropped)
    except DataError as err:  # a bad row with on_error raise: what the inspection found
        if getattr(err, "row", None) is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError) as err:  # the loader's word for a source it cannot read as asked
        raise ConfigError(f"{args.path}: {err}") from err
    stats = inspect_groups(groups, report, load_tokenizer_dir(cfg.tokenizer))
    print(f"source: {args.path}")
    print(f"format: {format} (columns: {', '.join(columns)})")
    print(format_inspection(stats))
    return 1 if len(report) else 0
