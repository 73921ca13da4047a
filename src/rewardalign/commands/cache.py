"""``rewardalign data cache [DIR] [--max_gb N] [--older_than_days D] [--clear]``: the tokenised-data cache's
entries (size, last use), and pruning them least recently used first (:mod:`rewardalign.data.cache`).

DIR defaults to ``.cache/rewardalign/data``, where training runs with the default ``cache_dir`` keep their
tokenised data. Training prunes on its own after each new entry, to ``$REWARDALIGN_CACHE_MAX_GB`` (20 GB).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..config import ConfigError

DEFAULT_DIR = ".cache/rewardalign/data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default=DEFAULT_DIR, help=f"the cache folder (default {DEFAULT_DIR})")
    parser.add_argument("--max_gb", type=float, default=None,
                        help="remove the least recently used entries until the cache holds at most this many GB")
    parser.add_argument("--older_than_days", type=float, default=None,
                        help="remove the entries unused for more than this many days")
    parser.add_argument("--clear", action="store_true", help="remove every entry")


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from ..data.cache import entries, prune

    if overrides:
        raise ConfigError(f"unknown arguments {' '.join(overrides)}")
    for name in ("max_gb", "older_than_days"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise ConfigError(f"--{name} must be >= 0, got {value}")
    if Path(args.dir).exists() and not Path(args.dir).is_dir():
        raise ConfigError(f"{args.dir} is a file, not a cache folder")
    if not Path(args.dir).exists():
        print(f"{args.dir}: no cache here (the folder does not exist)")
        return 0
    removed = []
    if args.clear or args.max_gb is not None or args.older_than_days is not None:
        removed = prune(args.dir, max_bytes=0 if args.clear else (None if args.max_gb is None else
                                                                     int(args.max_gb * 1e9)),
                        older_than=None if args.older_than_days is None else args.older_than_days * 86400)
    now = time.time()
    found = entries(args.dir)
    print(f"{args.dir}: {len(found)} entries, {_size(sum(e.bytes for e in found))}"
          + (f" (removed {len(removed)}, {_size(sum(e.bytes for e in removed))})" if removed else ""))
    for e in found:
        print(f"  {e.key[:16]}  {_size(e.bytes):>10}  last used {(now - e.last_used) / 86400:.1f} days ago")
    return 0
