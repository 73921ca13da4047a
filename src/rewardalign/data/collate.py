"""Collation of tokenised groups into one batch: token rows for the model, feedback laid out [B, K] with a mask.

Every layout scores the same N (group, response) sequences ``prompt_ids + response_ids``; ``seq_group`` /
``seq_slot`` say where each sequence's log-prob goes in the [B, K] layout the objectives read. Groups of
different K share a batch: missing slots are masked out. The layouts (``layout=``):

``plain``
    One right-padded row per sequence [N, T] with a 2D padding mask: the prompt is repeated K times.
``shared_prompt``
    One row per group ``[prompt, resp_1, ..., resp_K]``: the prompt is encoded once. Response k attends to the
    prompt and causally to itself only, and its position ids restart after the prompt (P, P + 1, ...), so each
    response sees exactly what it sees in the plain layout.
``packed``
    Padding-free: the N sequences (prompt repeated, as in ``plain``) packed first-fit into rows of
    ``pack_length`` tokens (default: the longest sequence of the batch, so no row is longer than in ``plain``),
    each sequence attending causally to itself only, position ids restarting per sequence.
``packed_shared_prompt``
    Both: the groups' ``[prompt, resp_1, ..., resp_K]`` segments packed into rows.

The non-plain layouts describe attention by two [R, C] tensors, ``segment_ids`` (which sequence or group a token
belongs to, -1 for padding) and ``branch_ids`` (0 for a prompt token, k + 1 for a token of response k in a
shared-prompt segment): a token attends to an earlier or equal token of its segment whose branch is 0 or its
own. :func:`block_attention_mask` turns them into the 4D mask ``transformers`` models take as-is; with
flash-attention (``packed`` only) the whole batch is one row and ``position_ids`` alone mark the sequences.
Their targets are listed by index: ``target_row`` / ``target_src`` (the hidden state that predicts the token),
``target_ids`` and ``target_seq`` (the sequence it counts for), and the same with ``prompt_target_group`` for
the prompt tokens after the first (DRO's prompt log-probs, read off each group's first sequence).
"""

from __future__ import annotations

import math
import sys
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
    """Tokenised groups as a torch dataset (items are :class:`TokenizedGroup`).

    Holds a list of groups, or reads lazily, one group per item, from an Arrow-backed
    :class:`rewardalign.data.pipeline.TokenizedDataset` (``groups`` is then that data set itself: iterating it
    reads the groups in chunks, never all at once).
    """

    def __init__(self, groups: Sequence[TokenizedGroup]):
        self.groups = groups if getattr(groups, "lazy", False) else list(groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> TokenizedGroup:
        return self.groups[i]

    @property
    def lengths(self) -> list[int]:
        lengths = getattr(self.groups, "lengths", None)
        return list(lengths) if lengths is not None else [g.length for g in self.groups]

    def row_lengths(self, layout: str = "plain") -> list[int]:
        """:func:`row_length` of every group (from the length columns of an Arrow-backed data set)."""
        if hasattr(self.groups, "row_lengths"):
            return self.groups.row_lengths(layout)
        return [row_length(g, layout) for g in self.groups]


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


LAYOUTS = ("plain", "shared_prompt", "packed", "packed_shared_prompt")
FLASH_ATTENTION = ("flash_attention_2", "flash_attention_3")


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    return layout


def collate_groups(
    groups: Sequence[TokenizedGroup], pad_token_id: int, layout: str = "plain", pack_length: int | None = None
) -> dict[str, torch.Tensor]:
    """Build the batch dict in ``layout`` (see the module docstring).

    Every layout: seq_group, seq_slot [N]; mask [B, K]; group_ids [B] (the groups' data set indices, which seed
    best_vs_random pairing); rewards / scores / labels [B, K] (``binary_labels``) and reward_members [M, B, K]
    where the groups have them; precomputed ref_logps [B, K] and prompt_ref_logps [B] where every group carries
    them.

    ``plain`` adds input_ids, attention_mask [N, T]; response_mask [N, T] (True where the token is a response
    token, i.e. a prediction target); prompt_lengths [N]; first_seq [B] (each group's first sequence, whose
    prompt part gives the prompt log-probs). The other layouts add input_ids, position_ids, segment_ids,
    branch_ids [R, C] and the target index vectors. ``pack_length`` is the row length of the packed layouts
    (at least the longest segment of the batch, which is the default).
    """
    if not groups:
        raise ValueError("cannot collate an empty batch")
    check_layout(layout)
    k_max = max(g.k for g in groups)
    if layout == "plain":
        batch = _plain_rows(groups, pad_token_id)
    else:
        batch = _segment_rows(groups, pad_token_id, shared=layout.endswith("shared_prompt"),
                              packed=layout.startswith("packed"), pack_length=pack_length)
    mask = torch.zeros((len(groups), k_max), dtype=torch.bool)
    for b, g in enumerate(groups):
        mask[b, : g.k] = True
    batch["mask"] = mask
    batch["group_ids"] = torch.tensor([g.index for g in groups])
    _add_feedback(batch, groups, k_max)
    return batch


def _plain_rows(groups: Sequence[TokenizedGroup], pad_token_id: int) -> dict[str, torch.Tensor]:
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
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "response_mask": response_mask,
        "prompt_lengths": torch.tensor(prompt_lengths),
        "seq_group": torch.tensor(seq_group),
        "seq_slot": torch.tensor(seq_slot),
        "first_seq": torch.tensor(first_seq),
    }


def _segments(groups: Sequence[TokenizedGroup], shared: bool) -> list[list[tuple[int, int, list[int]]]]:
    """The batch's segments as lists of pieces (group, slot, ids): slot -1 is a prompt piece. A shared-prompt
    segment is one group (its prompt, then each response); otherwise one sequence (prompt, one response)."""
    segments = []
    for b, g in enumerate(groups):
        if shared:
            segments.append([(b, -1, g.prompt_ids)] + [(b, k, r) for k, r in enumerate(g.response_ids)])
        else:
            segments.extend([(b, -1, g.prompt_ids), (b, k, r)] for k, r in enumerate(g.response_ids))
    return segments


def _pack(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: segment indices per row, every row at most ``capacity`` tokens long."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def _segment_rows(
    groups: Sequence[TokenizedGroup], pad_token_id: int, shared: bool, packed: bool, pack_length: int | None
) -> dict[str, torch.Tensor]:
    segments = _segments(groups, shared)
    lengths = [sum(len(ids) for _, _, ids in seg) for seg in segments]
    if packed:
        rows = _pack(lengths, max(pack_length or 0, max(lengths)))
    else:
        rows = [[i] for i in range(len(segments))]
    width = max(sum(lengths[i] for i in row) for row in rows)
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_token_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    segment_ids = torch.full(shape, -1, dtype=torch.long)
    branch_ids = torch.zeros(shape, dtype=torch.long)

    seq_index: dict[tuple[int, int], int] = {}
    for b, g in enumerate(groups):
        for k in range(g.k):
            seq_index[(b, k)] = len(seq_index)
    prompt_scored: set[int] = set()  # groups whose prompt targets are listed (from their first segment)
    t_row, t_src, t_ids, t_seq = [], [], [], []
    p_row, p_src, p_ids, p_group = [], [], [], []
    for r, row in enumerate(rows):
        at = 0
        for s in row:
            prompt_end, prompt_len = -1, 0  # the segment's last prompt token (-1: empty prompt)
            for b, k, ids in segments[s]:
                n = len(ids)
                input_ids[r, at: at + n] = torch.tensor(ids, dtype=torch.long)
                segment_ids[r, at: at + n] = s
                start = 0 if k < 0 else prompt_len  # a response's positions continue the prompt's
                position_ids[r, at: at + n] = torch.arange(start, start + n)
                if k < 0:
                    prompt_end, prompt_len = (at + n - 1 if n else -1), n
                    if b not in prompt_scored:
                        prompt_scored.add(b)
                        p_row.extend([r] * (n - 1))
                        p_src.extend(range(at, at + n - 1))
                        p_ids.extend(ids[1:])
                        p_group.extend([b] * (n - 1))
                else:
                    if shared:
                        branch_ids[r, at: at + n] = k + 1
                    # Token j of the response is predicted by the hidden state before it: the prompt's last
                    # token for j = 0 (none when the prompt is empty, as in the plain layout).
                    src = ([prompt_end] if prompt_end >= 0 else []) + list(range(at, at + n - 1))
                    targets = ids if prompt_end >= 0 else ids[1:]
                    t_row.extend([r] * len(targets))
                    t_src.extend(src)
                    t_ids.extend(targets)
                    t_seq.extend([seq_index[(b, k)]] * len(targets))
                at += n
    order = sorted(seq_index, key=seq_index.get)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "segment_ids": segment_ids,
        "branch_ids": branch_ids,
        "target_row": as_long(t_row),
        "target_src": as_long(t_src),
        "target_ids": as_long(t_ids),
        "target_seq": as_long(t_seq),
        "prompt_target_row": as_long(p_row),
        "prompt_target_src": as_long(p_src),
        "prompt_target_ids": as_long(p_ids),
        "prompt_target_group": as_long(p_group),
        "seq_group": as_long([b for b, _ in order]),
        "seq_slot": as_long([k for _, k in order]),
    }


def block_attention_mask(segment_ids: torch.Tensor, branch_ids: torch.Tensor) -> torch.Tensor:
    """Boolean [R, 1, C, C] mask (True: may attend) of a segment layout: query i sees key j <= i of its own
    segment whose branch is the prompt's (0) or i's own. Padding (segment -1) sees only padding before it, so
    no query row is empty (an empty row would give NaN in the attention softmax)."""
    c = segment_ids.shape[1]
    idx = torch.arange(c, device=segment_ids.device)
    causal = idx[None, :, None] >= idx[None, None, :]
    same_segment = segment_ids[:, :, None] == segment_ids[:, None, :]
    same_branch = (branch_ids[:, None, :] == 0) | (branch_ids[:, :, None] == branch_ids[:, None, :])
    return (causal & same_segment & same_branch)[:, None]


def _add_feedback(batch: dict[str, torch.Tensor], groups: Sequence[TokenizedGroup], k_max: int) -> None:
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


def row_length(group: TokenizedGroup, layout: str = "plain") -> int:
    """Tokens a group puts in one row of ``layout``: its longest sequence, or its whole shared-prompt segment."""
    if layout.endswith("shared_prompt"):
        return len(group.prompt_ids) + sum(len(r) for r in group.response_ids)
    return group.length


class GroupCollator:
    """Callable collator for ``DataLoader`` / ``transformers.Trainer``.

    With a flash-attention ``attn_implementation`` the ``packed`` layout puts the whole batch in one row (its
    sequences are told apart by ``position_ids``, the varlen kernel needs no mask).
    """

    def __init__(self, pad_token_id: int, layout: str = "plain", pack_length: int | None = None,
                 attn_implementation: str | None = None):
        self.pad_token_id = pad_token_id
        self.layout = check_layout(layout)
        if attn_implementation in FLASH_ATTENTION:
            if layout.endswith("shared_prompt"):
                raise ValueError(f"layout {layout!r} needs a 4D attention mask: use attn_implementation sdpa or "
                                 f"eager, not {attn_implementation}")
            if layout == "packed":
                pack_length = sys.maxsize
        self.pack_length = pack_length

    def __call__(self, groups: Sequence[TokenizedGroup]) -> dict[str, torch.Tensor]:
        return collate_groups(groups, self.pad_token_id, self.layout, self.pack_length)


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
