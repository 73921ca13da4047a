"""The reference policy pi_ref: precomputed once and cached, a live frozen copy, or the PEFT base model.

``precompute``: one pass of the frozen initial policy over the training data before training; the values are
stored with the dataset (each group's ``extra["ref_logps"]`` / ``extra["prompt_ref_logps"]``, collated into
``ref_logps`` [B, K] / ``prompt_ref_logps`` [B]) and cached on disk under a key of the model's files, the
token ids of the data and the settings, so a second run reuses them and any change recomputes. The reference
model is freed before training. ``live``: a resident frozen copy. ``peft``: the policy with its adapters
disabled (no second copy of the weights).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.collate import GroupCollator
from ..data.tokenize import TokenizedGroup
from ..runs import atomic_path
from .logprobs import GroupLogps, batch_logps


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class LiveReference:
    """A resident frozen copy of the initial policy."""

    def __init__(self, policy: nn.Module, chunk_size: int = 1024):
        self.model = freeze(copy.deepcopy(policy))
        self.chunk_size = chunk_size

    @torch.no_grad()
    def logps(self, policy: nn.Module, batch: dict[str, torch.Tensor], with_prompt: bool) -> GroupLogps:
        return batch_logps(self.model, batch, self.chunk_size, with_prompt)


class PeftReference:
    """The policy's base model with its LoRA adapters disabled."""

    def __init__(self, chunk_size: int = 1024):
        self.chunk_size = chunk_size

    @torch.no_grad()
    def logps(self, policy: nn.Module, batch: dict[str, torch.Tensor], with_prompt: bool) -> GroupLogps:
        inner = policy.module if isinstance(policy, DistributedDataParallel) else policy
        was_training = inner.training
        inner.eval()  # the reference is the frozen initial policy: no dropout
        try:
            with inner.disable_adapter():
                return batch_logps(policy, batch, self.chunk_size, with_prompt)
        finally:
            inner.train(was_training)


def reference_cache_key(model_id: str, groups: Sequence[TokenizedGroup], settings: dict) -> str:
    """Key of a precomputed reference: model fingerprint, every group's token ids, and the settings."""
    h = hashlib.sha256()
    h.update(model_id.encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    if getattr(groups, "fingerprint", None):  # a TokenizedDataset: its content key stands for its ids
        h.update(groups.fingerprint.encode())
        return h.hexdigest()[:24]
    for g in groups:
        h.update(json.dumps([g.prompt_ids, g.response_ids]).encode())
    return h.hexdigest()[:24]


@torch.no_grad()
def precompute_reference(
    model: nn.Module,
    groups: Sequence[TokenizedGroup],
    pad_token_id: int,
    batch_size: int = 8,
    chunk_size: int = 1024,
    with_prompt: bool = False,
    cache_file: str | Path | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> bool:
    """Fill each group's ``extra["ref_logps"]`` (and ``extra["prompt_ref_logps"]``) from ``model``.

    Reads ``cache_file`` when it exists; otherwise computes and writes it. Returns True on a cache hit.
    """
    if cache_file is not None and Path(cache_file).is_file():
        stored = load_file(str(cache_file))
        _assign(groups, stored["ref_logps"], stored.get("prompt_ref_logps"))
        return True
    was_training = model.training
    model.eval()
    flat, prompts = [], []
    loader = DataLoader(groups, batch_size=batch_size, collate_fn=GroupCollator(pad_token_id))
    # A DataLoader draws a seed from the global RNG: fork it, so a run that computes the reference and a
    # run that reads it from the cache go on with the same random state (LoRA init, data order).
    with torch.random.fork_rng(devices=[]):
        for batch in tqdm(loader, desc="reference log-probs", disable=not progress):
            batch = {k: v.to(device) for k, v in batch.items()}
            out = batch_logps(model, batch, chunk_size, with_prompt)
            flat.append(out.logps[batch["mask"]].float().cpu())
            if out.prompt_logps is not None:
                prompts.append(out.prompt_logps.float().cpu())
    model.train(was_training)
    ref = torch.cat(flat)
    prompt_ref = torch.cat(prompts) if prompts else None
    _assign(groups, ref, prompt_ref)
    if cache_file is not None:
        tensors = {"ref_logps": ref} | ({"prompt_ref_logps": prompt_ref} if prompt_ref is not None else {})
        # Atomic: processes of one multi-process run may write the same entry at once.
        with atomic_path(cache_file) as tmp:
            save_file(tensors, str(tmp))
    return False


def _assign(groups: Sequence[TokenizedGroup], ref: torch.Tensor, prompt_ref: torch.Tensor | None) -> None:
    if hasattr(groups, "add_reference"):  # a TokenizedDataset: stored as its columns
        groups.add_reference(ref.numpy(), None if prompt_ref is None else prompt_ref.numpy())
        return
    total = sum(g.k for g in groups)
    if ref.numel() != total:
        raise ValueError(f"reference cache holds {ref.numel()} log-probs for {total} responses")
    offset = 0
    for i, g in enumerate(groups):
        g.extra["ref_logps"] = ref[offset: offset + g.k].tolist()
        offset += g.k
        if prompt_ref is not None:
            g.extra["prompt_ref_logps"] = float(prompt_ref[i])
