"""The tokenised-data cache's entries and least-recently-used pruning (rewardalign.data.cache), in the pipeline
and from ``rewardalign data cache``."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from rewardalign.cli import main
from rewardalign.config import ConfigError
from rewardalign.data import cache as data_cache
from rewardalign.data.pipeline import prepare_dataset
from rewardalign.data.tokenize import TokenizeConfig

DATA = Path(__file__).parent / "fixtures" / "data"


def fake_entry(root, key, size, days_ago):
    path = root / key
    path.mkdir(parents=True)
    (path / "meta.json").write_text("{}")
    (path / "part.arrow").write_bytes(b"x" * size)
    when = time.time() - days_ago * 86400
    os.utime(path / "meta.json", (when, when))
    return path


def test_entries_are_listed_least_recently_used_first(tmp_path):
    fake_entry(tmp_path, "new", 100, 1)
    fake_entry(tmp_path, "old", 300, 9)
    (tmp_path / "half-built.tmp-123").mkdir()  # a build's work folder: no meta.json, not an entry
    found = data_cache.entries(tmp_path)
    assert [e.key for e in found] == ["old", "new"]
    assert [e.bytes for e in found] == [302, 102]  # the files, meta.json included
    assert data_cache.entries(tmp_path / "absent") == []


def test_prune_to_a_size_removes_the_least_recently_used(tmp_path):
    for key, days in (("a", 5), ("b", 3), ("c", 1)):
        fake_entry(tmp_path, key, 1000, days)
    removed = data_cache.prune(tmp_path, max_bytes=2100)  # 3 x 1002 bytes: one must go, the oldest
    assert [e.key for e in removed] == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["b", "c"]
    assert [e.key for e in data_cache.prune(tmp_path, max_bytes=0, keep=["b"])] == ["c"]
    assert (tmp_path / "b").is_dir()


def test_prune_by_age(tmp_path):
    fake_entry(tmp_path, "stale", 10, 40)
    fake_entry(tmp_path, "fresh", 10, 2)
    assert [e.key for e in data_cache.prune(tmp_path, older_than=30 * 86400)] == ["stale"]


def test_size_limit_from_the_environment(monkeypatch):
    monkeypatch.delenv(data_cache.MAX_GB_ENV, raising=False)
    assert data_cache.default_max_bytes() == 20e9
    monkeypatch.setenv(data_cache.MAX_GB_ENV, "0.5")
    assert data_cache.default_max_bytes() == 5e8
    monkeypatch.setenv(data_cache.MAX_GB_ENV, "0")
    assert data_cache.default_max_bytes() is None
    monkeypatch.setenv(data_cache.MAX_GB_ENV, "lots")
    with pytest.raises(ConfigError, match="REWARDALIGN_CACHE_MAX_GB"):
        data_cache.default_max_bytes()


def test_pipeline_touches_hits_and_prunes_after_a_new_entry(tokenizer, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    config = TokenizeConfig(max_length=64)
    first = tmp_path / "a.jsonl"
    shutil.copy(DATA / "pairs.jsonl", first)
    data_a, _ = prepare_dataset(first, tokenizer, config, cache_dir=root)
    meta = root / data_a.fingerprint / "meta.json"
    os.utime(meta, (1, 1))
    prepare_dataset(first, tokenizer, config, cache_dir=root)  # a hit records its use
    assert meta.stat().st_mtime > time.time() - 60
    monkeypatch.setenv(data_cache.MAX_GB_ENV, "1e-9")  # one byte: only the newest entry fits
    second = tmp_path / "b.jsonl"
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    second.write_text("".join(json.dumps(r | {"prompt": r["prompt"] + " again"}) + "\n" for r in rows))
    data_b, _ = prepare_dataset(second, tokenizer, config, cache_dir=root)
    assert [e.key for e in data_cache.entries(root)] == [data_b.fingerprint]
    assert len(data_b) == len(rows)  # the new entry is read after the prune


def test_cache_command_lists_and_prunes(tmp_path, capsys):
    fake_entry(tmp_path, "a" * 20, 2_000_000, 10)
    fake_entry(tmp_path, "b" * 20, 1_000_000, 1)
    assert main(["data", "cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 entries, 3.0 MB" in out and "a" * 16 in out and "last used 10.0 days ago" in out
    assert main(["data", "cache", str(tmp_path), "--older_than_days", "5"]) == 0
    assert "1 entries, 1.0 MB (removed 1, 2.0 MB)" in capsys.readouterr().out
    assert main(["data", "cache", str(tmp_path), "--clear"]) == 0
    assert "0 entries" in capsys.readouterr().out
    assert main(["data", "cache", str(tmp_path), "--max_gb", "-1"]) == 2
    assert "--max_gb must be >= 0" in capsys.readouterr().err


def test_cache_command_on_a_file_or_a_missing_folder(tmp_path, capsys):
    (tmp_path / "f.txt").write_text("x")
    assert main(["data", "cache", str(tmp_path / "f.txt")]) == 2
    assert "is a file, not a cache folder" in capsys.readouterr().err
    assert main(["data", "cache", str(tmp_path / "typo")]) == 0
    assert "no cache here (the folder does not exist)" in capsys.readouterr().out


def test_a_bad_size_limit_fails_before_any_work(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv(data_cache.MAX_GB_ENV, "lots")
    with pytest.raises(ConfigError, match="REWARDALIGN_CACHE_MAX_GB"):
        prepare_dataset(DATA / "pairs.jsonl", tokenizer, TokenizeConfig(max_length=64), cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()
