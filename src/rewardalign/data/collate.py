"""Collation of tokenised groups into one batch: sequences flat [N, T], feedback laid out [B, K] with a mask.

Each of the N valid (group, response) pairs becomes one right-padded sequence ``prompt_ids + response_ids``;
``seq_group``/``seq_slot`` say where its log-prob goes in the [B, K] layout the objectives read. Groups of
different K share a batch: missing slots are masked out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from .schema import DataError
from .tokenize import TokenizedGroup

FEEDBACK_FIELDS = ("rewards", "scores", "labels")
# "labels" means token targets to transformers.Trainer; the binary feedback travels under another key.
BATCH_KEYS = {"labels": "binary_labels"}
EXTRA_GROUP_FIELDS = ("ref_logps",)  # [K] per group -> [B, K]
EXTRA_SCALAR_FIELDS = ("prompt_ref_logps",)  # scalar per group -> [B]


class GroupDataset(Dataset):
    """A list of :class:`TokenizedGroup` as a torch dataset (items are the groups themselves)."""

    def __init__(self, groups: Sequence[TokenizedGroup]):
        self.groups = list(groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> TokenizedGroup:
        return self.groups[i]

    @property
    def lengths(self) -> list[int]:
        return [g.length for g in self.groups]


def _feedback(groups: Sequence[TokenizedGroup], name: str, k_max: int) -> torch.Tensor | None:
    """[B, K] float tensor of a feedback field (NaN in padded slots), None if no group has it."""
    present = [getattr(g, name) is not None for g in groups]
    if not any(present):
        return None
    if not all(present):
        missing = groups[present.index(False)]
        raise DataError(missing.index, name, f"is missing while other groups of the data set have {name}")
    out = torch.full((len(groups), k_max), math.nan)
    for b, g in enumerate(groups):
        out[b, : g.k] = torch.tensor(getattr(g, name), dtype=torch.float32)
    return out


def collate_groups(groups: Sequence[TokenizedGroup], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Build the batch dict.

    input_ids, attention_mask [N, T]; response_mask [N, T] (True where the token is a response token, i.e. a
    prediction target); prompt_lengths [N]; seq_group, seq_slot [N]; first_seq [B] (each group's first
    sequence, whose prompt part gives the prompt log-probs); mask [B, K]; group_ids [B] (the groups' data set
    indices, which seed best_vs_random pairing); rewards / scores / labels [B, K]
    (``binary_labels``) and reward_members [M, B, K] where the groups have them; precomputed ref_logps [B, K] and
    prompt_ref_logps [B] where every group carries them.
    """
    if not groups:
        raise ValueError("cannot collate an empty batch")
    k_max = max(g.k for g in groups)
    seqs, seq_group, seq_slot, prompt_lengths, first_seq = [], [], [], [], []
    for b, g in enumerate(groups):
        first_seq.append(len(seqs))
        for k, response in enumerate(g.response_ids):
            seqs.append(g.prompt_ids + response)
            seq_group.append(b)
            seq_slot.append(k)
            prompt_lengths.append(len(g.prompt_ids))
    t_max = max(len(s) for s in seqs)
    n = len(seqs)
    input_ids = torch.full((n, t_max), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((n, t_max), dtype=torch.long)
    response_mask = torch.zeros((n, t_max), dtype=torch.bool)
    for i, (s, p) in enumerate(zip(seqs, prompt_lengths)):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention_mask[i, : len(s)] = 1
        response_mask[i, p: len(s)] = True
    mask = torch.zeros((len(groups), k_max), dtype=torch.bool)
    for b, g in enumerate(groups):
        mask[b, : g.k] = True

    batch: dict[str, torch.Tensor] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "response_mask": response_mask,
        "prompt_lengths": torch.tensor(prompt_lengths),
        "seq_group": torch.tensor(seq_group),
        "seq_slot": torch.tensor(seq_slot),
        "first_seq": torch.tensor(first_seq),
        "mask": mask,
        "group_ids": torch.tensor([g.index for g in groups]),
    }
    for name in FEEDBACK_FIELDS:
        value = _feedback(groups, name, k_max)
        if value is not None:
            batch[BATCH_KEYS.get(name, name)] = value
    members = [g.reward_members for g in groups]
    if any(m is not None for m in members):
        if any(m is None for m in members) or len({len(m) for m in members}) != 1:
            bad = next(g for g in groups if g.reward_members is None or len(g.reward_members) != len(members[0]))
            raise DataError(bad.index, "reward_members", "every group needs the same number of ensemble members")
        out = torch.full((len(members[0]), len(groups), k_max), math.nan)
        for b, m in enumerate(members):
            out[:, b, : len(m[0])] = torch.tensor(m, dtype=torch.float32)
        batch["reward_members"] = out
    for name in EXTRA_GROUP_FIELDS:
        if groups and all(name in g.extra for g in groups):
            out = torch.full((len(groups), k_max), math.nan)
            for b, g in enumerate(groups):
                out[b, : g.k] = torch.as_tensor(g.extra[name], dtype=torch.float32)
            batch[name] = out
    for name in EXTRA_SCALAR_FIELDS:
        if groups and all(name in g.extra for g in groups):
            batch[name] = torch.tensor([float(g.extra[name]) for g in groups])
    return batch


class GroupCollator:
    """Callable collator for ``DataLoader`` / ``transformers.Trainer``."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, groups: Sequence[TokenizedGroup]) -> dict[str, torch.Tensor]:
        return collate_groups(groups, self.pad_token_id)


class LengthGroupedSampler(Sampler[int]):
    """Random order, but groups of similar length batched together to cut padding.

    The indices are shuffled (seeded by ``seed`` and the epoch), cut into mega-batches of
    ``batch_size * mega_batch_mult``, and each mega-batch is sorted by length, longest first.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, mega_batch_mult: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.mega = max(1, batch_size * mega_batch_mult)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        for start in range(0, len(order), self.mega):
            chunk = order[start: start + self.mega]
            yield from sorted(chunk, key=lambda i: -self.lengths[i])
