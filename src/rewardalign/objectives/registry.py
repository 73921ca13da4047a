"""The registry: every objective by name, what it needs, its hyperparameters, and how it is computed.

    hparams = validate_hparams("dro", {"beta": 0.1})       # once, before training: checked, defaults filled
    loss, metrics = compute_objective("dro", inputs, **hparams)               # every step: no host sync
    loss, metrics = compute_objective("dro", inputs, check=True, **hparams)  # tests, debugging, first batch

The contract. ``validate_hparams(name, hparams)`` (also ``get_objective(name).validate``) checks a config
without tensors and returns the resolved hyperparameters (defaults filled, values coerced); callers run it
once. ``compute_objective(name, inputs, **hparams)`` trusts them: it fills missing names with their defaults
but does not re-check values, and it never synchronises with the device (no ``.item()``, no tensor used as
a Python bool, no boolean-mask indexing), so a training step does not wait for the GPU. It still refuses, for
free, what it can see without reading a tensor: an unknown hyperparameter name, a missing input field, an
ensemble given to an objective that takes one reward model, groups narrower than the objective's ``min_k``,
and groups of more than two responses without any feedback to rank them (``order_by='position'`` lifts that).
``check=True`` adds what needs the tensors' values, with clear :class:`ObjectiveError` messages: hyperparameter
values (``validate_hparams``), and :func:`check_inputs` (a group with fewer than ``min_k`` responses,
n_tokens < 1, NaN/inf rewards, scores outside [0, 1], labels other than 0/1). Those checks synchronise.

Before training, the trainer and the CLI also ask ``get_objective(name).requirements(hparams)`` (a
:class:`Needs`) which inputs to build. Every objective accepts ``nll_weight`` (default 0): the loss of each
group gains ``nll_weight * (-l_w / n_w)``, the mean token NLL of the group's best response (the "RPO"/"SFT"
term of TRL and NeMo); when labels are given, a best response labelled undesirable gets no NLL term.

Reduction: an objective gives one loss per group (the mean over its valid pairs or responses); the batch
loss is the mean over the groups that have at least one valid pair or response. A batch without any is a
loss of 0 that still backpropagates (to zero gradients). Metrics are detached 0-dim tensors on the inputs'
device (see :mod:`rewardalign.objectives.metrics`; NaN where a metric has nothing to average in the batch).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from rewardalign.objectives import distill, drdo, listwise, pairwise, pointwise, rloo
from rewardalign.objectives.core import Terms, prepare
from rewardalign.objectives.inputs import ObjectiveInputs
from rewardalign.objectives.metrics import compute_metrics, masked_mean
from rewardalign.objectives.pairs import ORDERINGS, PAIRINGS, best_index, order_key


class ObjectiveError(ValueError):
    """A bad objective name, hyperparameter or input; the message names the objective and what it needs."""


@dataclass(frozen=True)
class Needs:
    """What an objective reads from :class:`ObjectiveInputs`, besides ``policy_logps``, ``mask``, ``n_tokens``.

    reference:    ``ref_logps`` is required.
    rewards:      ``rewards`` is required.
    scores:       ``scores`` is required, with values in [0, 1].
    labels:       ``labels`` is required, with values in {0, 1}.
    prompt_logps: ``prompt_policy_logps`` and ``prompt_ref_logps`` are required.
    min_k:        every non-empty group needs at least this many valid responses.
    ensemble:     ``rewards`` may be an ensemble [M, B, K]; otherwise only [B, K] is accepted.
    optional:     further input fields the objective uses when they are given.
    """

    reference: bool = True
    rewards: bool = False
    scores: bool = False
    labels: bool = False
    prompt_logps: bool = False
    min_k: int = 1
    ensemble: bool = False
    optional: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = ["policy_logps"]
        if self.reference:
            parts.append("ref_logps")
        if self.rewards:
            parts.append("rewards [M, B, K] or [B, K]" if self.ensemble else "rewards [B, K]")
        if self.scores:
            parts.append("scores in [0, 1]")
        if self.labels:
            parts.append("labels in {0, 1}")
        if self.prompt_logps:
            parts.append("prompt_policy_logps and prompt_ref_logps")
        parts.append(f"at least {self.min_k} response{'s' if self.min_k > 1 else ''} per group")
        if self.optional:
            parts.append(f"optionally {', '.join(self.optional)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Param:
    """A hyperparameter: its default, its type (float, int, bool or str), a check and the rule it states."""

    default: Any
    kind: type
    rule: str
    check: Callable[[Any], bool] = lambda value: True
    auto: bool = False
    """Also accepts ``"auto"``: a value the trainer estimates from the data before training (see the objective)."""

    def coerce(self, value: Any) -> Any:
        """``value`` as this parameter's type, or ValueError saying which rule it breaks."""
        if self.auto and value == "auto":
            return value
        if self.kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{value} is not finite")
        elif not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            raise ValueError(f"{value!r} is not of type {self.kind.__name__}")
        if not self.check(value):
            raise ValueError(f"{value!r} is not {self.rule}")
        return value


def _real(default: float) -> Param:
    return Param(float(default), float, "a real number")


def _positive(default: float) -> Param:
    return Param(float(default), float, "> 0", lambda v: v > 0)


def _nonnegative(default: float) -> Param:
    return Param(float(default), float, ">= 0", lambda v: v >= 0)


def _flag(default: bool) -> Param:
    return Param(default, bool, "true or false")


def _choice(default: str, options: tuple[str, ...]) -> Param:
    return Param(default, str, f"one of {', '.join(options)}", lambda v: v in options)


_SEED = Param(0, int, "an integer in [0, 2^63)", lambda v: 0 <= v < 2**63)
_PAIRING = {"pairs": _choice("best_vs_random", PAIRINGS), "seed": _SEED, "order_by": _choice("auto", ORDERINGS)}
_NLL = {"nll_weight": _nonnegative(0.0)}


@dataclass(frozen=True)
class Objective:
    """One registered objective.

    name:      its registry name.
    fn:        ``fn(prepared_inputs, **hparams) -> Terms`` (one loss per group plus what the metrics need).
    needs:     its :class:`Needs` under the default hyperparameters.
    params:    its hyperparameters (``nll_weight`` included) as :class:`Param`.
    needs_for: for the objectives whose needs depend on a hyperparameter: validated hparams -> Needs.
    """

    name: str
    fn: Callable[..., Terms]
    needs: Needs
    params: Mapping[str, Param]
    needs_for: Callable[[dict[str, Any]], Needs] | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        return {key: param.default for key, param in self.params.items()}

    @property
    def doc(self) -> str:
        """The formula, the paper and equation, the defaults and the ambiguities resolved."""
        return inspect.getdoc(self.fn) or ""

    def validate(self, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The defaults updated with ``hparams``, each checked; an unknown name is an error."""
        hparams = dict(hparams or {})
        unknown = sorted(set(hparams) - set(self.params))
        if unknown:
            accepted = ", ".join(f"{key}={param.default!r}" for key, param in self.params.items())
            raise ObjectiveError(
                f"objective {self.name!r} has no hyperparameter {', '.join(map(repr, unknown))}; "
                f"it accepts: {accepted}"
            )
        merged = self.defaults
        for key, value in hparams.items():
            try:
                merged[key] = self.params[key].coerce(value)
            except ValueError as error:
                raise ObjectiveError(
                    f"objective {self.name!r}: hyperparameter {key!r} must be {self.params[key].rule}; {error}"
                ) from None
        return merged

    def requirements(self, hparams: Mapping[str, Any] | None = None) -> Needs:
        """What the objective needs from its inputs under ``hparams`` (validated, defaults filled)."""
        return self._needs(self.validate(hparams))

    def _needs(self, hparams: dict[str, Any]) -> Needs:
        return self.needs if self.needs_for is None else self.needs_for(hparams)

    def __call__(
        self, inputs: ObjectiveInputs, *, check: bool = False, **hparams: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar loss, metrics) of the batch ``inputs``; see the module docstring for ``check``. A
        hyperparameter still ``"auto"`` is an error: the trainer resolves it from the data first."""
        if check or not hparams.keys() <= self.params.keys():
            hparams = self.validate(hparams)  # an unknown name is always an error, with the accepted names
        else:
            hparams = {**self.defaults, **hparams}
        unresolved = [key for key, value in hparams.items() if self.params[key].auto and value == "auto"]
        if unresolved:
            raise ObjectiveError(f"objective {self.name!r}: {', '.join(unresolved)} 'auto' is estimated from the "
                                 f"training data before training (run_align does it); give a number here")
        needs = self._needs(hparams)
        if check:
            check_inputs(self.name, needs, inputs)
        else:
            check_structure(self.name, needs, inputs)
        x = prepare(inputs)
        nll_weight = hparams.pop("nll_weight")
        order_by = hparams.get("order_by", "auto")
        try:
            terms = self.fn(x, **hparams)
        except ValueError as error:
            raise ObjectiveError(f"objective {self.name!r}: {error}") from error
        metrics = compute_metrics(x, terms, order_by)
        group_loss = terms.loss
        if nll_weight > 0:
            nll, has_nll = _best_response_nll(x, order_by)
            group_loss = group_loss + nll_weight * torch.where(has_nll, nll, 0.0)
            metrics["nll"] = masked_mean(nll.detach(), has_nll)
        loss = torch.where(terms.valid, group_loss, 0.0).sum() / terms.valid.sum().clamp(min=1)
        return loss, metrics


def _best_response_nll(x: ObjectiveInputs, order_by: str) -> tuple[torch.Tensor, torch.Tensor]:
    """([B] mean token NLL of each group's best response, [B] whether the group gets the term)."""
    best = best_index(order_key(x, order_by), x.mask)
    nll = (-x.policy_logps.gather(1, best) / x.n_tokens.gather(1, best)).squeeze(1)
    has_nll = x.mask.any(dim=1)
    if x.labels is not None:
        has_nll = has_nll & (x.labels.gather(1, best).squeeze(1) == 1)
    return nll, has_nll


def _failure(name: str, needs: Needs) -> Callable[[str], None]:
    def fail(problem: str) -> None:
        raise ObjectiveError(f"objective {name!r}: {problem}. It needs: {needs.describe()}")

    return fail


def _check_fields(name: str, needs: Needs, inputs: ObjectiveInputs) -> None:
    fail = _failure(name, needs)
    required = {
        "ref_logps": needs.reference,
        "rewards": needs.rewards,
        "scores": needs.scores,
        "labels": needs.labels,
        "prompt_policy_logps": needs.prompt_logps,
        "prompt_ref_logps": needs.prompt_logps,
    }
    missing = [field for field, needed in required.items() if needed and getattr(inputs, field) is None]
    if missing:
        fail(f"missing input {', '.join(missing)}")
    if inputs.is_ensemble and not needs.ensemble:
        fail(f"rewards are an ensemble of {inputs.rewards.shape[0]} models, but it takes one reward per response")


def check_structure(name: str, needs: Needs, inputs: ObjectiveInputs) -> None:
    """Raise :class:`ObjectiveError` for what ``inputs`` lack, judged without reading any tensor's values.

    Missing fields, an ensemble where one reward model is expected, and a batch whose groups all have fewer
    than ``needs.min_k`` responses (the padded width K is below it). Never synchronises with the device.
    """
    _check_fields(name, needs, inputs)
    width = inputs.mask.shape[1]
    if width < needs.min_k:
        _failure(name, needs)(f"the groups have at most {width} response(s)")


def check_inputs(name: str, needs: Needs, inputs: ObjectiveInputs) -> None:
    """What :func:`check_structure` checks, more precisely, and the checks that read values (these synchronise).

    Raise :class:`ObjectiveError` if a field is missing, an ensemble is given where one reward model is
    expected, a non-empty group has fewer than ``needs.min_k`` responses, a response has n_tokens < 1,
    rewards, scores or labels are NaN or infinite at a valid response, scores lie outside [0, 1] or labels are
    not 0/1 (for objectives that read them).
    """
    _check_fields(name, needs, inputs)
    fail = _failure(name, needs)
    mask = inputs.mask
    sizes = inputs.group_sizes
    short = ((sizes > 0) & (sizes < needs.min_k)).nonzero().flatten()
    if len(short):
        row = int(short[0])
        fail(f"group {row} has {int(sizes[row])} response(s)")
    if bool((mask & (inputs.n_tokens < 1)).any()):
        fail("a response has fewer than one token (n_tokens < 1)")
    for field in ("rewards", "scores", "labels"):
        value = getattr(inputs, field)
        if value is None:
            continue
        valid = value[mask.expand_as(value)]
        if not bool(torch.isfinite(valid).all()):
            fail(f"{field} hold a NaN or infinite value at a valid response")
        if field == "scores" and needs.scores and bool(((valid < 0) | (valid > 1)).any()):
            fail(f"scores must lie in [0, 1], got values in [{valid.min().item():g}, {valid.max().item():g}]")
        if field == "labels" and needs.labels and not bool(((valid == 0) | (valid == 1)).all()):
            fail("labels must be 0 (undesirable) or 1 (desirable)")


def _objective(name: str, fn: Callable[..., Terms], needs: Needs, needs_for=None, **params: Param) -> Objective:
    return Objective(name, fn, needs, {**params, **_NLL}, needs_for)


_PAIRWISE = Needs(reference=True, min_k=2, optional=("rewards", "scores", "labels", "group_ids"))
_REFERENCE_FREE = replace(_PAIRWISE, reference=False)
_DISTILL = Needs(reference=True, rewards=True, min_k=2)
_SPO = Needs(reference=True, min_k=2, optional=("rewards", "scores", "labels"))
_DRO = Needs(reference=True, rewards=True, prompt_logps=True)


def _dro_needs(hparams: dict[str, Any]) -> Needs:
    return replace(_DRO, prompt_logps=hparams["prompt_normalization"])


OBJECTIVES: Mapping[str, Objective] = {
    objective.name: objective
    for objective in (
        _objective(
            "dpo", pairwise.dpo, _PAIRWISE, beta=_positive(0.1),
            label_smoothing=Param(0.0, float, "in [0, 0.5)", lambda v: 0 <= v < 0.5), **_PAIRING,
        ),
        _objective("ipo", pairwise.ipo, _PAIRWISE, beta=_positive(0.1), **_PAIRING),
        _objective("slic", pairwise.slic, _REFERENCE_FREE, delta=_real(1.0), lam=_nonnegative(0.1), **_PAIRING),
        _objective("simpo", pairwise.simpo, _REFERENCE_FREE, beta=_positive(2.0), gamma=_real(0.5), **_PAIRING),
        _objective("orpo", pairwise.orpo, _REFERENCE_FREE, lam=_nonnegative(0.1), **_PAIRING),
        _objective("cal_dpo", pairwise.cal_dpo, _PAIRWISE, beta=_positive(0.1), **_PAIRING),
        _objective("dpop", pairwise.dpop, _PAIRWISE, beta=_positive(0.1), lam=_nonnegative(50.0), **_PAIRING),
        _objective(
            "kto", pairwise.kto, Needs(reference=True, labels=True, optional=("kl_logratios",)),
            beta=_positive(0.1), desirable_weight=_nonnegative(1.0), undesirable_weight=_nonnegative(1.0),
        ),
        _objective("rpo", distill.rpo, _DISTILL, beta=_positive(0.1), eta=_real(1.0)),
        _objective("rpo_fwd_kl", distill.rpo_fwd_kl, _DISTILL, beta=_positive(0.1), eta=_real(1.0)),
        _objective("rpo_bwd_kl", distill.rpo_bwd_kl, _DISTILL, beta=_positive(0.1), eta=_real(1.0)),
        _objective(
            "edpo", distill.edpo, replace(_DISTILL, ensemble=True), beta=_positive(0.1), eta=_real(1.0),
            ensemble_reduce=_choice("max", ("max", "mean")),
        ),
        _objective(
            "dro", pointwise.dro, _DRO, _dro_needs,
            beta=_positive(0.1), z0=Param(0.0, float, "a real number or 'auto'", auto=True),
            prompt_normalization=_flag(False), baseline=_choice("group_mean", ("none", "group_mean")),
        ),
        _objective(
            "drdo", drdo.drdo, Needs(reference=False, rewards=True, min_k=2),
            beta=_positive(0.1), alpha=_nonnegative(0.1), gamma=_nonnegative(2.0),
            length_normalize=_flag(False), focal_form=_choice("unlikelihood", ("unlikelihood", "paper")),
            order_by=_choice("auto", ORDERINGS),
        ),
        _objective("una_pair", pairwise.una_pair, _PAIRWISE, beta=_positive(0.1), **_PAIRING),
        _objective("una_binary_mse", pointwise.una_binary_mse, Needs(labels=True), beta=_positive(0.01)),
        _objective("una_binary_bce", pointwise.una_binary_bce, Needs(labels=True), beta=_positive(0.01)),
        _objective("una_score_mse", pointwise.una_score_mse, Needs(scores=True), beta=_positive(0.03)),
        _objective("una_reward_mse", pointwise.una_reward_mse, Needs(rewards=True), beta=_positive(0.1)),
        _objective("spo", listwise.spo, _SPO, beta=_positive(1.0), alpha=_positive(1.0)),
        _objective(
            "spo_abs", listwise.spo_abs, _SPO, beta=_positive(1.0), alpha=_positive(1.0),
            abs_form=_choice("sigmoid", ("sigmoid", "logsigmoid")),
        ),
        _objective("infonca", listwise.infonca, _SPO, beta=_positive(1.0), alpha=_positive(1.0)),
        _objective("nca", listwise.nca, _SPO, beta=_positive(1.0), alpha=_positive(1.0)),
        _objective("nca_pair", pairwise.nca_pair, _PAIRWISE, beta=_positive(0.1), **_PAIRING),
        _objective(
            "rloo", rloo.rloo, Needs(rewards=True, min_k=2),
            lambda h: Needs(reference=h["kl_coef"] > 0, rewards=True, min_k=2), kl_coef=_nonnegative(0.05),
        ),
    )
}


def get_objective(name: str) -> Objective:
    """The registered objective ``name``; an unknown name is an error listing the available ones."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ObjectiveError(f"unknown objective {name!r}; available: {', '.join(OBJECTIVES)}") from None


def validate_hparams(name: str, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check ``hparams`` for objective ``name`` without tensors; return the resolved hyperparameters.

    The defaults updated with ``hparams``, each value coerced to its type and checked; an unknown objective
    or hyperparameter is an :class:`ObjectiveError`. Run it once before training and pass the result to every
    :func:`compute_objective` call, which does not re-check values.
    """
    return get_objective(name).validate(hparams)


def compute_objective(
    name: str, inputs: ObjectiveInputs, *, check: bool = False, **hparams: Any
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(scalar loss, metrics) of objective ``name`` on ``inputs``; metrics are detached 0-dim tensors.

    ``hparams`` are taken as :func:`validate_hparams` returned them (missing names get their defaults;
    values are not re-checked) and the call never synchronises with the device. ``check=True`` validates
    the hyperparameters and runs :func:`check_inputs` on the tensors' values, at the cost of a few host-device
    synchronisations: for tests, debugging, or a first batch.
    """
    return get_objective(name)(inputs, check=check, **hparams)


__all__ = [
    "OBJECTIVES",
    "Needs",
    "Objective",
    "ObjectiveError",
    "Param",
    "check_inputs",
    "check_structure",
    "compute_objective",
    "get_objective",
    "validate_hparams",
]
