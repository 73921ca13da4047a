"""The tokenised-data cache's entries: what is there, when each was last used, and least-recently-used pruning.

An entry is a folder ``<root>/<key>/`` holding ``meta.json`` and its Arrow files (:mod:`rewardalign.data.
pipeline`); its last use is the modification time of ``meta.json``, which every cache hit refreshes
(:func:`touch`). :func:`prune` removes whole entries, least recently used first, until the cache fits
``max_bytes`` (and every entry unused for ``older_than`` seconds), never the entries of ``keep``, each under the
entry's file lock so that none is removed while a run builds or opens it (a run that has it open keeps reading:
removed memory-mapped files stay readable on POSIX systems). After every new entry the pipeline prunes to
:func:`default_max_bytes`: ``$REWARDALIGN_CACHE_MAX_GB`` (default 20 GB; 0 turns pruning off).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError

MAX_GB_ENV = "REWARDALIGN_CACHE_MAX_GB"
DEFAULT_MAX_GB = 20.0


@dataclass(frozen=True)
class Entry:
    """One cached tokenised data set."""

    key: str
    path: Path
    bytes: int
    last_used: float  # seconds since the epoch


def default_max_bytes() -> int | None:
    """The size the cache is pruned to after a new entry, from ``$REWARDALIGN_CACHE_MAX_GB`` (None: no limit)."""
    raw = os.environ.get(MAX_GB_ENV)
    try:
        gb = DEFAULT_MAX_GB if raw is None or raw.strip() == "" else float(raw)
    except ValueError:
        raise ConfigError(f"${MAX_GB_ENV} must be a number of GB (0: no limit), got {raw!r}") from None
    return None if gb <= 0 else int(gb * 1e9)


def touch(entry: Path) -> None:
    """Record a use of ``entry`` now."""
    os.utime(entry / "meta.json")


def entries(root: str | os.PathLike) -> list[Entry]:
    """The complete entries under ``root``, least recently used first (work folders of a build are not entries)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for path in root.iterdir():
        meta = path / "meta.json"
        if path.is_dir() and meta.is_file():
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            out.append(Entry(path.name, path, size, meta.stat().st_mtime))
    return sorted(out, key=lambda e: e.last_used)


def prune(root: str | os.PathLike, max_bytes: int | None = None, older_than: float | None = None,
          keep: Iterable[str] = ()) -> list[Entry]:
    """Remove entries, least recently used first, while the cache holds more than ``max_bytes`` or they were
    unused for ``older_than`` seconds; never those in ``keep``. Returns the removed entries."""
    from filelock import FileLock

    keep = set(keep)
    found = entries(root)
    total = sum(e.bytes for e in found)
    now = time.time()
    removed = []
    for e in found:
        too_big = max_bytes is not None and total > max_bytes
        too_old = older_than is not None and now - e.last_used > older_than
        if e.key in keep or not (too_big or too_old):
            continue
        with FileLock(str(Path(root) / f"{e.key}.lock")):  # the lock file stays: a waiting run may hold it open
            shutil.rmtree(e.path, ignore_errors=True)
        total -= e.bytes
        removed.append(e)
    return removed
