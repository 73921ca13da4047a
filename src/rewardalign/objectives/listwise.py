"""Listwise soft preference optimisation, SPO and SPO-abs (paper 004)."""

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
