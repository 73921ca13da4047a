"""Point-wise objectives: every response gets its own target. DRO/DRD (papers 000, 001) and UNA (003).

A group may hold any K >= 1 responses; its loss is the mean over them. The implicit reward is
beta * rho and the UNA implicit score is q = sigma(beta * rho) (003, Eq. 8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rewardalign.objectives.core import Terms, group_mean, logratios
from rewardalign.objectives.inputs import ObjectiveInputs


def _regress(x: ObjectiveInputs, implicit: torch.Tensor, prediction: torch.Tensor, target: torch.Tensor) -> Terms:
    """Mean squared error of ``prediction`` against ``target`` over each group's valid responses."""
    loss, valid = group_mean((prediction - target) ** 2, x.mask)
    return Terms(loss, valid, implicit=implicit, target_err=loss)


def dro(x: ObjectiveInputs, *, beta: float, z0: float, prompt_normalization: bool, baseline: str) -> Terms:
    """Direct Reward Optimization / Distillation (papers 001 Eq. 7 and Algorithm 1; 000 Eq. 7).

        target_k = r_k - beta * sg(lx - lx_ref) - z0 [- b(x)]
        loss_k   = (target_k - beta * rho_k)^2,  group loss = mean over the group's K >= 1 responses

    The prompt term is Algorithm 1, lines 6-7: Z_i = [pi_theta(x - t0 | t0) / pi_ref(x - t0 | t0)] * Z_0,
    detached, with lx, lx_ref the log-probs of the prompt tokens after the first one (``prompt_policy_logps``,
    ``prompt_ref_logps``); ``prompt_normalization = False`` drops it (and then the prompt log-probs are not
    needed). Line 9's beta * log Z_i is beta * (lx - lx_ref) + beta * log Z_0.

    Ambiguity resolved: ``z0`` stands for beta * log Z_0, an additive offset in reward units. The papers
    search "Z_0 in [-50, 500]" and report Z_0 = 50 (beta = 0.1, lr = 5e-7); a negative Z_0 cannot sit inside
    a log, so the searched quantity must be this offset, not Z_0 itself. Raising z0 lowers every target
    ("Z_0 presents an offset", 001 Sec. 3.4). With z0 = 0, no prompt term and no baseline DRO is
    ``una_reward_mse``.

    Offsets estimated from the data (the papers' V(x), the value of the prompt, learned there by a value
    network): ``z0: auto`` is the mean reward of the training data, computed once before training (``run_align``
    resolves it; this function only ever sees a number); ``baseline: group_mean`` subtracts
    ``b(x) = mean_k r_k`` over the group's valid responses, a per-prompt baseline (a group of one response then
    has target 0 before the other terms). Either centres the targets: with rewards of one sign and z0 = 0 every
    target pushes the sampled responses' likelihood the same way, and pushing it down moves mass onto unseen,
    often endless, responses.

    Defaults (against 001's Algorithm 1, which keeps the prompt term and a searched Z_0): beta = 0.1 (the
    papers' reported setting), z0 = 0.0, baseline = group_mean, prompt_normalization = False. Chosen on the
    gym's tuning seed 1000 of arithmetic, sort and examples/tasks/count.py at the demo's full budget (200 steps
    of 8 groups, learning rates 1e-4 and 3e-4; ``python benchmarks/dro_offset.py --quick``): with the prompt
    term DRO collapsed on count whatever the offset (KL 21-96, up to 65% of samples without EOS), without it
    none lost more than 6% of its EOS, and the per-prompt baseline had the best mean gold reward (0.740 at 1e-4, against 0.720 for
    ``z0: auto`` and 0.647 for z0 = 0, which drifted to KL 9-15 on count). The prompt term is a per-prompt
    shift that moves as the policy's prompt log-probs move; the squared loss absorbs it through the log-ratio of
    every response at once, a loop that a per-prompt baseline (an estimate of V(x) from the group) makes
    unnecessary.
    """
    rho = logratios(x)
    target = x.rewards - z0
    if baseline == "group_mean":
        target = target - group_mean(x.rewards, x.mask)[0][:, None]
    if prompt_normalization:
        prompt_logratio = (x.prompt_policy_logps - x.prompt_ref_logps).detach()
        target = target - beta * prompt_logratio[:, None]
    return _regress(x, beta * rho, beta * rho, target)


def una_reward_mse(x: ObjectiveInputs, *, beta: float) -> Terms:
    """UNA on raw rewards (paper 003, Eq. 7 with g = MSE): loss_k = (beta * rho_k - r_k)^2.

    Equal to ``dro`` with prompt_normalization = False, baseline = none and z0 = 0. Default beta = 0.1 (the paper reports no
    value for this variant; it is DRO's).
    """
    implicit = beta * logratios(x)
    return _regress(x, implicit, implicit, x.rewards)


def una_score_mse(x: ObjectiveInputs, *, beta: float) -> Terms:
    """UNA distillation of scores in [0, 1] (paper 003, Eq. 13): loss_k = (sigma(beta * rho_k) - s_k)^2.

    Scores outside [0, 1] are refused before this runs (normalise rewards first, e.g. s = sigma(r)).
    Paper 003's Eq. 11 and 13 print a minus sign before the expectation of the squared error; that would be
    maximised, so the sign is dropped. Default beta = 0.03 (the paper's setting for UNA-score, Sec. 4).
    """
    implicit = beta * logratios(x)
    return _regress(x, implicit, torch.sigmoid(implicit), x.scores)


def una_binary_mse(x: ObjectiveInputs, *, beta: float) -> Terms:
    """UNA on binary feedback, MSE form (paper 003, Eq. 11): loss_k = (sigma(beta * rho_k) - b_k)^2.

    b = 1 for a desirable response, 0 for an undesirable one; any K >= 1. The sign printed before Eq. 11's
    expectation is dropped (see ``una_score_mse``). Default beta = 0.01 (the paper's UNA-binary setting).
    """
    implicit = beta * logratios(x)
    return _regress(x, implicit, torch.sigmoid(implicit), x.labels)


def una_binary_bce(x: ObjectiveInputs, *, beta: float) -> Terms:
    """UNA on binary feedback, BCE form (paper 003, Eq. 12).

        loss_k = -(b_k * logsig(beta * rho_k) + (1 - b_k) * logsig(-beta * rho_k))

    i.e. -(b log q + (1 - b) log(1 - q)) with q = sigma(beta * rho), computed from log-sigmoids for
    stability. The ``rewards/target_mse`` metric reports (q - b)^2. Default beta = 0.01 (the paper's
    UNA-binary setting).
    """
    implicit = beta * logratios(x)
    bce = -(x.labels * F.logsigmoid(implicit) + (1.0 - x.labels) * F.logsigmoid(-implicit))
    loss, valid = group_mean(bce, x.mask)
    err, _ = group_mean((torch.sigmoid(implicit) - x.labels) ** 2, x.mask)
    return Terms(loss, valid, implicit=implicit, target_err=err)
