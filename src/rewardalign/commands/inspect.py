"""``rewardalign data inspect PATH``: statistics and rejected rows of a data set, before training."""

from __future__ import annotations

import argparse
import sys

from ..data.formats import FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", help="a .jsonl/.json/.parquet/.csv file, a save_to_disk directory or a Hub name"
    )
    parser.add_argument("--format", choices=list(FORMATS), help="the data format (default: from the columns)")
    parser.add_argument("--split", help="the split of a DatasetDict")
    parser.add_argument(
        "--tokenizer", metavar="DIR", help="a tokenizer directory, for token length percentiles"
    )
    parser.add_argument(
        "--on-error",
        choices=("drop", "raise"),
        default="drop",
        help="drop: list every bad row (default); raise: stop at the first",
    )
    parser.add_argument("--expected-k", type=int, help="reject groups with another number of responses")
    parser.add_argument(
        "--score-range",
        nargs=2,
        type=float,
        default=(0.0, 1.0),
        metavar=("LO", "HI"),
        help="the declared range of a score column (default 0 1)",
    )
    parser.add_argument(
        "--score-field", choices=("scores", "rewards"), help="read a score column as this field"
    )


def run_inspect(args: argparse.Namespace) -> int:
    """Load ``args.path``, print its statistics and rejected rows; return the exit code."""
    from ..data.formats import detect_format
    from ..data.inspect import format_inspection, inspect_groups, load_tokenizer_dir
    from ..data.loaders import load_groups, read_rows
    from ..data.schema import DataError

    options = {"score_field": args.score_field} if args.score_field else {}
    try:
        rows, columns = read_rows(args.path, split=args.split)
        format = args.format or detect_format(columns)
        groups, report = load_groups(
            rows,
            format,
            on_error=args.on_error,
            score_range=tuple(args.score_range),
            expected_k=args.expected_k,
            **options,
        )
        stats = inspect_groups(groups, report, load_tokenizer_dir(args.tokenizer))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"source: {args.path}")
    print(f"format: {format} (columns: {', '.join(columns)})")
    print(format_inspection(stats))
    return 1 if len(report) else 0


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    """The command-module interface of :mod:`rewardalign.cli`: inspect takes no config overrides."""
    if overrides:
        print(f"error: unrecognized arguments: {' '.join(overrides)}", file=sys.stderr)
        return 2
    return run_inspect(args)
