"""Listwise objectives on K >= 2 responses with a soft teacher: SPO and SPO-abs (paper 004), InfoNCA and NCA
(Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards", NeurIPS 2024)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rewardalign.objectives.core import Terms, group_mean, logratios, masked_log_softmax
from rewardalign.objectives.inputs import ObjectiveInputs
from rewardalign.objectives.pairs import best_index, explicit_feedback, ranking_key


def _teacher(x: ObjectiveInputs, alpha: float) -> torch.Tensor:
    """[B, K] teacher distribution over each group's valid responses.

    With rewards (else scores): softmax(values / alpha). With only binary labels, or no feedback at all (a
    plain chosen/rejected pair), there is an order but no reward scale: the teacher is the alpha -> 0 limit,
    uniform over the top-ranked responses, which makes SPO exactly DPO on a pair (004, Table 1, "Preference
    Dataset").
    """
    feedback = explicit_feedback(x)
    if feedback is not None and feedback[0] != "labels":
        return masked_log_softmax(feedback[1] / alpha, x.mask).exp()
    key = ranking_key(x)
    top = x.mask & (key == key.gather(1, best_index(key, x.mask)))
    weights = top.to(x.policy_logps.dtype)
    return weights / weights.sum(dim=1, keepdim=True).clamp(min=1)


def _soft_cross_entropy(x: ObjectiveInputs, beta: float, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """([B] cross-entropy of the student's softmax against the teacher's, [B, K] implicit rewards u)."""
    u = beta * logratios(x)
    log_student = masked_log_softmax(u, x.mask)
    cross_entropy = -torch.where(x.mask, _teacher(x, alpha) * log_student, 0.0).sum(dim=1)
    return cross_entropy, u


def spo(x: ObjectiveInputs, *, beta: float, alpha: float) -> Terms:
    """Soft Preference Optimization (paper 004, Eq. 7-8): a K-way cross-entropy with soft labels.

        u_k     = beta * rho_k
        teacher = softmax_k(r_k / alpha)                 over the group's valid responses
        loss    = -sum_k teacher_k * log softmax_k(u)

    K is any number >= 2 and may differ between groups (padded entries are out of both softmaxes). As
    alpha -> 0 the teacher becomes one-hot on the best response and, for K = 2, the loss is DPO (Eq. 9-10).
    The teacher reads rewards, else scores; with only labels, or none (a K = 2 group is then the plain
    pair), it is uniform over the top-ranked responses (the alpha -> 0 limit).

    Defaults: beta = 1.0 (Eq. 8 has no beta; METHODS.md keeps it as an option), alpha = 1.0.
    """
    cross_entropy, u = _soft_cross_entropy(x, beta, alpha)
    return Terms(cross_entropy, x.mask.any(dim=1), implicit=u)


def spo_abs(x: ObjectiveInputs, *, beta: float, alpha: float, abs_form: str) -> Terms:
    """SPO-abs (paper 004, Sec. 4.4): SPO plus an absolute-value term on every implicit reward.

        abs_form = sigmoid:     loss = spo + (1/K) * sum_k sigma(-u_k)        (Table 1, Eq. 11 line 2)
        abs_form = logsigmoid:  loss = spo + (1/K) * sum_k logsig(-u_k)       (Eq. 11 line 1)

    K is the group's number of valid responses. Ambiguity resolved: Eq. 11 writes the term as log sigma(-u)
    on its first line and sigma(-u) on its second; Table 1 has sigma(-u). The log form is unbounded below
    (it rewards pushing u to +inf without limit), so the bounded sigmoid form is the default.

    Defaults: beta = 1.0, alpha = 1.0, abs_form = sigmoid.
    """
    cross_entropy, u = _soft_cross_entropy(x, beta, alpha)
    absolute = torch.sigmoid(-u) if abs_form == "sigmoid" else F.logsigmoid(-u)
    mean_absolute, valid = group_mean(absolute, x.mask)
    return Terms(cross_entropy + mean_absolute, valid, implicit=u)


def infonca(x: ObjectiveInputs, *, beta: float, alpha: float) -> Terms:
    """InfoNCA (Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards",
    Sec. 3, the InfoNCA loss): the same loss as ``spo``, registered under the name of its other paper.

        u_k  = beta * rho_k,   t = softmax_k(r_k / alpha)
        loss = -sum_k t_k * log softmax_k(u)

    Chen et al. derive it from InfoNCE over K responses and show it is DPO for K = 2 with a one-hot teacher;
    paper 004 derives the same cross-entropy as SPO. The teacher is SPO's (rewards, else scores; with only
    labels or no feedback, uniform over the top-ranked responses); alpha divides the rewards, as in METHODS.md.

    Defaults: beta = 1.0, alpha = 1.0 (SPO's; the authors' repository trains with beta = 0.01).
    """
    return spo(x, beta=beta, alpha=alpha)


def nca(x: ObjectiveInputs, *, beta: float, alpha: float) -> Terms:
    """NCA (Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards", Sec. 4,
    the NCA loss): binary noise-contrastive estimation of each response's absolute implicit reward.

        u_k  = beta * rho_k,   t = softmax_k(r_k / alpha)          (the teacher of ``spo``)
        loss = -sum_k t_k * logsig(u_k) - (1/K) * sum_k logsig(-u_k)

    K is the group's number of valid responses (padded entries are out of the teacher's softmax and of both
    sums). Unlike InfoNCA/SPO, which only move the u_k relative to each other, each u_k has its own optimum:
    dloss/du_k = -t_k * sigma(-u_k) + sigma(u_k) / K vanishes at u_k = log(K * t_k), so a response the teacher
    rates above 1/K is pushed up in absolute terms (the paper's remedy for the falling chosen likelihood of
    DPO/InfoNCA). With a one-hot teacher and K = 2 this is ``nca_pair``. The teacher reads rewards, else
    scores; with only labels, or none (a plain pair), it is uniform over the top-ranked responses.

    Defaults: beta = 1.0, alpha = 1.0 (as ``spo``/``infonca``, whose u_k and teacher it shares; the authors'
    repository trains with beta = 0.01).
    """
    u = beta * logratios(x)
    attract = -torch.where(x.mask, _teacher(x, alpha) * F.logsigmoid(u), 0.0).sum(dim=1)
    repel, valid = group_mean(-F.logsigmoid(-u), x.mask)
    return Terms(attract + repel, valid, implicit=u)
