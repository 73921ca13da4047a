"""REINFORCE with a leave-one-out baseline (RLOO): the online RL baseline that UNA online (paper 003, Sec. 2.3.4)
is compared against. Sequence-level, with the KL penalty to the reference folded into the reward.

Source: Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
Feedback in LLMs" (ACL 2024); the leave-one-out baseline is Kool et al. 2019, "Buy 4 REINFORCE Samples, Get a
Baseline for Free!". This is a pure function of [B, K] tensors, so it is registered like every other objective;
its K responses must be samples of the CURRENT policy (online), else the gradient is not the policy gradient.
"""

from __future__ import annotations

import torch

from rewardalign.objectives.core import Terms, group_mean, logratios
from rewardalign.objectives.inputs import ObjectiveInputs


def leave_one_out_advantages(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A_k = r_k - mean_{j != k, j valid} r_j over each group's valid entries, [B, K]; 0 where padded and in
    groups of fewer than two valid responses (no baseline exists there).

    Equivalently A_k = K / (K - 1) * (r_k - mean_j r_j), so the advantages of a group sum to zero.
    """
    count = mask.sum(dim=1, keepdim=True)
    total = torch.where(mask, rewards, 0.0).sum(dim=1, keepdim=True)
    baseline = (total - rewards) / (count - 1).clamp(min=1)
    return torch.where(mask & (count >= 2), rewards - baseline, 0.0)


def rloo(x: ObjectiveInputs, *, kl_coef: float) -> Terms:
    """RLOO (Ahmadian et al. 2024; leave-one-out baseline of Kool et al. 2019), for K >= 2 samples of one prompt.

        r'_k  = r_k - kl_coef * sg(l_k - l_ref_k)              KL-penalised sequence reward
        A_k   = r'_k - 1/(K-1) * sum_{j != k} r'_j              leave-one-out advantage (detached)
        loss  = -1/K * sum_k A_k * l_k                          group loss; l_k with gradient

    The gradient of the loss is minus the REINFORCE estimate of grad E_y[r'(x, y)] with the unbiased
    leave-one-out baseline: a sample better than the mean of the others has its log-prob pushed up, a worse
    one down. The KL term is the sequence-level estimate log pi(y|x) - log pi_ref(y|x) of the sampled y,
    folded into the reward and detached (as in the paper, whose reward is r - beta * KL; ``kl_coef`` is that
    beta). ``kl_coef = 0`` needs no reference. The loss's VALUE is not a quantity to watch (the advantages sum
    to zero in each group, so it moves with the log-probs' spread); the mean reward of the samples is.

    Ambiguities resolved: the baseline is over the group's valid (unpadded) responses; a group with fewer than
    two is left out of the loss (``min_k = 2`` refuses it upfront); no advantage whitening (the paper uses
    none). The implicit reward in the metrics is kl_coef * rho (the KL-regularised policy's reward), or the
    policy's log-prob l when kl_coef = 0.

    Defaults: kl_coef = 0.05 (a common RLOO setting; the paper sweeps beta per task).
    """
    if kl_coef > 0:
        rho = logratios(x).detach()
        shaped = x.rewards - kl_coef * rho
        implicit = kl_coef * rho
    else:
        shaped = x.rewards
        implicit = x.policy_logps.detach()
    advantages = leave_one_out_advantages(shaped.detach(), x.mask)
    loss, valid = group_mean(-advantages * x.policy_logps, x.mask)
    return Terms(loss, valid & (x.mask.sum(dim=1) >= 2), implicit=implicit)
