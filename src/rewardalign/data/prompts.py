"""Prompts for sampling (evaluation, online training): the distinct prompts of any data file.

A data file of any format :func:`~rewardalign.data.loaders.load_groups` reads gives its groups' prompts, each
distinct prompt once, in file order; a file whose rows have just a ``prompt`` (a string or a chat message list)
gives those.
"""

from __future__ import annotations

from typing import Any

from ..config import ConfigError
from .formats import fitting_formats
from .loaders import load_groups, read_rows
from .schema import DataError, Text, text_is_empty, text_key


def load_prompts(source: str, format: str | None = None, split: str | None = None,
                 max_prompts: int | None = None, **load_options: Any) -> list[Text]:
    """The distinct prompts of a data source, in order (see the module docstring), the first ``max_prompts``;
    ``load_options`` go to :func:`~rewardalign.data.loaders.load_groups` (``score_range``, ...)."""
    rows, columns = read_rows(source, split=split)
    if format is None and not fitting_formats(columns):
        if "prompt" not in columns:
            raise ConfigError(f"prompts file {source}: no data format fits its columns {columns} and it has no "
                              "'prompt' column")
        prompts = []
        for i, row in enumerate(rows):
            prompt = row.get("prompt")
            if not isinstance(prompt, (str, list)) or text_is_empty(prompt):
                raise DataError(i, "prompt", f"must be a non-empty string or message list, got {prompt!r}")
            prompts.append(prompt)
    else:
        groups, _ = load_groups(rows, format, **load_options)
        prompts = [g.prompt for g in groups]
    seen: set[str] = set()
    unique = []
    for prompt in prompts:
        if text_key(prompt) not in seen:
            seen.add(text_key(prompt))
            unique.append(prompt)
    return unique[:max_prompts] if max_prompts is not None else unique
