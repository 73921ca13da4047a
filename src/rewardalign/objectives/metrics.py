"""The metrics every objective reports, with TRL's names so that dashboards carry over.

``rewards/chosen`` / ``rewards/rejected``: mean implicit reward of the chosen and rejected responses;
``rewards/margins``: their difference; ``rewards/accuracies``: how often the implicit reward orders a
(chosen, rejected) pair as the explicit feedback does; ``logps/chosen`` / ``logps/rejected``: their summed
log-probs; ``rewards/explicit_mean``: mean explicit reward (or score) of the valid responses;
``rewards/target_mse``: mean squared error of the implicit quantity to its explicit target, for objectives
that regress onto one.

Chosen and rejected. In a group ranked by rewards, scores or its order, they are the best and the worst
response of each group with a strict order between them (pairs, K = 4 groups alike). When binary labels
are the only feedback (KTO, UNA binary; often K = 1 groups) they are every desirable and every undesirable
response, and the accuracy runs over all (desirable, undesirable) pairs of the batch: labels are absolute,
so responses to different prompts compare. A metric with nothing to average on a batch (e.g.
``rewards/rejected`` on a batch without an undesirable response) is left out rather than reported as 0.
All values are detached scalar tensors.
"""

from __future__ import annotations

import torch

from rewardalign.objectives.core import Terms
from rewardalign.objectives.inputs import ObjectiveInputs
from rewardalign.objectives.pairs import best_index, explicit_feedback, order_key, worst_index


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, values, 0.0).sum() / mask.sum()


def compute_metrics(x: ObjectiveInputs, terms: Terms, order_by: str = "auto") -> dict[str, torch.Tensor]:
    """Metrics of one batch; ``x`` are the prepared inputs, ``order_by`` the objective's ranking."""
    u = terms.implicit.detach()
    logps = x.policy_logps.detach()
    feedback = explicit_feedback(x) if order_by == "auto" else None
    if feedback is not None and feedback[0] == "labels":
        chosen = x.mask & (x.labels == 1)
        rejected = x.mask & (x.labels == 0)
        compared = chosen.flatten()[:, None] & rejected.flatten()[None, :]
        agrees = u.flatten()[:, None] > u.flatten()[None, :]
    else:
        key = order_key(x, order_by)
        best, worst = best_index(key, x.mask), worst_index(key, x.mask)
        compared = x.mask.any(dim=1, keepdim=True) & (key.gather(1, best) > key.gather(1, worst))
        columns = torch.arange(x.mask.shape[1], device=x.mask.device)
        chosen = compared & (columns == best)
        rejected = compared & (columns == worst)
        agrees = u.gather(1, best) > u.gather(1, worst)

    metrics: dict[str, torch.Tensor] = {}
    for name, selected in (("chosen", chosen), ("rejected", rejected)):
        if selected.any():
            metrics[f"rewards/{name}"] = _masked_mean(u, selected)
            metrics[f"logps/{name}"] = _masked_mean(logps, selected)
    if chosen.any() and rejected.any():
        metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    if compared.any():
        metrics["rewards/accuracies"] = _masked_mean(agrees.float(), compared)
    explicit = x.rewards if x.rewards is not None else x.scores
    if explicit is not None:
        metrics["rewards/explicit_mean"] = _masked_mean(explicit.detach(), x.mask.expand_as(explicit))
    if terms.target_err is not None and terms.valid.any():
        metrics["rewards/target_mse"] = _masked_mean(terms.target_err.detach(), terms.valid)
    return metrics
