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
so responses to different prompts compare.

Which metrics a batch reports depends only on which inputs it carries and on the objective (never on the
values), so computing them never synchronises with the device. A metric with nothing to average on a batch
(e.g. ``rewards/rejected`` on a batch of labels without an undesirable response, or ``rewards/accuracies``
when every group ties) is NaN (0/0). All values are detached 0-dim tensors on the inputs' device; a caller
that logs them averages over steps while skipping NaN, e.g. with :func:`mean_metrics`, which converts a
whole logging window to floats with one host-device transfer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from rewardalign.objectives.core import Terms
from rewardalign.objectives.inputs import ObjectiveInputs
from rewardalign.objectives.pairs import best_index, explicit_feedback, order_key, worst_index


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is True, a 0-dim tensor; NaN when ``mask`` selects nothing."""
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
        metrics[f"rewards/{name}"] = masked_mean(u, selected)
        metrics[f"logps/{name}"] = masked_mean(logps, selected)
    metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    metrics["rewards/accuracies"] = masked_mean(agrees.to(u.dtype), compared)
    explicit = x.rewards if x.rewards is not None else x.scores
    if explicit is not None:
        metrics["rewards/explicit_mean"] = masked_mean(explicit.detach(), x.mask.expand_as(explicit))
    if terms.target_err is not None:
        metrics["rewards/target_mse"] = masked_mean(terms.target_err.detach(), terms.valid)
    return metrics


def mean_metrics(history: Mapping[str, Sequence[torch.Tensor | float]]) -> dict[str, float]:
    """Per-metric mean over logged steps, skipping NaN, as floats: one host-device transfer per device.

    ``history`` maps a metric name to its per-step values (0-dim tensors as :func:`compute_objective` returns
    them, or floats; one kind per name). A metric that is NaN at every step, or has no step, is left out.
    """
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, values in history.items():
        if len(values) > 0:
            mean = torch.nanmean(torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values]))
            by_device.setdefault(mean.device, []).append((name, mean))
    means: dict[str, float] = {}
    for items in by_device.values():
        means.update(zip([name for name, _ in items], torch.stack([mean for _, mean in items]).tolist()))
    return {name: means[name] for name in history if name in means and not math.isnan(means[name])}
