"""From a group of K ranked responses to (preferred, dispreferred) index pairs.

Ranking. A group is ranked by its explicit feedback: rewards (the mean over the models of an ensemble),
else scores, else binary labels ("labels as rewards"). Without any, or with ``order_by="position"``, the
responses are taken to be listed best first: a K = 2 group is the plain pair (w = index 0, l = index 1),
and with ``order_by="position"`` a longer group is a ranked list. ``order_by="position"`` also keeps a
dataset's own chosen/rejected order when rewards are present too (e.g. DRDO's preference term on human
labels while its distillation term reads the Oracle's rewards). A group of more than two responses with
no feedback and ``order_by="auto"`` is an error: its order is unknown.

Constructions (the ``pairs`` hyperparameter of the pairwise objectives). A preference pair needs a strict
order, key_w > key_l; ties carry no preference and are never paired, so a group whose responses all tie
has no pair and drops out of the batch mean.

- ``best_vs_random``: the best response (the first one on a tie for best) against one response drawn
  uniformly among those ranked strictly below it (Zephyr's binarisation of UltraFeedback).
- ``best_vs_rest``: the best response against each response ranked below it (DPO-1vsO in paper 004).
- ``all_pairs``: every pair with key_i > key_j (DPO-pw in paper 004).

Randomness of ``best_vs_random``. The draw is a hash of (``seed``, the group's id, the response's rank
among the group's valid entries), not a stateful generator: the group id is ``inputs.group_ids`` when the
trainer supplies it (a dataset row index), so each prompt keeps the same rejected response for the whole
run, whatever the batch order, the resume point, the number of processes or the device, like an offline
binarisation with a seed. Without ``group_ids`` the id is the group's position in the batch, which is
deterministic but ties the draw to the data order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rewardalign.objectives.inputs import ObjectiveInputs

PAIRINGS = ("best_vs_random", "best_vs_rest", "all_pairs")
ORDERINGS = ("auto", "position")

_MASK32 = 0xFFFFFFFF


@dataclass
class Pairs:
    """P index pairs per group: preferred ``w`` [B, P], dispreferred ``l`` [B, P], validity ``mask`` [B, P]."""

    w: torch.Tensor
    l: torch.Tensor  # noqa: E741 (the papers' name for the dispreferred response)
    mask: torch.Tensor

    def take(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values of w, values of l), each [B, P], from per-response ``values`` [B, K]."""
        return values.gather(1, self.w), values.gather(1, self.l)

    def diff(self, values: torch.Tensor) -> torch.Tensor:
        """values_w - values_l, [B, P]."""
        value_w, value_l = self.take(values)
        return value_w - value_l


def explicit_feedback(x: ObjectiveInputs) -> tuple[str, torch.Tensor] | None:
    """The first explicit signal present, as (field name, [B, K] values): rewards, scores, then labels."""
    if x.rewards is not None:
        return "rewards", x.rewards.mean(dim=0) if x.rewards.dim() == 3 else x.rewards
    if x.scores is not None:
        return "scores", x.scores
    if x.labels is not None:
        return "labels", x.labels
    return None


def position_key(mask: torch.Tensor) -> torch.Tensor:
    """A key ranking each group's responses in the order they are listed (first is best), [B, K]."""
    return -torch.arange(mask.shape[1], device=mask.device, dtype=torch.float32).expand(mask.shape)


def order_key(x: ObjectiveInputs, order_by: str = "auto") -> torch.Tensor:
    """[B, K] values whose order within a group is the preference order (higher is better).

    ``auto``: the explicit feedback if any, else the listed order; ``position``: the listed order.
    """
    feedback = explicit_feedback(x) if order_by == "auto" else None
    return position_key(x.mask) if feedback is None else feedback[1]


def ranking_key(x: ObjectiveInputs, order_by: str = "auto") -> torch.Tensor:
    """:func:`order_key`, refusing to guess the order of groups of K > 2 without feedback under ``auto``.

    The test reads shapes only (the batch's padded width K, which the collator sets to its largest group),
    so it never synchronises with the device.
    """
    width = x.mask.shape[1]
    if order_by == "auto" and width > 2 and explicit_feedback(x) is None:
        raise ValueError(
            f"the groups have up to {width} responses but no rewards, scores or labels to rank them; "
            "pass order_by='position' if the responses are listed best first"
        )
    return order_key(x, order_by)


def best_index(key: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, 1] index of each group's best valid response (the first one on a tie)."""
    return torch.where(mask, key, -torch.inf).argmax(dim=1, keepdim=True)


def worst_index(key: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, 1] index of each group's worst valid response (the first one on a tie)."""
    return torch.where(mask, key, torch.inf).argmin(dim=1, keepdim=True)


def unordered_pairs(key: torch.Tensor, mask: torch.Tensor) -> Pairs:
    """Every pair {i, j} of valid responses, ties included, oriented so that key_w >= key_l.

    On a tie the response listed first is ``w``. Used as is by the distillation objectives (their losses
    are symmetric in the pair) and, without the ties, by ``all_pairs``.
    """
    batch, k = key.shape
    first, second = torch.triu_indices(k, k, offset=1, device=key.device)
    first, second = first.expand(batch, -1), second.expand(batch, -1)
    first_wins = key.gather(1, first) >= key.gather(1, second)
    w = torch.where(first_wins, first, second)
    l = torch.where(first_wins, second, first)  # noqa: E741
    return Pairs(w, l, mask.gather(1, first) & mask.gather(1, second))


def preference_pairs(
    key: torch.Tensor,
    mask: torch.Tensor,
    pairs: str,
    seed: int = 0,
    group_ids: torch.Tensor | None = None,
) -> Pairs:
    """Strictly ordered (w, l) pairs of each group by the construction ``pairs`` (see the module doc)."""
    if pairs == "all_pairs":
        candidate = unordered_pairs(key, mask)
        key_w, key_l = candidate.take(key)
        return Pairs(candidate.w, candidate.l, candidate.mask & (key_w > key_l))
    batch, k = key.shape
    best = best_index(key, mask)
    below_best = mask & (key < key.gather(1, best))
    if pairs == "best_vs_rest":
        others = torch.arange(k, device=key.device).expand(batch, k)
        return Pairs(best.expand(batch, k), others, below_best)
    if pairs == "best_vs_random":
        draw = random_draws(seed, mask, group_ids)
        rejected = torch.where(below_best, draw, -1).argmax(dim=1, keepdim=True)
        return Pairs(best, rejected, below_best.any(dim=1, keepdim=True))
    raise ValueError(f"unknown pair construction {pairs!r}; expected one of {', '.join(PAIRINGS)}")


def _mix32(x: torch.Tensor | int) -> torch.Tensor | int:
    """A 32-bit integer hash (xor-shift-multiply rounds) on int64 tensors (or Python ints) in [0, 2^32).

    The multiplier is below 2^27, so no product leaves the int64 range: the result is the same on every
    device.
    """
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


def _fold32(x: torch.Tensor | int) -> torch.Tensor | int:
    return (x ^ (x >> 32)) & _MASK32


def random_draws(seed: int, mask: torch.Tensor, group_ids: torch.Tensor | None = None) -> torch.Tensor:
    """[B, K] int64 pseudo-random keys from (seed, group id, rank of the response among the valid ones).

    Taking the argmax of these keys over a set of candidates picks one uniformly at random. Using the rank
    among valid entries (not the column) makes the draw independent of where padding sits.
    """
    batch, _ = mask.shape
    device = mask.device
    ids = torch.arange(batch, device=device) if group_ids is None else group_ids.to(device, torch.int64)
    seed_hash = _mix32(_fold32(seed))  # Python integers: no host-to-device copy
    group_hash = _mix32(_fold32(ids) ^ seed_hash)
    rank = mask.long().cumsum(dim=1)
    return _mix32(group_hash[:, None] ^ _mix32(rank))
