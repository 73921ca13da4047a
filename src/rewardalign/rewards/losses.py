"""Reward-model losses: Bradley-Terry with margin and centering, and the Oracle's BT + NLL mix.

Pure functions of per-pair tensors: ``r_w`` and ``r_l`` [P] are the scalar rewards of the preferred and the
dispreferred response of P pairs; ``nll_w`` [P] is the mean token negative log-likelihood of each preferred
response (prompt tokens excluded). Nothing here touches a model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(r_w: torch.Tensor, r_l: torch.Tensor, margin: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Per-pair Bradley-Terry negative log-likelihood, [P].

    Under the Bradley-Terry model p(y_w > y_l | x) = sigma(r(x, y_w) - r(x, y_l)) (Bradley & Terry 1952; the
    reward-model loss of RLHF, 000/001 Eq. 2, 002 Eq. 2), so the loss of one pair is

        -logsig(r_w - r_l - margin)

    A positive ``margin`` asks the preferred reward to lead by at least that much before the loss flattens
    (Llama 2's margin loss); ``margin = 0`` is plain BT. With r_w = r_l and no margin the loss is log 2.
    """
    return -F.logsigmoid(r_w - r_l - margin)


def center_penalty(r_w: torch.Tensor, r_l: torch.Tensor) -> torch.Tensor:
    """Per-pair centering penalty (r_w + r_l)^2, [P].

    BT only sees reward differences, so the rewards' offset drifts freely; this penalty (Eisenstein et al.
    2023, TRL's ``center_rewards_coefficient``) pulls the mean reward of each pair towards 0.
    """
    return (r_w + r_l).pow(2)


def reward_model_loss(
    r_w: torch.Tensor,
    r_l: torch.Tensor,
    *,
    margin: float | torch.Tensor = 0.0,
    center_coefficient: float = 0.0,
    nll_w: torch.Tensor | None = None,
    oracle_alpha: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Batch loss of a reward model and its metrics.

    ``bt`` (``oracle_alpha = 0``)::

        L = mean_p[-logsig(r_w - r_l - margin)] + center_coefficient * mean_p[(r_w + r_l)^2]

    ``oracle`` (002 Eq. 5, the GRM regulariser of Yang et al. 2024: the LM head is kept and trained)::

        L = (1 - a) * mean_p[-logsig(r_w - r_l - margin)] + a * mean_p[nll_w] + center_coefficient * mean_p[(r_w + r_l)^2]

    with ``a = oracle_alpha`` (0.1 by the spec; the paper's footnote 5 reports 0.01 working better on its
    data) and ``nll_w`` the mean token NLL of the preferred response (002 writes ``log(y_w)``: read here as the
    length-normalised SFT loss of y_w, the "mean token NLL" of METHODS.md). Resolved ambiguity: the centering
    term is a separate regulariser and is not scaled by (1 - a).

    Metrics: ``bt_loss`` (without margin: the held-out figure of 000/001 Table 1), ``accuracy`` (r_w > r_l;
    a tie counts as wrong), ``margin`` mean(r_w - r_l), ``reward_mean``, ``nll_chosen`` for the oracle.
    """
    if r_w.shape != r_l.shape:
        raise ValueError(f"r_w has shape {tuple(r_w.shape)}, r_l {tuple(r_l.shape)}")
    if not 0.0 <= oracle_alpha <= 1.0:
        raise ValueError(f"oracle_alpha must lie in [0, 1], got {oracle_alpha}")
    bt = bradley_terry_loss(r_w, r_l, margin).mean()
    loss = bt
    metrics: dict[str, torch.Tensor] = {}
    if oracle_alpha > 0.0:
        if nll_w is None:
            raise ValueError("oracle_alpha > 0 needs nll_w, the preferred responses' mean token NLL")
        nll = nll_w.mean()
        loss = (1.0 - oracle_alpha) * bt + oracle_alpha * nll
        metrics["nll_chosen"] = nll.detach()
    if center_coefficient:
        center = center_penalty(r_w, r_l).mean()
        loss = loss + center_coefficient * center
        metrics["center"] = center.detach()
    with torch.no_grad():
        metrics["bt_loss"] = bradley_terry_loss(r_w, r_l).mean()
        metrics["accuracy"] = (r_w > r_l).float().mean()
        metrics["margin"] = (r_w - r_l).mean()
        metrics["reward_mean"] = torch.cat([r_w, r_l]).mean()
    return loss, metrics
