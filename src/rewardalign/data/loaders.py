"""Read rows from files, ``datasets`` objects and ``save_to_disk`` directories, and load them as groups.

Sources: a path to a ``.jsonl``, ``.json`` (an array of objects, or JSON Lines as ``Dataset.to_json``
writes), ``.parquet`` or ``.csv`` file (every cell read as text: numbers are parsed where a number is
expected, so a response "007" stays "007"), a directory written by ``save_to_disk``, a
``datasets.Dataset`` or ``DatasetDict``, or a list of row dicts. A string that names no local file and
has no file suffix is loaded with ``datasets.load_dataset`` (the Hub; needs a network). Row indices in
errors are 0-based over the rows (blank JSON Lines lines, and malformed ones dropped with
``on_error="drop"``, are skipped).

Text files must be UTF-8; a leading byte order mark is accepted and stripped. A source that cannot be read
as rows (missing, a directory that ``save_to_disk`` did not write, empty, not UTF-8, invalid JSON) raises a
:class:`~rewardalign.data.schema.DataSourceError` naming the file (and the line and byte where it applies):
one line, no traceback, from the command line. A malformed line of a JSON Lines file is such an error with
``on_error="raise"``; with ``"drop"`` it is skipped and recorded with its file and line in the DropReport.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from inspect import signature
from pathlib import Path
from typing import Any

from rewardalign.data.formats import FORMATS, check_columns, detect_format, group_ref
from rewardalign.data.schema import DataError, DataFileNotFoundError, DataSourceError, DropReport, Group

Row = Mapping[str, Any]
BOM = b"\xef\xbb\xbf"
SAVE_TO_DISK_FILES = ("state.json", "dataset_dict.json")
"""A directory holding one of these was written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""


class _Lines:
    """Where malformed lines go: raised (``on_error="raise"``) or recorded in a DropReport."""

    def __init__(self, path: Path, on_error: str, report: DropReport | None):
        self.path, self.on_error, self.report = path, on_error, report

    def bad(self, n: int, problem: str) -> None:
        if self.on_error == "raise" or self.report is None:
            raise DataSourceError(self.path, problem, line=n)
        self.report.add(f"line {n}", f"malformed line: {self.path}, line {n}: {problem}")


def _utf8_problem(data: bytes, err: UnicodeDecodeError, base: int = 0) -> str:
    return (f"invalid UTF-8 at byte offset {base + err.start} (byte {data[err.start]:#04x}); "
            "the file must be UTF-8 text")


class JsonlRows:
    """The rows of a JSON Lines file, parsed as they are read, so they are never all in memory at once (held as
    Python objects, an UltraFeedback-shaped file of 60,000 prompts, 480 MB, raised the tokenising parent's peak
    from 0.85 to 1.16 GB, its forked workers' too). Opening reads the file once: malformed lines are raised or recorded
    (``on_error``) and the columns gathered, in order of first appearance; each iteration parses it again and
    gives every row every column (None where the object lacks the key), skipping blank and malformed lines."""

    def __init__(self, path: Path, on_error: str = "raise", report: DropReport | None = None):
        self.path = path
        lines = _Lines(path, on_error, report)
        columns: dict[str, None] = {}
        self._count = 0
        for n, row in self._parsed():
            if isinstance(row, str):
                lines.bad(n, row)
                continue
            columns.update(dict.fromkeys(row))
            self._count += 1
        self.columns = list(columns)

    def _parsed(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        """(line number, the row or what is wrong with the line) of every non-blank line."""
        offset = 0
        with self.path.open("rb") as f:
            for n, raw in enumerate(f, 1):
                start, offset = offset, offset + len(raw)
                if n == 1 and raw.startswith(BOM):
                    raw, start = raw[len(BOM):], start + len(BOM)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    yield n, _utf8_problem(raw, err, start)
                    continue
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    yield n, f"invalid JSON ({err.msg} at column {err.colno})"
                    continue
                yield n, row if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for _, row in self._parsed():
            if isinstance(row, dict):
                if len(row) != len(self.columns):
                    for c in self.columns:
                        row.setdefault(c, None)
                yield row

    def __len__(self) -> int:
        return self._count


def _read_jsonl(path: Path, on_error: str = "raise", report: DropReport | None = None) -> JsonlRows:
    return JsonlRows(path, on_error, report)


def _text(path: Path) -> str:
    """The file's text: UTF-8, without a byte order mark."""
    data = path.read_bytes()
    skip = len(BOM) if data.startswith(BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, skip + err.start) + 1
        raise DataSourceError(path, _utf8_problem(data[skip:], err, skip), line=line) from None


def _read_json(path: Path, on_error: str = "raise", report: DropReport | None = None) -> Iterable[Row]:
    with path.open("rb") as f:
        head = f.read(4096)
    if not head.removeprefix(BOM).lstrip().startswith(b"["):
        return _read_jsonl(path, on_error, report)
    try:
        rows = json.loads(_text(path))
    except json.JSONDecodeError as err:
        raise DataSourceError(path, f"invalid JSON ({err.msg} at column {err.colno})", line=err.lineno) from None
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataSourceError(path, f"item {n}: expected a JSON object, got {type(row).__name__}")
    return rows


def _read_parquet(path: Path, on_error: str = "raise", report: DropReport | None = None) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise DataSourceError(path, f"not a readable Parquet file ({err})") from None


def _read_csv(path: Path, on_error: str = "raise", report: DropReport | None = None) -> list[Row]:
    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(_text(path)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataSourceError(path, f"not a readable CSV file ({err})") from None
    return frame.to_dict("records")


READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet, ".csv": _read_csv}


def is_saved_dataset(path: Path) -> bool:
    """True for a directory written by ``save_to_disk``."""
    return path.is_dir() and any((path / name).is_file() for name in SAVE_TO_DISK_FILES)


def _open(source: str | os.PathLike, split: str | None, on_error: str = "raise",
          report: DropReport | None = None) -> Any:
    """Rows of a file, or the ``datasets`` object of a directory or Hub name."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not is_saved_dataset(path):
            raise DataSourceError(path, "is a directory, not a data file (a data directory must be written by "
                                        f"save_to_disk: it holds {' or '.join(SAVE_TO_DISK_FILES)})")
        import datasets

        return datasets.load_from_disk(str(path))
    if path.is_file():
        if path.suffix not in READERS:
            raise DataSourceError(path, f"unsupported file type; supported: {', '.join(READERS)}")
        with path.open("rb") as f:
            head = f.read(64)
        if not head.removeprefix(BOM).strip() and not path.read_bytes().removeprefix(BOM).strip():
            raise DataSourceError(path, "the file is empty")
        return READERS[path.suffix](path, on_error, report)
    if path.exists():
        raise DataSourceError(path, "is not a regular file")
    if path.suffix in READERS or os.fspath(source).startswith(("/", ".", "~")):
        raise DataFileNotFoundError(path, "no such file or directory")
    import datasets

    return datasets.load_dataset(str(path), split=split)


def source_name(source: Any) -> str | None:
    """The path of a file or directory source (for error messages), else None."""
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else None


def read_rows(source: Any, *, split: str | None = None, on_error: str = "raise",
              report: DropReport | None = None) -> tuple[Iterable[Row], list[str]]:
    """The rows of ``source`` (see the module docstring) and its column names. A JSON Lines file's rows are a
    :class:`JsonlRows`, read again on each iteration; other sources' are a list or a ``datasets.Dataset``.

    A ``DatasetDict`` needs ``split`` unless it has exactly one split; other sources ignore it. Like a
    table (and a ``Dataset``), every row has every column: None where a JSON object lacks the key.
    ``on_error="drop"`` skips the malformed lines of a JSON Lines file, recording each in ``report``.
    """
    own = isinstance(source, (str, os.PathLike))
    if own:
        source = _open(source, split, on_error, report)
    if isinstance(source, JsonlRows):
        return source, source.columns
    if isinstance(source, list):
        columns = list(dict.fromkeys(key for row in source for key in row))
        if own:  # rows parsed here: complete them in place rather than copy them all
            for row in source:
                if len(row) != len(columns):
                    for c in columns:
                        row.setdefault(c, None)
            return source, columns
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


def iter_groups(
    source: Any,
    format: str | None = None,
    *,
    split: str | None = None,
    on_error: str = "raise",
    score_range: tuple[float, float] = (0.0, 1.0),
    expected_k: int | None = None,
    report: DropReport | None = None,
    **format_options: Any,
) -> Any:
    """The validated groups of ``source`` one at a time (what :func:`load_groups` collects). Rows and groups
    at fault are raised or, with ``on_error="drop"``, recorded in ``report``. Source-level problems (see the
    module docstring), missing columns, unknown formats and bad options raise before the first group."""
    if on_error not in ("raise", "drop"):
        raise ValueError(f"on_error must be 'raise' or 'drop', got {on_error!r}")
    report = report if report is not None else DropReport()
    name = source_name(source)
    rows, columns = read_rows(source, split=split, on_error=on_error, report=report)
    if not columns:
        if name is not None:
            raise DataSourceError(name, "has no rows" + (" left after dropping malformed lines" if report else ""))
        raise ValueError("the source has no rows")
    try:
        format = format or detect_format(columns)
        check_columns(format, columns)
    except ValueError as err:
        if name is not None:
            raise DataSourceError(name, str(err)) from None
        raise
    convert = FORMATS[format]
    if "score_range" in signature(convert).parameters:
        format_options["score_range"] = score_range
    elif tuple(score_range) != (0.0, 1.0):
        raise ValueError(
            f"format {format!r} derives its scores from ratings; give their range in its options"
        )
    return _checked(convert(rows, **format_options), expected_k, on_error, report)


def _checked(items: Iterable[Any], expected_k: int | None, on_error: str, report: DropReport) -> Any:
    for item in items:
        if isinstance(item, Group) and expected_k is not None and item.k != expected_k:
            item = DataError(
                group_ref(item), "responses", f"has {item.k} responses, expected K = {expected_k}"
            )
        if isinstance(item, Group):
            yield item
        elif on_error == "raise":
            raise item
        else:
            report.add(item.row, f"{item.field}: {item.reason}")


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
    Missing columns, unknown formats and bad options raise ``ValueError`` whatever ``on_error`` says (a
    ``DataSourceError`` naming the file for a file source); so does a source that cannot be read as rows,
    except that ``"drop"`` skips (and reports) the malformed lines of a JSON Lines file.
    """
    report = DropReport()
    groups = list(iter_groups(source, format, split=split, on_error=on_error, score_range=score_range,
                              expected_k=expected_k, report=report, **format_options))
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
