"""The tensors every objective reads: B groups of up to K responses, laid out [B, K] with a validity mask."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class ObjectiveInputs:
    """Inputs of an objective for B groups of up to K responses.

    policy_logps:        [B, K] summed response-token log-probs under the policy (with gradient).
    ref_logps:           [B, K] the same under the reference, or None for reference-free objectives.
    n_tokens:            [B, K] number of response tokens.
    mask:                [B, K] bool, True where a response exists (groups of different K are padded).
    rewards:             [B, K] explicit rewards, or [M, B, K] for an ensemble of M reward models.
    scores:              [B, K] explicit scores in [0, 1].
    labels:              [B, K] binary labels (1 desirable, 0 undesirable), float or int.
    prompt_policy_logps: [B] log-prob of the prompt tokens after the first one under the policy (DRO).
    prompt_ref_logps:    [B] the same under the reference.
    kl_logratios:        [B, K] optional log-ratios of mismatched (x, y') pairs for KTO's KL estimate.
    group_ids:           [B] optional stable integer id of each group (e.g. its dataset row index); the
                         `best_vs_random` pair construction draws from it, so that a seeded run gives
                         every prompt the same rejected response whatever the batch order (see `pairs`).

    Padded entries may hold any value (even NaN or inf): objectives must not let them reach the loss or
    any gradient.
    """

    policy_logps: torch.Tensor
    mask: torch.Tensor
    n_tokens: torch.Tensor | None = None
    ref_logps: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    prompt_policy_logps: torch.Tensor | None = None
    prompt_ref_logps: torch.Tensor | None = None
    kl_logratios: torch.Tensor | None = None
    group_ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.policy_logps.dim() != 2:
            raise ValueError(f"policy_logps must be [B, K], got shape {tuple(self.policy_logps.shape)}")
        self.mask = self.mask.bool()
        if self.mask.shape != self.policy_logps.shape:
            raise ValueError(
                f"mask has shape {tuple(self.mask.shape)}, policy_logps {tuple(self.policy_logps.shape)}"
            )
        if self.n_tokens is None:
            self.n_tokens = torch.ones_like(self.policy_logps)
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name in ("policy_logps", "mask"):
                continue
            shape = tuple(value.shape)
            expected = tuple(self.policy_logps.shape)
            if f.name.startswith("prompt_") or f.name == "group_ids":
                ok = shape == expected[:1]
            elif f.name == "rewards":
                ok = shape == expected or (len(shape) == 3 and shape[1:] == expected)
            else:
                ok = shape == expected
            if not ok:
                raise ValueError(f"{f.name} has shape {shape}, expected one matching [B, K] = {expected}")

    @property
    def batch_size(self) -> int:
        return self.policy_logps.shape[0]

    @property
    def group_sizes(self) -> torch.Tensor:
        """[B] number of valid responses in each group."""
        return self.mask.sum(dim=1)

    @property
    def is_ensemble(self) -> bool:
        return self.rewards is not None and self.rewards.dim() == 3
