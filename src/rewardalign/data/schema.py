"""The one data shape of rewardalign: a GROUP, one prompt with K >= 1 scored responses.

Pairwise data is K = 2 (the preferred response first, unless rewards say otherwise), unpaired binary
feedback is K = 1 (or all of a prompt's responses), UltraFeedback-like data is K = 4 with scores.
Every converter produces :class:`Group` objects and every error names the row and the field.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]
Text = str | list[Message]
"""A text field: a plain string, or a chat message list ``[{"role": ..., "content": ...}, ...]``."""


REWARD_LIMIT = 1e6
"""The largest reward magnitude a group may carry (rewards and reward_members): |reward| <= 1e6.

Training computes in float32 or bfloat16 (largest finite value about 3.4e38 for both): objectives square
rewards and reward differences (rpo, dro: squared errors, up to (2e6)^2 = 4e12 per term, summed over a batch)
and scale them by 1 / beta (1e6 / 1e-3 = 1e9), which stays more than twenty orders of magnitude inside that
range; float32 still resolves differences of 0.1 at 1e6. A reward of 1e38 passes float32 but its square
overflows to infinity, and 1e308 is finite only in float64: such values are rejected at load, naming the row
and the field, instead of turning the loss into inf or NaN mid-run. Rescale larger rewards (an annotate
transform) before training. Scores need no bound: they are mapped into [0, 1] from a finite declared range.
"""


class DataError(ValueError):
    """Bad input data. The message names the file (where known), the line or row, and the field."""

    def __init__(self, row: Any, field: str | None, message: str, *, file: Any = None, line: int | None = None):
        self.row = row
        self.field = field
        self.reason = message
        self.file = None if file is None else str(file)
        self.line = line
        where = [self.file] if self.file else []
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)

    def __reduce__(self) -> tuple:
        # Rebuilt from its parts (the default would call __init__ with the message alone), so an error raised
        # in a worker process of a datasets ``map`` reaches the caller intact.
        return _rebuild_error, (type(self), self.row, self.field, self.reason, self.file, self.line)


def _rebuild_error(cls: type, row: Any, field: str | None, reason: str, file: Any, line: int | None) -> DataError:
    return cls(row, field, reason, file=file, line=line)


class DataSourceError(DataError):
    """The source as a whole cannot be read as rows: missing, a directory, empty, not UTF-8, no fitting columns."""

    def __init__(self, file: Any, message: str, *, line: int | None = None):
        super().__init__(None, None, message, file=file, line=line)

    def __reduce__(self) -> tuple:
        return _rebuild_source_error, (type(self), self.file, self.reason, self.line)


def _rebuild_source_error(cls: type, file: Any, reason: str, line: int | None) -> DataSourceError:
    return cls(file, reason, line=line)


class DataFileNotFoundError(DataSourceError, FileNotFoundError):
    """A data path that does not exist (also a ``FileNotFoundError``)."""


@dataclass
class Group:
    """One prompt and K responses, each with an optional reward, score in [0, 1] and binary label.

    ``reward_members`` holds an ensemble's rewards as M lists of K floats (``edpo``); ``rewards`` is then
    usually their mean. ``meta`` carries anything else (ids, source row, sampled policy, ...).
    """

    prompt: Text
    responses: list[Text]
    rewards: list[float] | None = None
    scores: list[float] | None = None
    labels: list[int] | None = None
    reward_members: list[list[float]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.responses)

    def to_dict(self) -> dict[str, Any]:
        """The native group shape, as written to JSONL and read back by the ``group`` format."""
        out: dict[str, Any] = {"prompt": self.prompt, "responses": list(self.responses)}
        for name in ("rewards", "scores", "labels", "reward_members"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.meta:
            out["meta"] = self.meta
        return out


def text_is_empty(text: Text) -> bool:
    """True for an empty or whitespace-only string, or a message list whose contents are all empty."""
    if isinstance(text, str):
        return not text.strip()
    return all(not str(m.get("content") or "").strip() for m in text)


def text_key(text: Text) -> str:
    """A hashable key of a text field (used for duplicate detection and grouping by prompt)."""
    if isinstance(text, str):
        return text
    return "\x1e".join(f"{m.get('role')}\x1f{m.get('content')}" for m in text)


def _check_unicode(value: str, row: Any, name: str) -> None:
    """Reject a lone UTF-16 surrogate (a JSON ``"\\ud800"`` escape without its pair): not Unicode text, and
    no tokenizer can encode it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(value[err.start])
        raise DataError(row, name, f"holds a lone UTF-16 surrogate U+{code:04X} at character {err.start} "
                                   "(an unpaired \\u escape): not valid Unicode text") from None


def _check_text(value: Any, row: Any, name: str) -> None:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(row, name, "is empty")
        _check_unicode(value, row, name)
        return
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        for i, message in enumerate(value):
            if "role" not in message or "content" not in message:
                raise DataError(row, f"{name}[{i}]", "a chat message needs 'role' and 'content'")
            for key in ("role", "content"):
                if isinstance(message[key], str):
                    _check_unicode(message[key], row, f"{name}[{i}].{key}")
        if text_is_empty(value):
            raise DataError(row, name, "is empty (every message has empty content)")
        return
    raise DataError(row, name, f"must be a string or a chat message list, got {type(value).__name__}")


def _check_floats(values: Any, k: int, row: Any, name: str, limit: float | None = None) -> list[float]:
    if not isinstance(values, (list, tuple)):
        raise DataError(row, name, f"must be a list of {k} numbers, got {type(values).__name__}")
    if len(values) != k:
        raise DataError(row, name, f"has {len(values)} entries for {k} responses")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DataError(row, f"{name}[{i}]", f"must be a number, got {v!r}")
        if not math.isfinite(float(v)):
            raise DataError(row, f"{name}[{i}]", f"is {v} (NaN or infinite)")
        if limit is not None and abs(v) > limit:
            raise DataError(row, f"{name}[{i}]", f"is {v:g}, beyond +-{limit:g}: training in float32 / bfloat16 "
                                                 "cannot represent its squares safely (rescale the rewards)")
        out.append(float(v))
    return out


def validate_group(
    group: Group,
    row: Any,
    score_range: tuple[float, float] = (0.0, 1.0),
    allow_duplicates: bool = False,
) -> Group:
    """Check one group and return it with numeric fields normalised to float / int lists.

    Raises :class:`DataError` naming ``row`` and the field for: an empty prompt or response, a text with a
    lone UTF-16 surrogate, no responses, a NaN or infinite reward or score, a reward beyond
    :data:`REWARD_LIMIT`, a score outside ``score_range``, a label not 0/1, a list whose length
    is not K, and (unless ``allow_duplicates``) two identical responses in one group.
    """
    _check_text(group.prompt, row, "prompt")
    if not isinstance(group.responses, (list, tuple)) or not group.responses:
        raise DataError(row, "responses", "a group needs at least one response")
    k = len(group.responses)
    for i, response in enumerate(group.responses):
        _check_text(response, row, f"responses[{i}]")
    if not allow_duplicates:
        seen: dict[str, int] = {}
        for i, response in enumerate(group.responses):
            key = text_key(response)
            if key in seen:
                raise DataError(row, f"responses[{i}]", f"duplicates responses[{seen[key]}] in the same group")
            seen[key] = i
    if group.rewards is not None:
        group.rewards = _check_floats(group.rewards, k, row, "rewards", REWARD_LIMIT)
    if group.scores is not None:
        group.scores = _check_floats(group.scores, k, row, "scores")
        lo, hi = score_range
        for i, s in enumerate(group.scores):
            if not lo <= s <= hi:
                raise DataError(row, f"scores[{i}]", f"{s} is outside the declared range [{lo}, {hi}]")
    if group.labels is not None:
        if not isinstance(group.labels, (list, tuple)) or len(group.labels) != k:
            raise DataError(row, "labels", f"must be a list of {k} labels")
        labels = []
        for i, b in enumerate(group.labels):
            if isinstance(b, bool):
                b = int(b)
            if isinstance(b, float) and b in (0.0, 1.0):
                b = int(b)
            if b not in (0, 1) or not isinstance(b, int):
                raise DataError(row, f"labels[{i}]", f"must be 0 or 1, got {b!r}")
            labels.append(b)
        group.labels = labels
    if group.reward_members is not None:
        if not isinstance(group.reward_members, (list, tuple)) or not group.reward_members:
            raise DataError(row, "reward_members", "must be a non-empty list of M reward lists")
        group.reward_members = [
            _check_floats(m, k, row, f"reward_members[{j}]", REWARD_LIMIT)
            for j, m in enumerate(group.reward_members)
        ]
    return group


@dataclass
class DropReport:
    """Rows a loader or the tokeniser dropped, with their reasons (only where the user asked for filtering)."""

    rows: list[tuple[Any, str]] = field(default_factory=list)

    def add(self, row: Any, reason: str) -> None:
        self.rows.append((row, reason))

    def __len__(self) -> int:
        return len(self.rows)

    def counts(self) -> dict[str, int]:
        """Number of drops per reason kind (the text before the first ':' of a reason)."""
        return dict(Counter(reason.split(":")[0] for _, reason in self.rows))

    def extend(self, other: DropReport) -> None:
        self.rows.extend(other.rows)
