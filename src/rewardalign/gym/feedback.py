"""Feedback from the gold reward: rewards, scores, binary labels and Bradley-Terry preferences.

From K sampled responses per prompt, :func:`build_groups` makes one :class:`Group` per prompt carrying
every kind of feedback derived from the same gold reward ``r`` (so every objective trains on the same
samples):

- ``rewards``: ``r + eps``, ``eps ~ N(0, reward_noise^2)`` (``reward_noise = 0``: the gold reward itself);
- ``scores``: ``(r - lo) / (hi - lo)`` clipped to [0, 1], with ``(lo, hi)`` the task's reward range;
- ``labels``: 1 if ``r >= threshold`` (a number, or ``"midpoint"``: ``(lo + hi) / 2``) or, with
  ``label_threshold="mean"``, 1 if ``r`` is strictly above the mean gold reward of its group (a group
  whose rewards are all equal gets all 0); then each label is flipped with ``label_flip_prob``;
- ``meta["gold_rewards"]``: the noiseless gold rewards, for evaluation.

:func:`build_pairs` turns K-groups into K = 2 preference groups ``Group(prompt, [chosen, rejected])``: for
each pair the annotator prefers ``a`` with the Bradley-Terry probability
``P(a > b) = sigmoid((r_a - r_b) / temperature)`` of the gold rewards (``temperature -> 0``: always the
better one), and the choice is then flipped with ``flip_prob`` (careless annotators). The pair keeps the
two responses' rewards, scores and labels in the chosen-first order.

Everything is drawn from ``random.Random`` streams seeded by ``FeedbackConfig.seed``: same seed, same data.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..data.schema import DropReport, Group, text_is_empty
from .tasks import Task

__all__ = [
    "FeedbackConfig",
    "bt_preference",
    "bt_probability",
    "build_groups",
    "build_pairs",
    "reward_labels",
    "reward_to_score",
]


@dataclass
class FeedbackConfig:
    """How gold rewards become feedback.

    temperature: Bradley-Terry temperature in reward units (rewards lie in [0, 1]); 0 is a perfect annotator.
    flip_prob: probability that a pairwise preference is flipped after the BT draw.
    reward_noise: standard deviation of Gaussian noise added to the ``rewards`` field (not to scores,
        labels or preferences, which read the gold reward).
    label_threshold: ``"midpoint"`` of the task's reward range, ``"mean"`` of the group, or a number.
    label_flip_prob: probability that a binary label is flipped.
    pairing: ``"all"`` makes every pair of a group's responses; ``"random"`` one random pair per group.
    min_gap: pairs whose gold rewards differ by ``<= min_gap`` are skipped (default 0.0: exact ties);
        ``None`` keeps every pair (ties are then a fair coin).
    seed: seeds every random draw.
    """

    temperature: float = 0.1
    flip_prob: float = 0.0
    reward_noise: float = 0.0
    label_threshold: float | Literal["midpoint", "mean"] = "midpoint"
    label_flip_prob: float = 0.0
    pairing: Literal["all", "random"] = "all"
    min_gap: float | None = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        for name in ("flip_prob", "label_flip_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.reward_noise < 0:
            raise ValueError(f"reward_noise must be >= 0, got {self.reward_noise}")
        if isinstance(self.label_threshold, str) and self.label_threshold not in ("midpoint", "mean"):
            raise ValueError(
                f"label_threshold must be 'midpoint', 'mean' or a number, got {self.label_threshold!r}"
            )
        if self.pairing not in ("all", "random"):
            raise ValueError(f"pairing must be 'all' or 'random', got {self.pairing!r}")


def bt_probability(r_a: float, r_b: float, temperature: float) -> float:
    """``P(a > b) = sigmoid((r_a - r_b) / temperature)``; at temperature 0 a step (0.5 on a tie)."""
    diff = r_a - r_b
    if temperature <= 0:
        return 1.0 if diff > 0 else 0.0 if diff < 0 else 0.5
    z = diff / temperature
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def bt_preference(
    r_a: float, r_b: float, temperature: float, flip_prob: float = 0.0, rng: random.Random | None = None
) -> bool:
    """True when the annotator prefers ``a``: a Bradley-Terry draw, then flipped with ``flip_prob``.

    Always consumes two draws of ``rng`` so a change of temperature or flip rate does not shift the
    stream of later draws.
    """
    rng = rng if rng is not None else random.Random()
    a_wins = rng.random() < bt_probability(r_a, r_b, temperature)
    flip = rng.random() < flip_prob
    return a_wins != flip


def reward_to_score(reward: float, reward_range: tuple[float, float]) -> float:
    """``(reward - lo) / (hi - lo)`` clipped to [0, 1]."""
    lo, hi = reward_range
    if not hi > lo:
        raise ValueError(f"reward_range must have hi > lo, got {reward_range}")
    return min(1.0, max(0.0, (reward - lo) / (hi - lo)))


def reward_labels(
    rewards: Sequence[float],
    threshold: float | Literal["midpoint", "mean"],
    reward_range: tuple[float, float] = (0.0, 1.0),
) -> list[int]:
    """Binary labels of a group's gold rewards: ``r >= threshold`` (a number or ``"midpoint"`` of
    ``reward_range``), or ``r > mean(rewards)`` for ``"mean"``."""
    if threshold == "mean":
        mean = sum(rewards) / len(rewards)
        return [int(r > mean) for r in rewards]
    if threshold == "midpoint":
        threshold = (reward_range[0] + reward_range[1]) / 2
    return [int(r >= threshold) for r in rewards]


def build_groups(
    task: Task,
    prompts: Sequence[str],
    responses: Sequence[Sequence[str]],
    config: FeedbackConfig | None = None,
    drops: DropReport | None = None,
) -> list[Group]:
    """One group per prompt with the gold-derived rewards, scores and labels of its responses.

    ``responses[i]`` are the K samples for ``prompts[i]``. Empty and duplicate responses are removed from
    their group (a group keeps the first copy) and a prompt left with none is dropped; every removal is
    recorded in ``drops`` (row = prompt index). ``meta`` holds ``task``, ``index`` and ``gold_rewards``.
    """
    config = config or FeedbackConfig()
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} response lists")
    rng = random.Random(f"groups:{config.seed}")
    groups = []
    for i, (prompt, samples) in enumerate(zip(prompts, responses)):
        kept: list[str] = []
        for k, response in enumerate(samples):
            if text_is_empty(response):
                _add(drops, i, f"empty response: responses[{k}]")
            elif response in kept:
                _add(drops, i, f"duplicate response: responses[{k}]")
            else:
                kept.append(response)
        if not kept:
            _add(drops, i, "no responses: every sample was empty or a duplicate")
            continue
        gold = [task.gold_reward(prompt, r) for r in kept]
        rewards = [r + rng.gauss(0.0, config.reward_noise) if config.reward_noise > 0 else r for r in gold]
        labels = reward_labels(gold, config.label_threshold, task.reward_range)
        if config.label_flip_prob > 0:
            labels = [1 - b if rng.random() < config.label_flip_prob else b for b in labels]
        groups.append(
            Group(
                prompt=prompt,
                responses=kept,
                rewards=rewards,
                scores=[reward_to_score(r, task.reward_range) for r in gold],
                labels=labels,
                meta={"task": task.name, "index": i, "gold_rewards": gold},
            )
        )
    return groups


def build_pairs(
    groups: Sequence[Group], config: FeedbackConfig | None = None, drops: DropReport | None = None
) -> list[Group]:
    """K = 2 preference groups ``[chosen, rejected]`` from K-groups, labelled by Bradley-Terry draws.

    The BT draw reads ``meta["gold_rewards"]`` (from :func:`build_groups`), else the ``rewards`` field.
    ``config.pairing`` picks the pairs; pairs within ``min_gap`` are skipped and counted in ``drops``
    (row = source group position). ``meta``: ``source`` (group position), ``pair`` (the two responses'
    indices in the source group, chosen first), ``gold_rewards`` (chosen first), ``agrees_with_gold``
    (False when the chosen response has the lower gold reward), plus the source group's other meta.
    """
    config = config or FeedbackConfig()
    rng = random.Random(f"pairs:{config.seed}")
    pairs = []
    for g, group in enumerate(groups):
        gold = group.meta.get("gold_rewards", group.rewards)
        if gold is None:
            raise ValueError(
                f"group {g} has neither meta['gold_rewards'] nor rewards to draw preferences from"
            )
        k = len(group.responses)
        candidates = [(a, b) for a in range(k) for b in range(a + 1, k)]
        if config.pairing == "random" and candidates:
            candidates = [rng.choice(candidates)]
        if not candidates:
            _add(drops, g, "no pair: the group has a single response")
        for a, b in candidates:
            if config.min_gap is not None and abs(gold[a] - gold[b]) <= config.min_gap:
                _add(drops, g, f"tie: responses {a} and {b} differ by <= min_gap={config.min_gap}")
                continue
            if not bt_preference(gold[a], gold[b], config.temperature, config.flip_prob, rng):
                a, b = b, a
            meta = {k_: v for k_, v in group.meta.items() if k_ != "gold_rewards"}
            meta.update(
                source=g, pair=[a, b], gold_rewards=[gold[a], gold[b]], agrees_with_gold=gold[a] >= gold[b]
            )
            pairs.append(
                Group(
                    prompt=group.prompt,
                    responses=[group.responses[a], group.responses[b]],
                    rewards=_pick(group.rewards, a, b),
                    scores=_pick(group.scores, a, b),
                    labels=_pick(group.labels, a, b),
                    meta=meta,
                )
            )
    return pairs


def _pick(values: list | None, a: int, b: int) -> list | None:
    return None if values is None else [values[a], values[b]]


def _add(drops: DropReport | None, row: int, reason: str) -> None:
    if drops is not None:
        drops.add(row, reason)
