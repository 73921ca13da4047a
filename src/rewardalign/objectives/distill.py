"""Pairwise reward distillation: the implicit reward margin regressed onto the explicit reward margin.

Every unordered pair {i, j} of a group's valid responses is used, ties included (a tie is the target
margin 0, which is information). The losses are symmetric in the pair, so its orientation does not
matter. A group's loss is the mean over its K(K-1)/2 pairs.
"""

from __future__ import annotations

import torch

from rewardalign.objectives.core import Terms, bernoulli_kl, group_mean, logratios
from rewardalign.objectives.inputs import ObjectiveInputs
from rewardalign.objectives.pairs import unordered_pairs


def _margins(x: ObjectiveInputs, beta: float, eta: float, rewards: torch.Tensor):
    """(student margins beta*(rho_i - rho_j), teacher margins eta*(r_i - r_j), pair mask), each [B, P]."""
    p = unordered_pairs(rewards, x.mask)
    return beta * p.diff(logratios(x)), eta * p.diff(rewards), p.mask


def rpo(x: ObjectiveInputs, *, beta: float, eta: float) -> Terms:
    """Reward distillation, squared loss (Fisch et al. 2024, "distillation"; NeMo-Aligner ``rpo_sq``).

        loss = (beta * (rho_i - rho_j) - eta * (r_i - r_j))^2, mean over the pairs {i, j} of the group

    This is Eq. 4 of paper 002 (with eta = 1), the baseline called RPO in papers 000/001. Defaults:
    beta = 0.1, eta = 1.0.
    """
    student, teacher, mask = _margins(x, beta, eta, x.rewards)
    loss, valid = group_mean((student - teacher) ** 2, mask)
    return Terms(loss, valid, implicit=beta * logratios(x), target_err=loss)


def rpo_fwd_kl(x: ObjectiveInputs, *, beta: float, eta: float) -> Terms:
    """Reward distillation, forward KL: the POLICY's Bradley-Terry preference comes first.

        p    = sigma(beta * (rho_i - rho_j))        the policy's (implicit) preference of i over j
        g    = sigma(eta * (r_i - r_j))             the reward's (explicit) preference
        loss = KL(Bern(p) || Bern(g)) = p * (log p - log g) + (1 - p) * (log(1 - p) - log(1 - g))

    mean over the pairs {i, j} of the group. NeMo-Aligner ``rpo_fwd_kl`` (its ``exp(logbeta_hat) *
    (logbeta_hat - logalpha_hat) + ...``, beta_hat the policy's); METHODS.md, "Reward distillation". "Forward"
    is NeMo's name for this order. Symmetric in the pair, as the KL between two Bernoullis is unchanged by
    swapping both outcomes. Defaults: beta = 0.1, eta = 1.0.
    """
    student, teacher, mask = _margins(x, beta, eta, x.rewards)
    loss, valid = group_mean(bernoulli_kl(student, teacher), mask)
    err, _ = group_mean((student - teacher) ** 2, mask)
    return Terms(loss, valid, implicit=beta * logratios(x), target_err=err)


def rpo_bwd_kl(x: ObjectiveInputs, *, beta: float, eta: float) -> Terms:
    """Reward distillation, backward KL: the REWARD's Bradley-Terry preference comes first.

        p    = sigma(beta * (rho_i - rho_j)),   g = sigma(eta * (r_i - r_j))       (as in ``rpo_fwd_kl``)
        loss = KL(Bern(g) || Bern(p)) = g * (log g - log p) + (1 - g) * (log(1 - g) - log(1 - p))

    mean over the pairs {i, j} of the group: the cross-entropy of the policy's preference against the
    reward's, less the reward's entropy. NeMo-Aligner ``rpo_bwd_kl``; METHODS.md, "Reward distillation".
    Defaults: beta = 0.1, eta = 1.0.
    """
    student, teacher, mask = _margins(x, beta, eta, x.rewards)
    loss, valid = group_mean(bernoulli_kl(teacher, student), mask)
    err, _ = group_mean((student - teacher) ** 2, mask)
    return Terms(loss, valid, implicit=beta * logratios(x), target_err=err)


def edpo(x: ObjectiveInputs, *, beta: float, eta: float, ensemble_reduce: str) -> Terms:
    """Ensemble reward distillation, e-DPO (Fisch et al. 2024, as the baseline of paper 002).

        loss_m = (beta * (rho_i - rho_j) - eta * (r^(m)_i - r^(m)_j))^2
        loss   = max over m of loss_m  (pessimistic)      or   mean over m  (ensemble_reduce = mean)

    ``inputs.rewards`` is [M, B, K] (a [B, K] tensor is one model, M = 1, and then e-DPO is ``rpo``).

    Ambiguity resolved: the reduction over models is taken per pair, as METHODS.md states. Fisch et al.
    state the pessimistic objective as a max over reward models of the expected distillation loss; the
    per-pair max is an upper bound on it that needs no data-set-level state. Pairs are the unordered pairs
    of each group, ranked for the metrics by the ensemble mean.

    Defaults: beta = 0.1, eta = 1.0, ensemble_reduce = max.
    """
    rewards = x.rewards if x.rewards.dim() == 3 else x.rewards.unsqueeze(0)
    p = unordered_pairs(rewards.mean(dim=0), x.mask)
    student = beta * p.diff(logratios(x))
    per_model = torch.stack([(student - eta * p.diff(r)) ** 2 for r in rewards])
    reduced = per_model.amax(dim=0) if ensemble_reduce == "max" else per_model.mean(dim=0)
    loss, valid = group_mean(reduced, p.mask)
    err, _ = group_mean(per_model.mean(dim=0), p.mask)
    return Terms(loss, valid, implicit=beta * logratios(x), target_err=err)
