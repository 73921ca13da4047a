"""Preference pairs for reward-model training, from groups.

A group gives every ordered pair (w, l) with a higher explicit value for w: its rewards, else its scores,
else its binary labels. A K = 2 group with none of them is (chosen = response 0, rejected = response 1), the
pairs convention of :mod:`rewardalign.data`. Ties give no pair. A pair becomes a K = 2
:class:`~rewardalign.data.tokenize.TokenizedGroup` (responses [w, l]), so the group collator batches it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from ..data.schema import DataError, Group, text_key
from ..data.tokenize import TokenizedGroup


def order_values(group: Group | TokenizedGroup) -> list[float] | None:
    """The values that order a group's responses: rewards, else scores, else labels (None if none)."""
    for name in ("rewards", "scores", "labels"):
        values = getattr(group, name)
        if values is not None:
            return [float(v) for v in values]
    return None


def group_pairs(group: Group | TokenizedGroup, row: int) -> list[tuple[int, int]]:
    """Ordered (w, l) response-index pairs of one group (w strictly better than l)."""
    values = order_values(group)
    if values is None:
        if group.k == 2:
            return [(0, 1)]
        if group.k == 1:
            return []
        raise DataError(row, "rewards", f"a group of K={group.k} responses without rewards, scores or labels "
                                        f"has no preference order")
    k = len(values)
    return [(i, j) for i in range(k) for j in range(k) if values[i] > values[j]]


@dataclass
class PairStats:
    """How groups became pairs: counted for the run summary (nothing is dropped silently)."""

    groups: int = 0
    pairs: int = 0
    groups_without_pairs: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"groups": self.groups, "pairs": self.pairs, "groups_without_pairs": dict(self.groups_without_pairs)}


def build_pairs(groups: list[TokenizedGroup]) -> tuple[list[TokenizedGroup], PairStats]:
    """Every preference pair of every tokenised group as a K = 2 group [w, l] (``extra['pair'] = (w, l)``)."""
    stats = PairStats()
    reasons: Counter[str] = Counter()
    out = []
    for g in groups:
        stats.groups += 1
        pairs = group_pairs(g, g.index)
        if not pairs:
            reasons["K=1" if g.k == 1 else "all responses tied"] += 1
        for win, lose in pairs:
            out.append(TokenizedGroup(prompt_ids=g.prompt_ids,
                                      response_ids=[g.response_ids[win], g.response_ids[lose]],
                                      index=g.index, extra={"pair": (win, lose)}))
    stats.pairs = len(out)
    stats.groups_without_pairs = dict(reasons)
    return out, stats


def split_by_prompt(groups: list[Group], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, eval) with about ``fraction`` of the distinct prompts held out.

    Groups that share a prompt land on the same side, so held-out accuracy is measured on unseen prompts.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"eval_fraction must lie in [0, 1), got {fraction}")
    prompts = sorted({text_key(g.prompt) for g in groups})
    random.Random(seed).shuffle(prompts)
    n_eval = round(fraction * len(prompts))
    if fraction > 0 and n_eval == 0 and len(prompts) > 1:
        n_eval = 1
    held = set(prompts[:n_eval])
    train = [i for i, g in enumerate(groups) if text_key(g.prompt) not in held]
    evaluation = [i for i, g in enumerate(groups) if text_key(g.prompt) in held]
    return train, evaluation


def bootstrap(items: list, seed: int) -> list:
    """A bootstrap resample of ``items`` (same size, drawn with replacement, seeded)."""
    rng = random.Random(seed)
    return [items[rng.randrange(len(items))] for _ in range(len(items))]
