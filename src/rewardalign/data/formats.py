"""Converters from common dataset shapes to groups, and detection of the shape from the columns.

A converter is a function over an iterable of row dicts. It yields, in order, a :class:`Group` for every
group it builds and a :class:`DataError` for every row it rejects (it never raises on bad data);
:func:`rewardalign.data.load_groups` raises the first error, or records every one in a ``DropReport``
when asked to drop. Errors name the 0-based source row and the source column (``chosen_reward``,
``completions[2].response``, ...). Every group records its source row in ``meta["row"]`` (for formats
grouped by prompt, the group's first row; ``meta["rows"]`` lists them all). Optional columns are read
when the first row has them (``load_groups`` gives every row every column of the source, None where
absent, so a column that only some rows fill is "missing" in the others). Numbers may be given as
strings (CSV, UltraFeedback ratings).

Formats (``format=``, CLI ``--format``; :func:`detect_format` picks the first that fits the columns):

- ``group``: the native shape: prompt, responses, optional rewards / scores / labels lists,
  reward_members, meta. One row, one group.
- ``ultrafeedback``: instruction (or prompt), completions [{response, overall_score, annotations}].
  rewards = overall_score (``rating="overall"``) or the mean of the fine-grained aspect ratings
  (``rating="fine_grained"``; "N/A" ratings are skipped); by default the first row decides: overall
  when it has ``overall_score``. scores = the same value mapped linearly from ``overall_range`` (1..10)
  or ``rating_range`` (1..5) into [0, 1], so an overall 7 gives (7 - 1) / 9.
- ``pairs``: chosen, rejected, optional prompt, optional chosen_reward / rejected_reward and
  chosen_score / rejected_score (or reward_chosen / score_chosen, ...). K = 2 with the chosen response
  at index 0: without rewards, index 0 is the preferred one (the convention the objectives rely on);
  given rewards are kept as they are, even where they rank the rejected response higher. The prompt may
  be embedded: when chosen and rejected are chat message lists that open with a non-assistant message,
  their common leading messages (cut back to end on a non-assistant message) are the prompt, whether
  or not there is a prompt column; plain strings with no prompt (transcripts such as Anthropic HH) have
  their common prefix split off at its last whitespace run, which starts the responses
  ("...\\n\\nAssistant:" + " The answer"); the prompt must span a line break, else the row is an error
  (a shared first word is no prompt).
- ``binary`` (KTO): prompt, completion (or response), label (bool, 0/1, "true"/"false").
- ``helpsteer``: prompt, response and attribute ratings. rewards = sum of weight * rating
  (``weights``, default HelpSteer2's 0.65 helpfulness + 0.8 correctness + 0.45 coherence); scores =
  the same mapped into [0, 1] from its least and greatest possible values over ``rating_range`` (0..4).
- ``scores``: prompt, response (or completion), score and / or reward.

``binary``, ``helpsteer`` and ``scores`` rows are grouped by identical prompt (responses in row order, a
response repeated under the same prompt is an error of the later row); the others map a row to a group.

Scores: a ``score`` column (``chosen_score`` for pairs, ``scores`` for groups) must lie in the declared
``score_range`` (default [0, 1]) and is mapped linearly into [0, 1]; ``score_field="rewards"`` reads it
as rewards instead (no range). A ``reward`` column always gives rewards.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain
from typing import Any

from rewardalign.data.schema import DataError, Group, Text, text_key, validate_group

Row = Mapping[str, Any]
Item = Group | DataError
Converter = Callable[..., Iterator[Item]]

ULTRAFEEDBACK_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
HELPSTEER2_WEIGHTS = {"helpfulness": 0.65, "correctness": 0.8, "coherence": 0.45}

_SCORE_HINT = (" (declare its range with --format_options.score_range \"[LO, HI]\" or read it as rewards with "
               "--format_options.score_field rewards; in a config: format_options: {score_range: [LO, HI]})")

REQUIRED_COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "group": (("prompt",), ("responses",)),
    "ultrafeedback": (("instruction", "prompt"), ("completions",)),
    "pairs": (("chosen",), ("rejected",)),
    "binary": (("prompt",), ("completion", "response"), ("label",)),
    "helpsteer": (("prompt",), ("response",), ("helpfulness",), ("correctness",), ("coherence",)),
    "scores": (("prompt",), ("response", "completion"), ("score", "reward")),
}
"""Columns each format needs (each inner tuple: alternatives), in the order detection tries them."""


# ---------------------------------------------------------------------------------------------- helpers


def _peek(rows: Iterable[Row]) -> tuple[Row, Iterator[Row]]:
    """The first row (empty if none) and an iterator over all rows."""
    it = iter(rows)
    first = next(it, None)
    return ({}, it) if first is None else (first, chain([first], it))


def _alias(first: Row, names: tuple[str, ...]) -> str:
    """The first of ``names`` the first row has (the first name when it has none)."""
    return next((n for n in names if n in first), names[0])


def _get(row: Row, name: str, i: int, field: str | None = None) -> Any:
    value = row.get(name)
    if value is None:
        raise DataError(i, field or name, "is missing")
    return value


def _to_number(value: Any, i: int, field: str) -> Any:
    """Parse a numeric string; anything else is returned as is (NaN, infinity, range: left to validation)."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        raise DataError(i, field, "is missing")
    try:
        return float(value)
    except ValueError:
        raise DataError(i, field, f"must be a number, got {value!r}") from None


def _number(row: Row, name: str, i: int, field: str | None = None) -> Any:
    return _to_number(_get(row, name, i, field), i, field or name)


def _bounded(value: Any, bounds: tuple[float, float], i: Any, field: str, hint: str = "") -> float:
    """A finite number within ``bounds``, else a DataError (``hint`` follows an out-of-range message)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(i, field, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DataError(i, field, f"is {value} (NaN or infinite)")
    lo, hi = bounds
    if not lo <= value <= hi:
        raise DataError(i, field, f"{value} is outside the declared range [{lo}, {hi}]{hint}")
    return float(value)


def _check_range(bounds: tuple[float, float], name: str) -> tuple[float, float]:
    lo, hi = (float(b) for b in bounds)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be two finite numbers lo < hi, got {bounds!r}")
    return lo, hi


def _unit(values: list[float], bounds: tuple[float, float]) -> list[float]:
    """Map values linearly from ``bounds`` into [0, 1]."""
    lo, hi = bounds
    return [(v - lo) / (hi - lo) for v in values]


def _validate(
    group: Group, i: int, fields: Mapping[str, str], score_range: tuple[float, float] = (0.0, 1.0)
) -> Group:
    """:func:`validate_group`, with its field names (``rewards[0]``) renamed to source columns."""
    try:
        return validate_group(group, i, score_range)
    except DataError as err:
        reason = err.reason
        for name, column in fields.items():
            reason = reason.replace(name, column)
        field = err.field
        for name, column in fields.items():  # responses[0] -> chosen, responses[0][1].content -> chosen[1].content
            if field == name or field.startswith((name + "[", name + ".")):
                field = column + field[len(name):]
                break
        raise DataError(i, field, reason) from None


def _numeric_columns(
    first: Row,
    reward_candidates: tuple[tuple[str, ...], ...],
    score_candidates: tuple[tuple[str, ...], ...],
    score_field: str,
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """The (reward columns, score columns) to read, after applying ``score_field``."""
    if score_field not in ("scores", "rewards"):
        raise ValueError(f"score_field must be 'scores' or 'rewards', got {score_field!r}")

    def found(candidates: tuple[tuple[str, ...], ...]) -> tuple[str, ...] | None:
        return next((cols for cols in candidates if all(c in first for c in cols)), None)

    rewards, scores = found(reward_candidates), found(score_candidates)
    if score_field == "rewards" and scores:
        if rewards:
            raise ValueError(
                f"score_field='rewards' reads {scores} as rewards, but {rewards} already gives them"
            )
        return scores, None
    return rewards, scores


def _with_numbers(
    group: Group,
    row: Row,
    i: int,
    fields: dict[str, str],
    rewards: tuple[str, ...] | None,
    scores: tuple[str, ...] | None,
    score_range: tuple[float, float],
) -> Group:
    """Attach rewards / scores read from ``row``, validate, and map the scores into [0, 1]."""
    if rewards:
        group.rewards = [_number(row, c, i) for c in rewards]
        fields.update((f"rewards[{k}]", c) for k, c in enumerate(rewards))
    if scores:
        group.scores = [_bounded(_number(row, c, i), score_range, i, c, _SCORE_HINT) for c in scores]
        fields.update((f"scores[{k}]", c) for k, c in enumerate(scores))
    group = _validate(group, i, fields, score_range)
    if scores:
        group.scores = _unit(group.scores, score_range)
    return group


def _each(rows: Iterable[Row], convert: Callable[[int, Row], Group]) -> Iterator[Item]:
    """One group per row; a row's DataError is yielded in its place."""
    for i, row in enumerate(rows):
        try:
            item: Item = convert(i, row)
        except DataError as err:
            item = err
        yield item


def _by_prompt(rows: Iterable[Row], convert: Callable[[int, Row], Group], response: str) -> Iterator[Item]:
    """Merge the K = 1 groups ``convert`` makes of each row into one group per identical prompt."""
    groups: dict[str, Group] = {}
    seen: dict[str, dict[str, int]] = {}
    for i, row in enumerate(rows):
        try:
            one = convert(i, row)
        except DataError as err:
            yield err
            continue
        key, answer = text_key(one.prompt), text_key(one.responses[0])
        if key not in groups:
            groups[key], seen[key] = one, {answer: i}
            one.meta["rows"] = [i]
            continue
        if answer in seen[key]:
            yield DataError(i, response, f"duplicates row {seen[key][answer]} under the same prompt")
            continue
        seen[key][answer] = i
        group = groups[key]
        group.responses.append(one.responses[0])
        group.meta["rows"].append(i)
        for name in ("rewards", "scores", "labels"):
            values = getattr(one, name)
            if values is not None:
                getattr(group, name).append(values[0])
    yield from groups.values()


def group_ref(group: Group, width: int = 40) -> str:
    """How an error names a whole group: its first source row and the prompt's first characters."""
    prompt = group.prompt
    text = prompt if isinstance(prompt, str) else " ".join(str(m.get("content") or "") for m in prompt)
    text = " ".join(text.split())
    preview = text if len(text) <= width else text[: width - 1] + "…"
    return f"{group.meta.get('row', '?')} (prompt {preview!r})"


# ------------------------------------------------------------------------------------------------ pairs


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, Mapping) for m in value)


def _same_message(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.get("role") == b.get("role") and a.get("content") == b.get("content")


def _split_chats(chosen: list, rejected: list, i: int) -> tuple[Text, Text, Text]:
    n = 0
    while n < min(len(chosen), len(rejected)) and _same_message(chosen[n], rejected[n]):
        n += 1
    while n and chosen[n - 1].get("role") == "assistant":
        n -= 1
    if n == 0:
        raise DataError(i, "prompt", "is missing, and chosen and rejected share no leading prompt messages")
    for name, messages in (("chosen", chosen), ("rejected", rejected)):
        if len(messages) == n:
            raise DataError(i, name, "has no messages after the prompt it shares with the other response")
    return chosen[:n], chosen[n:], rejected[n:]


def _split_strings(chosen: str, rejected: str, i: int) -> tuple[Text, Text, Text]:
    prefix = os.path.commonprefix([chosen, rejected])
    cut = len(prefix)
    while cut and not prefix[cut - 1].isspace():
        cut -= 1
    while cut and prefix[cut - 1].isspace():
        cut -= 1
    if "\n" not in prefix[:cut].strip():
        raise DataError(
            i, "prompt", "is missing, and chosen and rejected share no multi-line prefix to split off as one"
        )
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _pair_texts(row: Row, i: int) -> tuple[Text, Text, Text]:
    """(prompt, chosen, rejected), splitting off a prompt embedded in both responses."""
    chosen, rejected = _get(row, "chosen", i), _get(row, "rejected", i)
    if _is_chat(chosen) and _is_chat(rejected) and chosen[0].get("role") != "assistant":
        return _split_chats(chosen, rejected, i)
    if row.get("prompt") is not None:
        return row["prompt"], chosen, rejected
    if isinstance(chosen, str) and isinstance(rejected, str):
        return _split_strings(chosen, rejected, i)
    raise DataError(i, "prompt", "is missing, and chosen and rejected embed no prompt conversation")


def convert_pairs(
    rows: Iterable[Row], *, score_range: tuple[float, float] = (0.0, 1.0), score_field: str = "scores"
) -> Iterator[Item]:
    """Preference pairs to K = 2 groups, chosen at index 0 (see the module docstring)."""
    score_range = _check_range(score_range, "score_range")
    first, rows = _peek(rows)
    rewards, scores = _numeric_columns(
        first,
        (("chosen_reward", "rejected_reward"), ("reward_chosen", "reward_rejected")),
        (("chosen_score", "rejected_score"), ("score_chosen", "score_rejected")),
        score_field,
    )

    def convert(i: int, row: Row) -> Group:
        prompt, chosen, rejected = _pair_texts(row, i)
        fields = {"responses[0]": "chosen", "responses[1]": "rejected"}
        group = Group(prompt, [chosen, rejected], meta={"row": i})
        return _with_numbers(group, row, i, fields, rewards, scores, score_range)

    yield from _each(rows, convert)


# ------------------------------------------------------------------------------------ grouped by prompt


def _label(row: Row, i: int) -> Any:
    value = _get(row, "label", i)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return _number(row, "label", i)


def convert_binary(rows: Iterable[Row]) -> Iterator[Item]:
    """Unpaired binary feedback (KTO shape) grouped by prompt, with labels 1 desirable, 0 undesirable."""
    first, rows = _peek(rows)
    response = _alias(first, ("completion", "response"))
    fields = {"responses[0]": response, "labels[0]": "label"}

    def convert(i: int, row: Row) -> Group:
        group = Group(
            _get(row, "prompt", i), [_get(row, response, i)], labels=[_label(row, i)], meta={"row": i}
        )
        return _validate(group, i, fields)

    yield from _by_prompt(rows, convert, response)


def convert_scores(
    rows: Iterable[Row], *, score_range: tuple[float, float] = (0.0, 1.0), score_field: str = "scores"
) -> Iterator[Item]:
    """Point-wise scored responses grouped by prompt: ``score`` -> scores, ``reward`` -> rewards."""
    score_range = _check_range(score_range, "score_range")
    first, rows = _peek(rows)
    response = _alias(first, ("response", "completion"))
    rewards, scores = _numeric_columns(first, (("reward",),), (("score",),), score_field)

    def convert(i: int, row: Row) -> Group:
        group = Group(_get(row, "prompt", i), [_get(row, response, i)], meta={"row": i})
        return _with_numbers(group, row, i, {"responses[0]": response}, rewards, scores, score_range)

    yield from _by_prompt(rows, convert, response)


def convert_helpsteer(
    rows: Iterable[Row],
    *,
    weights: Mapping[str, float] | None = None,
    rating_range: tuple[float, float] = (0.0, 4.0),
) -> Iterator[Item]:
    """HelpSteer attribute ratings combined with ``weights`` into rewards and [0, 1] scores."""
    weights = dict(HELPSTEER2_WEIGHTS if weights is None else weights)
    if not weights or not all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights.values()):
        raise ValueError(f"weights must map attribute names to finite numbers, got {weights!r}")
    lo, hi = _check_range(rating_range, "rating_range")
    top = sum(w * (hi if w > 0 else lo) for w in weights.values())
    bottom = sum(w * (lo if w > 0 else hi) for w in weights.values())
    if top == bottom:
        raise ValueError(f"weights {weights!r} give every response the same reward")

    def convert(i: int, row: Row) -> Group:
        combined = sum(w * _bounded(_number(row, a, i), (lo, hi), i, a) for a, w in weights.items())
        group = Group(
            _get(row, "prompt", i),
            [_get(row, "response", i)],
            rewards=[combined],
            scores=[(combined - bottom) / (top - bottom)],
            meta={"row": i},
        )
        return _validate(group, i, {"responses[0]": "response"})

    yield from _by_prompt(rows, convert, "response")


# -------------------------------------------------------------------------------------- one row, one group


def _aspect_mean(
    completion: Row, aspects: tuple[str, ...], bounds: tuple[float, float], i: int, at: str
) -> float:
    annotations = completion.get("annotations")
    if not isinstance(annotations, Mapping):
        raise DataError(i, f"{at}.annotations", "is missing")
    ratings = []
    for aspect in aspects:
        entry = annotations.get(aspect)
        if entry is None:
            continue
        if not isinstance(entry, Mapping):
            raise DataError(i, f"{at}.annotations.{aspect}", "must be an object with a 'Rating'")
        value = entry.get("Rating")
        if value is None or (isinstance(value, str) and value.strip().upper() == "N/A"):
            continue
        field = f"{at}.annotations.{aspect}.Rating"
        ratings.append(_bounded(_to_number(value, i, field), bounds, i, field))
    if not ratings:
        raise DataError(i, f"{at}.annotations", f"has no rating for any of {', '.join(aspects)}")
    return sum(ratings) / len(ratings)


def convert_ultrafeedback(
    rows: Iterable[Row],
    *,
    rating: str | None = None,
    overall_range: tuple[float, float] = (1.0, 10.0),
    rating_range: tuple[float, float] = (1.0, 5.0),
    aspects: tuple[str, ...] = ULTRAFEEDBACK_ASPECTS,
) -> Iterator[Item]:
    """UltraFeedback rows (an instruction and its rated completions) to groups with rewards and scores."""
    overall_range = _check_range(overall_range, "overall_range")
    rating_range = _check_range(rating_range, "rating_range")
    first, rows = _peek(rows)
    prompt_column = _alias(first, ("instruction", "prompt"))
    if rating is None:
        sample = (first.get("completions") or [{}])[0]
        rating = "overall" if isinstance(sample, Mapping) and "overall_score" in sample else "fine_grained"
    if rating not in ("overall", "fine_grained"):
        raise ValueError(f"rating must be 'overall' or 'fine_grained', got {rating!r}")
    bounds = overall_range if rating == "overall" else rating_range

    def convert(i: int, row: Row) -> Group:
        completions = _get(row, "completions", i)
        if not isinstance(completions, list) or not completions:
            raise DataError(i, "completions", "must be a non-empty list of completions")
        responses, rewards = [], []
        for j, completion in enumerate(completions):
            at = f"completions[{j}]"
            if not isinstance(completion, Mapping):
                raise DataError(i, at, "must be an object with a response and its ratings")
            responses.append(_get(completion, "response", i, f"{at}.response"))
            if rating == "overall":
                field = f"{at}.overall_score"
                rewards.append(_bounded(_number(completion, "overall_score", i, field), bounds, i, field))
            else:
                rewards.append(_aspect_mean(completion, aspects, bounds, i, at))
        group = Group(
            _get(row, prompt_column, i), responses, rewards, _unit(rewards, bounds), meta={"row": i}
        )
        fields = {f"responses[{j}]": f"completions[{j}].response" for j in range(len(responses))}
        return _validate(group, i, {"prompt": prompt_column, **fields})

    yield from _each(rows, convert)


def convert_group(rows: Iterable[Row], *, score_range: tuple[float, float] = (0.0, 1.0)) -> Iterator[Item]:
    """The native group shape (``Group.to_dict``); scores are mapped from ``score_range`` into [0, 1]."""
    score_range = _check_range(score_range, "score_range")

    def convert(i: int, row: Row) -> Group:
        meta = row.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise DataError(i, "meta", f"must be an object, got {type(meta).__name__}")
        group = Group(
            _get(row, "prompt", i),
            _get(row, "responses", i),
            **{name: row.get(name) for name in ("rewards", "scores", "labels", "reward_members")},
            meta={**meta, "row": i},
        )
        group = _validate(group, i, {}, score_range)
        if group.scores is not None:
            group.scores = _unit(group.scores, score_range)
        return group

    yield from _each(rows, convert)


FORMATS: dict[str, Converter] = {
    "group": convert_group,
    "ultrafeedback": convert_ultrafeedback,
    "pairs": convert_pairs,
    "binary": convert_binary,
    "helpsteer": convert_helpsteer,
    "scores": convert_scores,
}
"""Format name -> converter."""


# ---------------------------------------------------------------------------------------------- detection


def fitting_formats(columns: Iterable[str]) -> list[str]:
    """The formats whose required columns are all among ``columns``, in detection order."""
    found = set(columns)
    return [name for name, needs in REQUIRED_COLUMNS.items() if all(found & set(alts) for alts in needs)]


def _needs() -> str:
    return "; ".join(
        f"{name}: {', '.join('|'.join(alts) for alts in needs)}" for name, needs in REQUIRED_COLUMNS.items()
    )


def detect_format(columns: Iterable[str]) -> str:
    """The format the columns fit (the first in ``REQUIRED_COLUMNS`` order), else a ValueError."""
    columns = list(columns)
    fits = fitting_formats(columns)
    if not fits:
        closest = _closest_format(columns)
        hint = ""
        if closest is not None:
            missing = ["|".join(alts) for alts in REQUIRED_COLUMNS[closest] if not set(columns) & set(alts)]
            hint = f"; the closest, {closest}, misses the column(s) {', '.join(missing)}"
        raise ValueError(f"no format fits the columns {columns}{hint}; the formats need: {_needs()}")
    return fits[0]


def _closest_format(columns: list[str]) -> str | None:
    """The format with the most of its distinctive columns (all but the shared prompt) present, if any."""
    found = set(columns)
    best, best_hits = None, 0
    for name, needs in REQUIRED_COLUMNS.items():
        hits = sum(1 for alts in needs if "prompt" not in alts and found & set(alts))
        if hits > best_hits:
            best, best_hits = name, hits
    return best


def check_columns(format: str, columns: Iterable[str]) -> None:
    """Raise a ValueError naming the missing columns, the columns found and the formats that fit."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known formats: {', '.join(FORMATS)}")
    columns = list(columns)
    missing = ["|".join(alts) for alts in REQUIRED_COLUMNS[format] if not set(columns) & set(alts)]
    if missing:
        fits = ", ".join(fitting_formats(columns)) or f"none (the formats need: {_needs()})"
        raise ValueError(
            f"format {format!r} needs the column(s) {', '.join(missing)}; "
            f"found columns: {', '.join(columns)}; formats that fit: {fits}"
        )
