"""Content fingerprints for the caches (tokenised data, reference log-probs, annotation, the demo's stages):
model directories, tokenizers, data, code.

A fingerprint changes when what it names changes, so a cache keyed on it is never stale:
``content`` hashes every byte (SHA-256); ``stat`` hashes each file's name, size and modification time (fast for
checkpoints of many GiB, but a copy with new timestamps misses the cache); ``auto`` hashes content up to
``AUTO_CONTENT_LIMIT`` bytes in all and falls back to ``stat`` beyond.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

AUTO_CONTENT_LIMIT = 2 << 30  # 2 GiB
MODES = ("auto", "content", "stat")
_SKIP_DIRS = ("checkpoint-", "runs", "__pycache__", ".git")


RUN_RECORDS = ("manifest.json", "summary.json", "metrics.jsonl", "README.md", "config.yaml", "training_args.bin",
               "trainer_state.json")
"""The records a run writes beside its model (times, logs, the model card, its own config): nothing that loading the
model reads, so :func:`model_fingerprint` leaves them out."""


def _files(path: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    if path.is_file():
        return [path]
    out = []
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path).parts
        if any(part.startswith(_SKIP_DIRS) for part in rel[:-1]) or not f.is_file() or rel[-1] in skip:
            continue
        out.append(f)
    return out


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of one file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def path_fingerprint(path: str | Path, mode: str = "auto", skip: tuple[str, ...] = ()) -> str:
    """Fingerprint of a file or a directory tree (``checkpoint-*`` folders and caches left out, and files named
    in ``skip``)."""
    if mode not in MODES:
        raise ValueError(f"fingerprint mode must be one of {MODES}, got {mode!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    files = _files(path, skip)
    if mode == "auto":
        mode = "content" if sum(f.stat().st_size for f in files) <= AUTO_CONTENT_LIMIT else "stat"
    h = hashlib.sha256(mode.encode())
    for f in files:
        rel = f.relative_to(path).as_posix() if path.is_dir() else f.name
        h.update(rel.encode() + b"\0")
        if mode == "content":
            h.update(file_digest(f).encode())
        else:
            st = f.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def model_fingerprint(path: str | Path, mode: str = "auto") -> str:
    """Fingerprint of a model directory: weights, configuration and tokenizer, without the run's records
    (:data:`RUN_RECORDS`), so a model trained again to the same weights hits the caches keyed on it."""
    return path_fingerprint(path, mode, skip=RUN_RECORDS)


def hash_json(value: Any) -> str:
    """SHA-256 of a JSON-serialisable value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def code_identity(obj: Any) -> dict[str, Any]:
    """What makes a function or class compute what it computes: its module's source file content and its own
    source (None where there is none, e.g. for a builtin)."""
    module = inspect.getmodule(obj)
    file = getattr(module, "__file__", None)
    try:
        code = inspect.getsource(obj)
    except (OSError, TypeError):
        code = None
    return {"module_file": file_digest(file) if file and Path(file).is_file() else None, "code": code}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Fingerprint of what a tokenizer does to text: its serialised content (vocabulary, merges, normaliser,
    pre-tokeniser, post-processor, added tokens) for a fast tokenizer, else its vocabulary; its special
    tokens and chat template. Independent of where it was loaded from."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    parts = {
        "class": type(tokenizer).__name__,
        "content": backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items()),
        "special": {k: str(v) for k, v in sorted(getattr(tokenizer, "special_tokens_map", {}).items())},
        "ids": [getattr(tokenizer, f"{name}_token_id", None) for name in ("bos", "eos", "pad")],
        "chat_template": getattr(tokenizer, "chat_template", None),
        "padding_side": getattr(tokenizer, "padding_side", None),
    }
    return hash_json(parts)
