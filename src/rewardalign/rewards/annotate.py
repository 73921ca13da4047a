"""``annotate``: score every response of every group with a reward source and write the rewards into the data.

Output: a JSONL of native groups (``rewardalign.data`` ``group`` format) where each group gets

- ``rewards``: the source's reward (for an ensemble, the mean of the members), or the transformed reward when
  the transform's target is ``rewards`` (standardize; the raw values then go to ``meta.raw_rewards``);
- ``scores``: the transformed reward when the target is ``scores`` (minmax, sigmoid: values in [0, 1]);
- ``reward_members``: an ensemble's M columns (``edpo``); dropped when a single-reward source rewrites
  ``rewards`` (they would describe other rewards). Fields this run does not write are kept.

A sidecar ``<output stem>.meta.json`` stores the source, the transform and its statistics (standardize's mean
and std), the cache key and the reward statistics.

Cache: the raw rewards are stored under ``cache_dir`` (default ``<output>.cache/``) keyed by the source's
fingerprint (model files' content hash, rule module hash, ...), the input data's content hash and the loading
options. Running again on the same inputs scores nothing; a changed model, rule or data file recomputes. The
transform is not part of the key: it is cheap and is re-applied to the cached raw rewards, so changing it never
rescores.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..config import ConfigError, from_dict
from ..data import Group, load_groups, write_groups_jsonl
from ..data.schema import DataError
from ..fingerprint import file_digest, hash_json, path_fingerprint
from ..runs import atomic_open, atomic_path, write_json
from .base import BadReward, RewardSource
from .config import AnnotateConfig
from .sources import build_source
from .transforms import Transform, describe, out_of_range, parse_transform

CACHE_VERSION = 1


def sidecar_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.stem + ".meta.json")


def default_cache_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".cache")


def data_fingerprint(data: str) -> str | None:
    """Content hash of a local data file or directory; None for anything else (no caching then)."""
    p = Path(data)
    if p.is_file():
        return file_digest(p)
    if p.is_dir():
        return path_fingerprint(p, "content")
    return None


def _check_finite(raw: np.ndarray, where: list[tuple[int, int]], source: RewardSource) -> None:
    """DataError naming the group and response of the first NaN or infinite reward."""
    bad = np.flatnonzero(~np.isfinite(raw.reshape(raw.shape[0], -1)).all(axis=1))
    if bad.size == 0:
        return
    i = int(bad[0])
    g, k = where[i]
    row = raw[i]
    what = f"{row}" if raw.ndim == 1 else f"{row.tolist()} (members {source.columns})"
    raise DataError(g, f"responses[{k}]", f"reward source {source.name} returned {what}: NaN or infinite "
                                          f"({bad.size} response(s) in all)")


def _save_cache(path: Path, raw: np.ndarray, info: dict[str, Any]) -> None:
    with atomic_open(path, "wb") as fh:
        np.save(fh, raw, allow_pickle=False)
    write_json(path.with_suffix(".json"), info)


def _load_cache(path: Path, n: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    raw = np.load(path, allow_pickle=False)
    return raw if raw.shape[0] == n else None


def _apply(transform: Transform, values: np.ndarray, where: list[tuple[int, int]]) -> tuple[np.ndarray, dict]:
    """The transform, with a DataError naming group and response for a value outside minmax's range."""
    if transform.kind == "minmax":
        bad = out_of_range(values, *transform.range)  # type: ignore[misc]
        if bad.size:
            g, k = where[int(bad[0])]
            lo, hi = transform.range  # type: ignore[misc]
            raise DataError(g, f"responses[{k}]", f"reward {values[bad[0]]} is outside the declared minmax range "
                                                  f"[{lo}, {hi}] ({bad.size} value(s) in all)")
    try:
        return transform.apply(values)
    except ValueError as err:
        raise ConfigError(f"transform {transform.kind}: {err}") from err


def _split(values: np.ndarray, sizes: list[int]) -> list[list[float]]:
    out, start = [], 0
    for k in sizes:
        out.append([float(v) for v in values[start: start + k]])
        start += k
    return out


def run_annotate(config: dict[str, Any] | AnnotateConfig, source: RewardSource | None = None,
             verbose: bool = True) -> dict[str, Any]:
    """Annotate ``config.data`` and write ``config.output``; returns the summary (also printed when verbose).

    ``source`` overrides ``config.source`` with a ready object (tests, notebooks). The summary's
    ``cache_hit`` / ``scored`` say whether any scoring happened.
    """
    start = time.perf_counter()
    cfg = config if isinstance(config, AnnotateConfig) else from_dict(AnnotateConfig, dict(config), "annotate")
    if source is not None and cfg.source is None:
        cfg = dataclasses.replace(cfg, source={"type": "given"})
    cfg.check()
    src = source if source is not None else build_source(cfg.source)  # type: ignore[arg-type]
    transform = parse_transform(cfg.transform, cfg.target).with_default_range(src.value_range)

    load_opts: dict[str, Any] = dict(format=cfg.format, split=cfg.split, on_error=cfg.on_error,
                                     **cfg.format_options)
    score_range = cfg.format_options.get("score_range") or getattr(src, "loader_score_range", None)
    if score_range is not None:
        load_opts["score_range"] = tuple(score_range)
    try:
        groups, drops = load_groups(cfg.data, **load_opts)
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise ConfigError(f"cannot load {cfg.data}: {err}") from err
    if not groups:
        raise ConfigError(f"{cfg.data} holds no group to annotate")
    src.prepare(groups)

    where = [(g, k) for g, group in enumerate(groups) for k in range(group.k)]
    prompts = [groups[g].prompt for g, _ in where]
    responses = [groups[g].responses[k] for g, k in where]
    n = len(where)

    data_fp = data_fingerprint(cfg.data)
    source_fp = src.fingerprint()
    key = None
    cache_file = None
    if cfg.cache and data_fp is not None:
        key = hash_json({"version": CACHE_VERSION, "source": source_fp, "data": data_fp,
                         "load": {k: v for k, v in load_opts.items()}})[:32]
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir(cfg.output)
        cache_file = cache_dir / f"{key}.npy"

    raw = _load_cache(cache_file, n) if cache_file is not None else None
    cache_hit = raw is not None
    scoring_seconds = 0.0
    load_seconds = 0.0
    if raw is None:
        t0 = time.perf_counter()
        src.load()
        load_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        bar = tqdm(total=n * src.work_units, desc=f"scoring ({src.kind})", unit="resp",
                   disable=not cfg.progress, leave=False)
        try:
            raw = np.asarray(src.score(prompts, responses, progress=bar.update), dtype=np.float64)
        except BadReward as err:
            g, k = where[err.index]
            raise DataError(g, f"responses[{k}]", f"reward source {src.name}: {err.reason}") from err
        finally:
            bar.close()
            src.close()
        scoring_seconds = time.perf_counter() - t0
        if raw.shape[0] != n:
            raise ValueError(f"reward source {src.name} returned {raw.shape[0]} rewards for {n} responses")
        _check_finite(raw, where, src)
        if cache_file is not None:
            _save_cache(cache_file, raw, {"source": src.name, "data": cfg.data, "responses": n,
                                          "columns": src.columns, "seconds": scoring_seconds})
    else:
        _check_finite(raw, where, src)

    members = raw if raw.ndim == 2 else None
    base = members.mean(axis=1) if members is not None else raw
    sizes = [group.k for group in groups]
    stats: dict[str, Any] = {"raw": describe(base)}
    rewards, scores, member_out = base, None, members
    transform_stats: Any = {}
    if transform.target == "scores":
        scores, transform_stats = _apply(transform, base, where)
    elif transform.target == "rewards":
        if members is not None:
            columns = [_apply(transform, members[:, j], where) for j in range(members.shape[1])]
            member_out = np.stack([c[0] for c in columns], axis=1)
            transform_stats = {"members": [c[1] for c in columns]}
            rewards = member_out.mean(axis=1)
        else:
            rewards, transform_stats = _apply(transform, base, where)
    stats["rewards"] = describe(rewards)
    if scores is not None:
        stats["scores"] = describe(scores)
    if member_out is not None:
        stats["members"] = {name: describe(member_out[:, j]) for j, name in enumerate(src.columns or [])}

    out_groups: list[Group] = []
    reward_lists = _split(rewards, sizes)
    score_lists = _split(scores, sizes) if scores is not None else None
    raw_lists = _split(base, sizes) if transform.target == "rewards" else None
    member_lists = ([_split(member_out[:, j], sizes) for j in range(member_out.shape[1])]
                    if member_out is not None else None)
    for g, group in enumerate(groups):
        meta = dict(group.meta)
        if raw_lists is not None:
            meta["raw_rewards"] = raw_lists[g]
        out_groups.append(dataclasses.replace(
            group, rewards=reward_lists[g],
            scores=score_lists[g] if score_lists is not None else group.scores,
            reward_members=[m[g] for m in member_lists] if member_lists is not None else None,
            meta=meta))
    output = Path(cfg.output)
    with atomic_path(output) as tmp:  # a killed run leaves the previous output or none, never a part
        write_groups_jsonl(out_groups, tmp)

    summary: dict[str, Any] = {
        "data": cfg.data,
        "output": str(output),
        "groups": len(groups),
        "responses": n,
        "source": src.name,
        "fingerprint": source_fp[:16],
        "cache_hit": cache_hit,
        "scored": 0 if cache_hit else n,
        "cache_file": str(cache_file) if cache_file is not None else None,
        "load_seconds": round(load_seconds, 4),
        "scoring_seconds": round(scoring_seconds, 4),
        "responses_per_second": round(n / scoring_seconds, 2) if scoring_seconds > 0 else None,
        "transform": transform.as_dict() | {"statistics": transform_stats},
        "statistics": stats,
        "truncated": getattr(src, "truncated", 0),
        "dropped_rows": len(drops),
        "dropped_by_reason": drops.counts(),
    }
    summary["seconds"] = round(time.perf_counter() - start, 4)
    sidecar = sidecar_path(output)
    write_json(sidecar, summary | {"source_columns": src.columns, "cache_key": key, "data_fingerprint": data_fp})
    summary["sidecar"] = str(sidecar)
    if verbose:
        print(format_summary(summary))
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The printed report: source, cache, throughput, reward statistics, output."""
    def fmt(d: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.4g}" for k, v in d.items())

    lines = [f"== annotate: {summary['responses']} responses in {summary['groups']} groups of {summary['data']} =="]
    lines.append(f"  source      {summary['source']} (fingerprint {summary['fingerprint']})")
    if summary["cache_hit"]:
        lines.append(f"  scoring     cache hit: nothing scored ({summary['cache_file']})")
    else:
        rate = summary["responses_per_second"]
        rate_text = f"{rate:.1f} responses/s" if rate else "-"
        lines.append(f"  scoring     {summary['scored']} responses in {summary['scoring_seconds']:.2f} s ({rate_text}; "
                     f"model loading {summary['load_seconds']:.2f} s more)")
    stats = summary["statistics"]
    lines.append(f"  rewards     {fmt(stats['rewards'])}")
    t = summary["transform"]
    if "scores" in stats:
        lines.append(f"  scores      {fmt(stats['scores'])} ({t['kind']})")
    if t["kind"] != "none" and t["target"] == "rewards":
        lines.append(f"  raw         {fmt(stats['raw'])} ({t['kind']} statistics in the sidecar)")
    for name, d in (stats.get("members") or {}).items():
        lines.append(f"  {name:<11} {fmt(d)}")
    if summary.get("truncated"):
        lines.append(f"  truncated   {summary['truncated']} responses longer than the source's max_length")
    if summary["dropped_rows"]:
        lines.append(f"  dropped     {summary['dropped_rows']} rows: {summary['dropped_by_reason']}")
    lines.append(f"  wrote       {summary['output']} (+ {summary.get('sidecar', 'sidecar')})")
    return "\n".join(lines)
