"""The pairwise baselines: DPO and its family, and KTO.

Notation (METHODS.md): l = summed response log-prob under the policy, l_ref under the reference,
rho = l - l_ref, n = number of response tokens, (w, l) = (preferred, dispreferred). A group of K >= 2
responses is reduced to pairs by the ``pairs`` construction (:mod:`rewardalign.objectives.pairs`); the
group's loss is the mean over its pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rewardalign.objectives.core import Terms, group_mean, log1mexp, logratios
from rewardalign.objectives.inputs import ObjectiveInputs
from rewardalign.objectives.pairs import Pairs, preference_pairs, ranking_key


def make_pairs(x: ObjectiveInputs, pairs: str, seed: int, order_by: str) -> Pairs:
    """The preference pairs of every group, ranked by ``order_by`` and built by ``pairs``."""
    return preference_pairs(ranking_key(x, order_by), x.mask, pairs, seed, x.group_ids)


def dpo(
    x: ObjectiveInputs, *, beta: float, label_smoothing: float, pairs: str, seed: int, order_by: str
) -> Terms:
    """Direct Preference Optimization (Rafailov et al. 2023, Eq. 7), with conservative label smoothing.

        z    = beta * (rho_w - rho_l)
        loss = -(1 - e) * logsig(z) - e * logsig(-z)          e = label_smoothing

    e = 0 is DPO (also Eq. 4 of papers 000/001, Eq. 3 of 002, Eq. 5 of 003); e > 0 is cDPO (Mitchell 2023),
    which treats each label as flipped with probability e.

    Defaults: beta = 0.1, label_smoothing = 0, pairs = best_vs_random, seed = 0, order_by = auto.
    """
    p = make_pairs(x, pairs, seed, order_by)
    rho = logratios(x)
    z = beta * p.diff(rho)
    loss = -(1.0 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    return Terms(*group_mean(loss, p.mask), implicit=beta * rho)


def una_pair(x: ObjectiveInputs, *, beta: float, pairs: str, seed: int, order_by: str) -> Terms:
    """UNA on pairwise data (paper 003, Eq. 10 with f = log sigma): DPO itself.

        loss = -logsig(beta * (rho_w - rho_l))

    Eq. 10 as printed maximises the raw implicit-reward margin; the paper then states that with log sigma
    applied to the margin it is the DPO loss, which is what is registered here (``dpo`` with
    label_smoothing = 0). Defaults: beta = 0.1 (the library's DPO default; paper 003 ran DPO and UNA with
    0.03 on HelpSteer2 with LoRA), pairs = best_vs_random, seed = 0, order_by = auto.
    """
    return dpo(x, beta=beta, label_smoothing=0.0, pairs=pairs, seed=seed, order_by=order_by)


def nca_pair(x: ObjectiveInputs, *, beta: float, pairs: str, seed: int, order_by: str) -> Terms:
    """Pairwise NCA (Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards",
    Sec. 4, the NCA loss on preference pairs; TRL's ``nca_pair``).

        u    = beta * rho
        loss = -logsig(u_w) - 0.5 * logsig(-u_w) - 0.5 * logsig(-u_l)

    ``nca`` with K = 2 and the teacher one-hot on w. The rejected response is always pushed down
    (dloss/du_l = sigma(u_l) / 2 > 0); the chosen one is pushed up while u_w < log 2, whatever u_l
    (dloss/du_w = -sigma(-u_w) + sigma(u_w) / 2), so its likelihood does not fall as DPO's can. A group of
    K > 2 is reduced to pairs by ``pairs`` as for ``dpo``; its loss is the mean over them.

    Defaults: beta = 0.1 (TRL's and the library's pairwise default; the authors' repository trains with
    0.01), pairs = best_vs_random, seed = 0, order_by = auto.
    """
    p = make_pairs(x, pairs, seed, order_by)
    u = beta * logratios(x)
    u_w, u_l = p.take(u)
    loss = -F.logsigmoid(u_w) - 0.5 * F.logsigmoid(-u_w) - 0.5 * F.logsigmoid(-u_l)
    return Terms(*group_mean(loss, p.mask), implicit=u)


def ipo(x: ObjectiveInputs, *, beta: float, pairs: str, seed: int, order_by: str) -> Terms:
    """Identity Preference Optimization (Azar et al. 2024): regress the log-ratio margin onto 1/(2 beta).

        loss = (rho_w - rho_l - 1 / (2 * beta))^2

    rho are summed (not token-averaged) log-ratios, as in METHODS.md and the IPO paper; TRL's ``ipo``
    averages over tokens. Defaults: beta = 0.1 (the regularisation tau of the paper), pairs =
    best_vs_random, seed = 0, order_by = auto.
    """
    p = make_pairs(x, pairs, seed, order_by)
    rho = logratios(x)
    loss = (p.diff(rho) - 1.0 / (2.0 * beta)) ** 2
    return Terms(*group_mean(loss, p.mask), implicit=beta * rho)


def slic(
    x: ObjectiveInputs, *, delta: float, lam: float, pairs: str, seed: int, order_by: str
) -> Terms:
    """SLiC-HF calibration loss with its regulariser (Zhao et al. 2023), reference-free.

        loss = max(0, delta - l_w + l_l) + lambda * (-l_w / n_w)         lambda = lam

    The regulariser is the mean token NLL of the preferred response (SLiC-HF regularises towards the SFT
    targets; the preferred response stands in for them, as in METHODS.md). The implicit reward reported in
    the metrics is l. Defaults: delta = 1.0, lam = 0.1, pairs = best_vs_random, seed = 0,
    order_by = auto.
    """
    p = make_pairs(x, pairs, seed, order_by)
    logp_w, _ = p.take(x.policy_logps)
    n_w, _ = p.take(x.n_tokens)
    loss = torch.relu(delta - p.diff(x.policy_logps)) + lam * (-logp_w / n_w)
    return Terms(*group_mean(loss, p.mask), implicit=x.policy_logps)


def simpo(
    x: ObjectiveInputs, *, beta: float, gamma: float, pairs: str, seed: int, order_by: str
) -> Terms:
    """Simple Preference Optimization (Meng et al. 2024), reference-free and length-normalised.

        loss = -logsig(beta * (l_w / n_w - l_l / n_l) - gamma)

    gamma is the target margin in reward units (the paper's gamma, not TRL's gamma/beta ratio). The implicit
    reward is beta * l / n. Defaults: beta = 2.0, gamma = 0.5, pairs = best_vs_random, seed = 0,
    order_by = auto.
    """
    p = make_pairs(x, pairs, seed, order_by)
    reward = beta * x.policy_logps / x.n_tokens
    loss = -F.logsigmoid(p.diff(reward) - gamma)
    return Terms(*group_mean(loss, p.mask), implicit=reward)


def orpo(x: ObjectiveInputs, *, lam: float, pairs: str, seed: int, order_by: str) -> Terms:
    """Odds Ratio Preference Optimization (Hong et al. 2024), reference-free.

        p    = exp(l / n)                        (geometric mean token probability)
        odds = log(p / (1 - p)) = l/n - log(1 - exp(l/n))
        loss = -l_w / n_w - lambda * logsig(odds_w - odds_l)          lambda = lam

    log(1 - exp(.)) is computed stably (``log1mexp``); a mean log-prob of exactly 0 is clamped to -eps.
    The implicit reward reported in the metrics is l / n. Defaults: lam = 0.1, pairs = best_vs_random,
    seed = 0, order_by = auto.
    """
    p = make_pairs(x, pairs, seed, order_by)
    mean_logp = x.policy_logps / x.n_tokens
    log_odds = mean_logp - log1mexp(mean_logp)
    mean_logp_w, _ = p.take(mean_logp)
    loss = -mean_logp_w - lam * F.logsigmoid(p.diff(log_odds))
    return Terms(*group_mean(loss, p.mask), implicit=mean_logp)


def cal_dpo(x: ObjectiveInputs, *, beta: float, pairs: str, seed: int, order_by: str) -> Terms:
    """Cal-DPO (Xiao et al. 2024): DPO on unscaled log-ratios plus a calibration of each log-ratio.

        loss = -logsig(rho_w - rho_l) + (rho_w - 1/(2 beta))^2 + (rho_l + 1/(2 beta))^2

    The calibration pulls the chosen log-ratio to +1/(2 beta) and the rejected one to -1/(2 beta), so the
    chosen likelihood cannot fall while the margin grows. Defaults: beta = 0.1 (targets +-5), pairs =
    best_vs_random, seed = 0, order_by = auto.
    """
    p = make_pairs(x, pairs, seed, order_by)
    rho = logratios(x)
    rho_w, rho_l = p.take(rho)
    target = 1.0 / (2.0 * beta)
    loss = -F.logsigmoid(rho_w - rho_l) + (rho_w - target) ** 2 + (rho_l + target) ** 2
    return Terms(*group_mean(loss, p.mask), implicit=beta * rho)


def dpop(x: ObjectiveInputs, *, beta: float, lam: float, pairs: str, seed: int, order_by: str) -> Terms:
    """DPO-Positive (Pal et al. 2024): DPO with a penalty when the chosen log-ratio falls below 0.

        loss = -logsig(beta * (rho_w - rho_l - lambda * max(0, -rho_w)))          lambda = lam

    Defaults: beta = 0.1, lam = 50, pairs = best_vs_random, seed = 0, order_by = auto.
    """
    p = make_pairs(x, pairs, seed, order_by)
    rho = logratios(x)
    rho_w, rho_l = p.take(rho)
    loss = -F.logsigmoid(beta * (rho_w - rho_l - lam * torch.relu(-rho_w)))
    return Terms(*group_mean(loss, p.mask), implicit=beta * rho)


def kto(
    x: ObjectiveInputs, *, beta: float, desirable_weight: float, undesirable_weight: float
) -> Terms:
    """Kahneman-Tversky Optimization (Ethayarajh et al. 2024) on binary labels, any K >= 1.

        z          = sg(max(0, KL estimate))
        desirable:   lambda_D * (1 - sigma(beta * (rho - z)))
        undesirable: lambda_U * (1 - sigma(beta * (z - rho)))

    The KL estimate is the mean of ``inputs.kl_logratios`` over valid entries when the trainer supplies the
    log-ratios of mismatched (x, y') pairs (the paper's estimator), else the mean of rho over the batch's
    valid responses (METHODS.md's default). It is taken over the local batch: under data parallelism each
    process uses its own shard's estimate. A group's loss is the mean over its responses.

    Defaults: beta = 0.1, desirable_weight = undesirable_weight = 1.0.
    """
    rho = logratios(x)
    source = rho if x.kl_logratios is None else x.kl_logratios
    kl = torch.where(x.mask, source.detach(), 0.0).sum() / x.mask.sum().clamp(min=1)
    z = kl.clamp(min=0.0)
    desirable = x.labels == 1
    loss = torch.where(
        desirable,
        desirable_weight * (1.0 - torch.sigmoid(beta * (rho - z))),
        undesirable_weight * (1.0 - torch.sigmoid(beta * (z - rho))),
    )
    return Terms(*group_mean(loss, x.mask), implicit=beta * rho)
