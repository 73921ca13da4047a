"""``rewardalign data inspect``: what a user needs to know about a dataset before training on it.

Prints the number of groups, the distribution of K, statistics of rewards, scores and labels, token
length percentiles for a tokenizer, and every rejected row with its reason. Exit code: 0 when every row
loads, 1 when rows were rejected (or, with ``--on-error raise``, at the first bad row), 2 when the
source cannot be read as groups (missing file or columns, bad options).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewardalign.data.formats import FORMATS, detect_format
from rewardalign.data.loaders import load_groups, read_rows
from rewardalign.data.schema import DataError, DataSourceError, DropReport, Group
from rewardalign.data.tokenize import render

PERCENTILES = (50, 90, 99)


def _stats(values: list[float]) -> dict[str, float] | None:
    """count, mean, std (population), min and max; None without values."""
    if not values:
        return None
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "min": min(values),
        "max": max(values),
    }


def _percentiles(lengths: list[int]) -> dict[str, int]:
    """Nearest-rank percentiles p50 / p90 / p99 and the maximum."""
    ranked = sorted(lengths)
    out = {f"p{p}": ranked[max(0, math.ceil(p / 100 * len(ranked)) - 1)] for p in PERCENTILES}
    out["max"] = ranked[-1]
    return out


def token_lengths(groups: Sequence[Group], tokenizer: Any) -> dict[str, dict[str, int]] | None:
    """Percentiles of prompt and response token counts (None without groups).

    Texts are rendered as :func:`rewardalign.data.tokenize.render` renders them for training (message
    lists through the tokenizer's chat template when it has one, the prompt with its generation prompt
    and a response as the text the conversation adds to it; else contents joined) and each is counted
    on its own, without special tokens.
    """
    if not groups:
        return None
    mode = "auto" if getattr(tokenizer, "chat_template", None) else "never"
    prompts, responses = [], []
    for group in groups:
        prompts.append(render(tokenizer, group.prompt, None, mode)[0])
        responses.extend(render(tokenizer, group.prompt, response, mode)[1] for response in group.responses)

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    return {"prompt": _percentiles(count(prompts)), "response": _percentiles(count(responses))}


def inspect_groups(
    groups: Sequence[Group], report: DropReport | None = None, tokenizer: Any = None
) -> dict[str, Any]:
    """The statistics ``rewardalign data inspect`` prints, as a dict.

    Keys: groups, responses, k ({K: number of groups}), rewards / scores / labels (``_stats`` over every
    response that has one, or None), tokens (``token_lengths``, None without a tokenizer), rejected
    ([{row, reason}]) and rejected_counts (per field).
    """
    report = report or DropReport()

    def values(name: str) -> list[float]:
        return [float(v) for group in groups for v in getattr(group, name) or ()]

    return {
        "groups": len(groups),
        "responses": sum(group.k for group in groups),
        "k": dict(sorted(Counter(group.k for group in groups).items())),
        "rewards": _stats(values("rewards")),
        "scores": _stats(values("scores")),
        "labels": _stats(values("labels")),
        "tokens": token_lengths(groups, tokenizer) if tokenizer is not None else None,
        "rejected": [{"row": row, "reason": reason} for row, reason in report.rows],
        "rejected_counts": report.counts(),
    }


def format_inspection(stats: dict[str, Any]) -> str:
    """The human-readable report of :func:`inspect_groups`' statistics."""
    lines = [
        f"groups: {stats['groups']}",
        f"responses: {stats['responses']}",
        "K: " + (", ".join(f"{k} x{n}" for k, n in stats["k"].items()) or "-"),
    ]
    for name in ("rewards", "scores", "labels"):
        s = stats[name]
        summary = "-" if s is None else "  ".join(f"{key} {value:.4g}" for key, value in s.items())
        lines.append(f"{name}: {summary}")
    if stats["tokens"] is not None:
        lines.append("token lengths:")
        for part, p in stats["tokens"].items():
            lines.append(f"  {part}: " + "  ".join(f"{key} {value}" for key, value in p.items()))
    counts = ", ".join(f"{reason} x{n}" for reason, n in stats["rejected_counts"].items())
    lines.append(f"rejected rows: {len(stats['rejected'])}" + (f" ({counts})" if counts else ""))
    lines.extend(f"  row {r['row']}: {r['reason']}" for r in stats["rejected"])
    return "\n".join(lines)


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``rewardalign data inspect`` to ``parser``."""
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
    options = {"score_field": args.score_field} if args.score_field else {}
    try:
        lines = DropReport()
        rows, columns = read_rows(args.path, split=args.split, on_error=args.on_error, report=lines)
        if not columns:
            raise DataSourceError(args.path, "has no rows")
        format = args.format or detect_format(columns)
        groups, report = load_groups(
            rows,
            format,
            on_error=args.on_error,
            score_range=tuple(args.score_range),
            expected_k=args.expected_k,
            **options,
        )
        lines.extend(report)
        report = lines
        stats = inspect_groups(groups, report, _tokenizer(args.tokenizer))
    except DataSourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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


def _tokenizer(path: str | None) -> Any:
    """The tokenizer of a local directory (never the Hub), or None."""
    if path is None:
        return None
    if not Path(path).is_dir():
        raise FileNotFoundError(f"--tokenizer {path}: no such directory")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


add_arguments = add_inspect_arguments
"""The command-module interface of :mod:`rewardalign.cli`."""


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    """The command-module interface of :mod:`rewardalign.cli`: inspect takes no config overrides."""
    if overrides:
        print(f"error: unrecognized arguments: {' '.join(overrides)}", file=sys.stderr)
        return 2
    return run_inspect(args)
