"""Read rows from files, ``datasets`` objects and ``save_to_disk`` directories, and load them as groups.

Sources: a path to a ``.jsonl``, ``.json`` (an array of objects, or JSON Lines as ``Dataset.to_json``
writes), ``.parquet`` or ``.csv`` file (every cell read as text: numbers are parsed where a number is
expected, so a response "007" stays "007"), a directory written by ``save_to_disk``, a
``datasets.Dataset`` or ``DatasetDict``, or a list of row dicts. A string that names no local file and
has no file suffix is loaded with ``datasets.load_dataset`` (the Hub; needs a network). Row indices in
errors are 0-based over the rows (blank JSON Lines lines are skipped).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from inspect import signature
from pathlib import Path
from typing import Any

from rewardalign.data.formats import FORMATS, check_columns, detect_format, group_ref
from rewardalign.data.schema import DataError, DropReport, Group

Row = Mapping[str, Any]


def _read_jsonl(path: Path) -> list[Row]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                rows.append(_parse_object(line, path, f"line {n}"))
    return rows


def _parse_object(text: str, path: Path, where: str) -> Row:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}, {where}: invalid JSON ({err})") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}, {where}: expected a JSON object, got {type(row).__name__}")
    return row


def _read_json(path: Path) -> list[Row]:
    text = path.read_text(encoding="utf-8")
    if not text.lstrip().startswith("["):
        return _read_jsonl(path)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}, item {n}: expected a JSON object, got {type(row).__name__}")
    return rows


def _read_parquet(path: Path) -> list[Row]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _read_csv(path: Path) -> list[Row]:
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")


READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet, ".csv": _read_csv}


def _open(source: str | os.PathLike, split: str | None) -> Any:
    """Rows of a file, or the ``datasets`` object of a directory or Hub name."""
    import datasets

    path = Path(source).expanduser()
    if path.is_dir():
        return datasets.load_from_disk(str(path))
    if path.is_file():
        if path.suffix not in READERS:
            raise ValueError(f"{path}: unsupported file type; supported: {', '.join(READERS)}")
        return READERS[path.suffix](path)
    if path.suffix in READERS or os.fspath(source).startswith(("/", ".", "~")):
        raise FileNotFoundError(f"{path}: no such file or directory")
    return datasets.load_dataset(str(path), split=split)


def read_rows(source: Any, *, split: str | None = None) -> tuple[Iterable[Row], list[str]]:
    """The rows of ``source`` (see the module docstring) and its column names.

    A ``DatasetDict`` needs ``split`` unless it has exactly one split; other sources ignore it. Like a
    table (and a ``Dataset``), every row has every column: None where a JSON object lacks the key.
    """
    if isinstance(source, (str, os.PathLike)):
        source = _open(source, split)
    if isinstance(source, list):
        columns = list(dict.fromkeys(key for row in source for key in row))
        return [{c: row.get(c) for c in columns} for row in source], columns
    import datasets

    if isinstance(source, datasets.DatasetDict):
        if split is None and len(source) == 1:
            split = next(iter(source))
        if split not in source:
            raise ValueError(f"choose a split with split= (--split): {', '.join(source)}")
        source = source[split]
    if isinstance(source, datasets.Dataset):
        return source, list(source.column_names)
    raise TypeError(
        f"cannot read rows from {type(source).__name__}: give a path, a datasets Dataset or DatasetDict, "
        "or a list of dicts"
    )


def load_groups(
    source: Any,
    format: str | None = None,
    *,
    split: str | None = None,
    on_error: str = "raise",
    score_range: tuple[float, float] = (0.0, 1.0),
    expected_k: int | None = None,
    **format_options: Any,
) -> tuple[list[Group], DropReport]:
    """Load ``source`` as validated groups.

    ``format`` names a converter of :data:`FORMATS` (detected from the columns when None).
    ``on_error="raise"`` raises the first :class:`DataError`; ``"drop"`` skips the rows (or groups) at
    fault and records each, with its reason, in the returned ``DropReport``. ``score_range`` is the declared
    range of a score column (scores are mapped from it into [0, 1]); formats that derive scores from
    ratings take their own ranges as ``format_options``. ``expected_k`` rejects groups of another size.
    Missing columns, unknown formats and bad options raise ``ValueError`` whatever ``on_error`` says.
    """
    if on_error not in ("raise", "drop"):
        raise ValueError(f"on_error must be 'raise' or 'drop', got {on_error!r}")
    rows, columns = read_rows(source, split=split)
    if not columns:
        raise ValueError(f"{source if isinstance(source, (str, os.PathLike)) else 'the source'} has no rows")
    format = format or detect_format(columns)
    check_columns(format, columns)
    convert = FORMATS[format]
    if "score_range" in signature(convert).parameters:
        format_options["score_range"] = score_range
    elif tuple(score_range) != (0.0, 1.0):
        raise ValueError(
            f"format {format!r} derives its scores from ratings; give their range in its options"
        )

    groups, report = [], DropReport()
    for item in convert(rows, **format_options):
        if isinstance(item, Group) and expected_k is not None and item.k != expected_k:
            item = DataError(
                group_ref(item), "responses", f"has {item.k} responses, expected K = {expected_k}"
            )
        if isinstance(item, Group):
            groups.append(item)
        elif on_error == "raise":
            raise item
        else:
            report.add(item.row, f"{item.field}: {item.reason}")
    return groups, report


def write_groups_jsonl(groups: Sequence[Group], path: str | os.PathLike) -> None:
    """Write groups in the native ``group`` format, one JSON object a line.

    The loaders' bookkeeping ``meta["row"]`` / ``meta["rows"]`` (rows of the source they read) is left
    out: loading the written file records its own rows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for group in groups:
            record = group.to_dict()
            meta = {k: v for k, v in group.meta.items() if k not in ("row", "rows")}
            record.pop("meta", None)
            if meta:
                record["meta"] = meta
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
