"""The one reward abstraction: a :class:`RewardSource` maps (prompt, response) pairs to scalar rewards.

    source.score(prompts, responses) -> np.ndarray [N]   (or [N, M] for an ensemble: one column per member)

Every reward of the package is one: a reward model or ensemble (:mod:`.model_sources`), a rule, a gym task's
gold reward, an imported column (:mod:`.sources`), a teacher ratio; annotation, online training and evaluation
all score through this interface. Every source has a ``name`` (what summaries and reports print), a
``fingerprint()`` (what caches are keyed on: it changes whenever the source would score differently),
``columns`` (None, or the M member names) and ``value_range`` (where the rewards lie, when known).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..data.schema import Group, Text
from ..fingerprint import hash_json

Progress = Callable[[int], None]


class BadReward(ValueError):
    """A source could not produce a reward for item ``index`` of the flat (prompt, response) list.
    Annotation turns it into a :class:`DataError` naming the group and the response."""

    def __init__(self, index: int, message: str):
        self.index = index
        self.reason = message
        super().__init__(f"item {index}: {message}")


class RewardSource(ABC):
    """Maps (prompt, response) pairs to rewards. Subclasses set ``kind`` and implement ``score`` and
    ``_identity`` (what, besides the class, makes two sources score alike)."""

    kind: str = "source"
    columns: list[str] | None = None
    """Names of the M member columns of an ensemble; None for a single reward."""
    value_range: tuple[float, float] | None = None
    """The declared range of the rewards, where the source knows one (imported scores): minmax's default."""

    label: str | None = None
    """The name given by the spec string the source was built from (``rm:runs/rm``); None for the default."""

    @property
    def name(self) -> str:
        return self.label or self.default_name()

    def default_name(self) -> str:
        return self.kind

    @abstractmethod
    def _identity(self) -> dict[str, Any]:
        ...

    def fingerprint(self) -> str:
        """Hex digest that changes whenever this source would score differently."""
        return hash_json({"kind": self.kind, **self._identity()})

    @abstractmethod
    def score(self, prompts: Sequence[Text], responses: Sequence[Text], progress: Progress | None = None) -> np.ndarray:
        """Rewards of ``responses[i]`` given ``prompts[i]``: float64 [N] (or [N, M])."""

    def load(self) -> Any:
        """Load what scoring needs (models), so that the scoring time excludes it; optional."""
        return None

    def prepare(self, groups: Sequence[Group]) -> None:
        """Called by annotation with the data's groups before scoring (imported scores read their column)."""
        return None

    @property
    def work_units(self) -> int:
        """Passes over the data one ``score`` call makes (M for an ensemble): the progress bar's multiplier."""
        return 1

    def close(self) -> None:
        """Free loaded models."""
        return None


def _check_lengths(prompts: Sequence[Text], responses: Sequence[Text]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")


def check_lengths(prompts: Sequence[Text], responses: Sequence[Text]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")


def score_finite(source: RewardSource, prompts: Sequence[Text], responses: Sequence[Text],
                 progress: Progress | None = None) -> np.ndarray:
    """``source.score`` as float64, with a non-finite reward an error naming the prompt and the response."""
    check_lengths(prompts, responses)
    values = np.asarray(source.score(list(prompts), list(responses), progress), dtype=np.float64)
    bad = ~np.isfinite(values.reshape(len(prompts), -1)).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BadReward(i, f"reward {source.name} gave {values[i]} for prompt {prompts[i]!r}, "
                           f"response {responses[i]!r}")
    return values


def mean_reward(values: np.ndarray) -> np.ndarray:
    """One reward per item: an ensemble's [N, M] member rewards averaged, a single reward [N] as it is."""
    return values.mean(axis=1) if values.ndim == 2 else values
