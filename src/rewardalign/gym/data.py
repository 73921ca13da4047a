"""Seeded data sets of a gym task: prompts, SFT demonstrations, tokenizer corpora, and JSONL files."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..data.schema import Group
from .tasks import Task

__all__ = ["make_corpus", "make_prompts", "make_sft_data", "read_jsonl", "write_jsonl"]


def make_prompts(task: Task, n: int, seed: int = 0) -> list[str]:
    """``n`` prompts of ``task`` (repeats possible), fixed by ``seed``."""
    rng = random.Random(f"prompts:{task.name}:{seed}")
    return [task.sample_prompt(rng) for _ in range(n)]


def make_sft_data(task: Task, n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` SFT rows ``{"prompt": ..., "response": ...}`` with the task's imperfect demonstrations."""
    rng = random.Random(f"sft:{task.name}:{seed}")
    rows = []
    for _ in range(n):
        prompt = task.sample_prompt(rng)
        rows.append({"prompt": prompt, "response": task.demonstration(prompt, rng)})
    return rows


def make_corpus(task: Task, n: int, seed: int = 0) -> list[str]:
    """``n`` texts to train a tokenizer on (see :meth:`Task.corpus`)."""
    return task.corpus(random.Random(f"corpus:{task.name}:{seed}"), n)


def write_jsonl(rows: Iterable[dict[str, Any] | Group], path: str | Path) -> Path:
    """Write dicts (or groups, as :meth:`Group.to_dict`) one JSON object a line; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row.to_dict() if isinstance(row, Group) else row, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file into dicts (blank lines skipped); a bad line raises naming its number."""
    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {i} is not valid JSON: {e}") from e
    return rows
