"""What every objective shares: masking, the per-group reduction, and stable elementary functions.

Objectives receive inputs that went through :func:`prepare`: padded entries are replaced by harmless
constants *before* any arithmetic (``torch.where``, so a NaN or inf there never meets a multiplication by
zero) and floating tensors are computed in at least float32. An objective returns :class:`Terms`: one
loss per group plus what the metrics need; the registry adds the optional NLL term, reduces over groups
and computes the metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from rewardalign.objectives.inputs import ObjectiveInputs

# Values written into padded entries: finite, and with finite derivatives for every function used here.
_FILL = {
    "policy_logps": -1.0,
    "ref_logps": -1.0,
    "n_tokens": 1.0,
    "rewards": 0.0,
    "scores": 0.0,
    "labels": 0.0,
    "kl_logratios": 0.0,
}


@dataclass
class Terms:
    """The output of one objective on a batch of B groups of up to K responses.

    loss:       [B] the loss of each group (the mean over its valid pairs or responses).
    valid:      [B] bool, True for groups that have at least one valid pair or response.
    implicit:   [B, K] the objective's implicit reward of each response (``beta * rho`` for most), for the
                ``rewards/*`` metrics.
    target_err: [B] mean squared error between the implicit quantity and its explicit target, for objectives
                that regress onto one (the ``rewards/target_mse`` metric); None otherwise.
    """

    loss: torch.Tensor
    valid: torch.Tensor
    implicit: torch.Tensor
    target_err: torch.Tensor | None = None


def prepare(inputs: ObjectiveInputs) -> ObjectiveInputs:
    """A copy of ``inputs`` whose padded entries hold finite constants, in float32 or wider.

    The replacement uses ``torch.where``, whose gradient to a padded entry is exactly zero; bfloat16 and
    float16 log-probs are upcast so that the losses are computed in float32 (their gradients flow back in
    the input dtype).
    """
    dtype = torch.promote_types(inputs.policy_logps.dtype, torch.float32)
    mask = inputs.mask
    updates = {}
    for name, fill in _FILL.items():
        value = getattr(inputs, name)
        if value is None:
            continue
        value_mask = mask.expand_as(value) if value.dim() == 3 else mask
        updates[name] = torch.where(value_mask, value.to(dtype), fill)
    has_response = mask.any(dim=1)
    for name in ("prompt_policy_logps", "prompt_ref_logps"):
        value = getattr(inputs, name)
        if value is not None:
            updates[name] = torch.where(has_response, value.to(dtype), 0.0)
    return replace(inputs, **updates)


def logratios(x: ObjectiveInputs) -> torch.Tensor:
    """rho = l - l_ref, [B, K]."""
    return x.policy_logps - x.ref_logps


def group_mean(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values`` [B, P] over the entries where ``mask`` is True, per group: ([B] mean, [B] any)."""
    count = mask.sum(dim=1)
    total = torch.where(mask, values, 0.0).sum(dim=1)
    return total / count.clamp(min=1), count > 0


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log softmax over the valid entries of each row (padded entries get probability 0)."""
    return torch.log_softmax(torch.where(mask, logits, torch.finfo(logits.dtype).min), dim=-1)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, stable at both ends (Maechler 2012).

    Uses log(-expm1(x)) for x > -ln 2 and log1p(-exp(x)) below. x is first clamped to at most -eps of its
    dtype (a log-probability of exactly 0 would give -inf); each branch only ever sees inputs where it is
    finite, so the branch that ``torch.where`` discards cannot send a NaN into the gradient.
    """
    x = x.clamp(max=-torch.finfo(x.dtype).eps)
    near_zero = x > -math.log(2.0)
    near = torch.where(near_zero, x, -1.0)
    far = torch.where(near_zero, -1.0, x)
    return torch.where(near_zero, torch.log(-torch.expm1(near)), torch.log1p(-torch.exp(far)))


def bernoulli_kl(logit_p: torch.Tensor, logit_q: torch.Tensor) -> torch.Tensor:
    """KL(Bern(sigma(logit_p)) || Bern(sigma(logit_q))), computed from log-sigmoids."""
    log_p, log_not_p = F.logsigmoid(logit_p), F.logsigmoid(-logit_p)
    log_q, log_not_q = F.logsigmoid(logit_q), F.logsigmoid(-logit_q)
    return log_p.exp() * (log_p - log_q) + log_not_p.exp() * (log_not_p - log_not_q)
