"""``AlignTrainer``: any objective of the registry on batches of groups, built on ``transformers.Trainer``.

Accumulation, mixed precision, checkpoints and resume, schedules, ``report_to`` and multi-process training
through ``accelerate`` are the ecosystem's; this class only turns a batch of groups into the objective's
[B, K] inputs, logs the objective's metrics (TRL's names) and evaluates implicit-reward ranking accuracy.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from ..data.collate import GroupCollator, GroupDataset, LengthGroupedSampler, row_length
from ..modeling.logprobs import GroupLogps, batch_logps
from ..objectives import ObjectiveInputs, compute_objective, get_objective, validate_hparams
from .common import disable_dropout


def ranking_accuracy(implicit: torch.Tensor, explicit: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fraction of ordered pairs (i, j) of a group with explicit_i > explicit_j whose implicit rewards agree
    (implicit_i > implicit_j), over all such pairs of the batch. NaN when the batch has no such pair."""
    valid = mask[:, :, None] & mask[:, None, :]
    e = torch.where(mask, explicit, 0.0)
    better = (e[:, :, None] > e[:, None, :]) & valid
    agree = (implicit[:, :, None] > implicit[:, None, :]) & better
    pairs = better.sum()
    return agree.sum() / pairs if pairs > 0 else torch.tensor(float("nan"))


def explicit_order(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The explicit feedback that orders a group's responses: rewards, else scores, else labels; a K = 2 group
    without any feedback is a (chosen, rejected) pair."""
    for key in ("rewards", "scores", "binary_labels"):
        if key in batch:
            return batch[key]
    mask = batch["mask"]
    if mask.shape[1] == 2:
        return torch.tensor([1.0, 0.0], device=mask.device).expand_as(mask)
    return None


class AlignTrainer(Trainer):
    """Offline alignment with objective ``objective`` and hyperparameters ``objective_args``.

    ``reference`` is an object with ``logps(policy, batch, with_prompt) -> GroupLogps`` (live copy or PEFT
    base) or None when the batches carry precomputed ``ref_logps`` or the objective is reference-free.
    ``layout`` / ``pack_length``: the batch layout (:mod:`rewardalign.data.collate`: plain, shared_prompt,
    packed, packed_shared_prompt); every layout gives the same log-probs.
    """

    def __init__(
        self,
        model: nn.Module,
        args: Any,
        objective: str,
        train_dataset: GroupDataset,
        eval_dataset: GroupDataset | None = None,
        objective_args: dict[str, Any] | None = None,
        reference: Any = None,
        processing_class: Any = None,
        logprob_chunk_size: int = 1024,
        group_by_length: bool = False,
        dropout: bool = False,
        callbacks: list | None = None,
        layout: str = "plain",
        pack_length: int | None = None,
    ):
        self.objective_name = objective
        self.objective = get_objective(objective)
        self.objective_args = validate_hparams(objective, objective_args or {})
        self.needs = self.objective.requirements(self.objective_args)
        self.reference = reference
        self.logprob_chunk_size = logprob_chunk_size
        self.group_by_length = group_by_length
        self.layout = layout
        if not dropout:
            disable_dropout(model)
        pad_id = getattr(processing_class, "pad_token_id", None)
        if pad_id is None:
            pad_id = model.config.pad_token_id or 0
        super().__init__(
            model=model,
            args=args,
            data_collator=GroupCollator(pad_id, layout, pack_length,
                                        getattr(model.config, "_attn_implementation", None)),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
        )
        self.model_accepts_loss_kwargs = False  # the objective's loss is a mean over groups
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.response_tokens_seen = 0

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.group_by_length:
            lengths = [row_length(g, self.layout) for g in dataset.groups]
            return LengthGroupedSampler(lengths, self.args.per_device_train_batch_size, seed=self.args.seed)
        return super()._get_train_sampler(dataset)

    def objective_inputs(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveInputs:
        """Policy (and reference) log-probs of the batch, laid out [B, K] with its feedback."""
        needs = self.needs
        policy = batch_logps(model, batch, self.logprob_chunk_size, with_prompt=needs.prompt_logps)
        ref: GroupLogps | None = None
        if needs.reference:
            if "ref_logps" in batch:
                ref = GroupLogps(batch["ref_logps"], policy.n_tokens, batch.get("prompt_ref_logps"))
            elif self.reference is not None:
                ref = self.reference.logps(model, batch, needs.prompt_logps)
            else:
                raise ValueError(
                    f"objective '{self.objective_name}' needs reference log-probs: precompute them or pass a reference"
                )
        rewards = batch.get("reward_members") if needs.ensemble and "reward_members" in batch else batch.get("rewards")
        return ObjectiveInputs(
            policy_logps=policy.logps,
            mask=batch["mask"],
            n_tokens=policy.n_tokens,
            ref_logps=None if ref is None else ref.logps.to(policy.logps.dtype),
            rewards=rewards,
            scores=batch.get("scores"),
            labels=batch.get("binary_labels"),
            prompt_policy_logps=policy.prompt_logps,
            prompt_ref_logps=None if ref is None else ref.prompt_logps,
            group_ids=batch.get("group_ids"),
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        obj_inputs = self.objective_inputs(model, inputs)
        loss, metrics = compute_objective(self.objective_name, obj_inputs, **self.objective_args)
        mode = "train" if model.training else "eval"
        store = self._metrics[mode]
        for name, value in metrics.items():
            store[name].append(float(value))
        if mode == "train":
            self.response_tokens_seen += int(obj_inputs.n_tokens[obj_inputs.mask].sum())
        else:
            order = explicit_order(inputs)
            if order is not None:
                accuracy = ranking_accuracy(self.implicit_rewards(obj_inputs), order, obj_inputs.mask)
                if not torch.isnan(accuracy):
                    store["ranking_accuracy"].append(float(accuracy))
        return (loss, metrics) if return_outputs else loss

    def implicit_rewards(self, inputs: ObjectiveInputs) -> torch.Tensor:
        """beta * (l - l_ref) with a reference; the length-normalised log-prob l / n without one."""
        if inputs.ref_logps is not None:
            beta = float(self.objective_args.get("beta", 1.0))
            return (beta * (inputs.policy_logps - inputs.ref_logps)).detach()
        return (inputs.policy_logps / inputs.n_tokens.clamp(min=1)).detach()

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for name, values in self._metrics[mode].items():
            if values:
                logs[prefix + name] = sum(values) / len(values)
        self._metrics[mode].clear()
        super().log(logs, start_time)
