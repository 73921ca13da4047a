"""Offline alignment: ``AlignTrainer`` (any objective of the registry on batches of groups) and ``run_align``.

``run_align`` checks everything that needs no model first (objective, hyperparameters, model path, data and what
the objective needs of it), so a bad config fails in seconds with a message that says what to change. The run
folder (``output_dir``) gets the ``save_pretrained`` model (or adapter), the resolved config, ``metrics.jsonl``
and ``summary.json``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import set_seed

from ..config import ConfigError, as_config, check_data_path, check_model_path, flat_dict
from ..data.collate import LAYOUTS, GroupDataset
from ..fingerprint import model_fingerprint
from ..modeling.loading import apply_lora, load_causal_lm, load_tokenizer
from ..modeling.logprobs import GroupLogps, batch_logps
from ..modeling.reference import LiveReference, PeftReference, precompute_reference, reference_cache_key
from ..objectives import ObjectiveInputs, compute_objective, get_objective, validate_hparams
from ..runs import RunFolder, Timer, training_arguments
from .base import GroupTrainer
from .configs import AlignConfig
from .data import check_data_fits, check_objective, prepare_training_data, tokenize_config
from .model_card import publish_run


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


class AlignTrainer(GroupTrainer):
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
        super().__init__(model, args, train_dataset, eval_dataset, processing_class, dropout=dropout,
                         group_by_length=group_by_length, layout=layout, pack_length=pack_length, callbacks=callbacks)

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
        self.record(metrics, model.training)
        if model.training:
            self.count_tokens(obj_inputs.n_tokens, obj_inputs.mask)
        else:
            order = explicit_order(inputs)
            if order is not None:
                accuracy = ranking_accuracy(self.implicit_rewards(obj_inputs), order, obj_inputs.mask)
                self.record({"ranking_accuracy": accuracy}, training=False)
        return (loss, metrics) if return_outputs else loss

    def implicit_rewards(self, inputs: ObjectiveInputs) -> torch.Tensor:
        """beta * (l - l_ref) with a reference; the length-normalised log-prob l / n without one."""
        if inputs.ref_logps is not None:
            beta = float(self.objective_args.get("beta", 1.0))
            return (beta * (inputs.policy_logps - inputs.ref_logps)).detach()
        return (inputs.policy_logps / inputs.n_tokens.clamp(min=1)).detach()


def resolve_auto_hparams(hparams: dict[str, Any], groups: Sequence[Any]) -> dict[str, Any]:
    """The hyperparameters given as ``"auto"``, estimated from the training groups once before training (the
    objective itself only sees numbers). The one such hyperparameter is dro's ``z0``: the mean reward of every
    training response."""
    if hparams.get("z0") != "auto":
        return hparams
    rewards = [float(r) for g in groups for r in (g.rewards or [])]
    if not rewards:
        raise ConfigError("z0: auto is the mean reward of the training data, but it has no rewards")
    return hparams | {"z0": statistics.fmean(rewards)}


def run_align(cfg: AlignConfig | dict[str, Any], callbacks: list | None = None) -> dict[str, Any]:
    """Align ``cfg.model`` on ``cfg.data`` with ``cfg.objective``; returns the summary (also in the run folder).
    ``callbacks`` are added to the trainer's (``transformers.TrainerCallback``)."""
    cfg = as_config(AlignConfig, cfg, "align")
    timer = Timer()
    args = training_arguments(cfg.training, "align")
    objective_args = check_objective(cfg.objective, cfg.objective_args)
    if cfg.layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {cfg.layout!r}")
    if cfg.reference not in ("precompute", "live"):
        raise ConfigError(f"reference must be 'precompute' or 'live', got {cfg.reference!r}")
    check_model_path(cfg.model)
    folder = RunFolder(args, "align", cfg.overwrite_output_dir, inputs=(cfg.model,))
    tok_cfg = tokenize_config(cfg)
    needs = get_objective(cfg.objective).requirements(objective_args)

    for path in (cfg.data, cfg.eval_data):
        if path:
            check_data_path(path)
    tokenizer = load_tokenizer(cfg.model)  # the data are read and tokenised in one pass, then checked
    train_tok, eval_tok, tok_stats, drops = prepare_training_data(cfg, tokenizer, tok_cfg, args.seed)
    check_data_fits(cfg.objective, objective_args, train_tok, cfg.data)
    if eval_tok:
        check_data_fits(cfg.objective, objective_args, eval_tok, cfg.eval_data or cfg.data)
    if objective_args.get("z0") == "auto":  # groups built only for what is estimated from them
        objective_args = resolve_auto_hparams(objective_args, train_tok.feedback())

    set_seed(args.seed)

    model = load_causal_lm(cfg.model, cfg.torch_dtype, cfg.trust_remote_code, cfg.attn_implementation)
    reference = None
    cache_hit = None
    if needs.reference and cfg.reference == "precompute":
        settings = {"dtype": cfg.torch_dtype, "with_prompt": needs.prompt_logps}
        fingerprint = model_fingerprint(cfg.model)
        cache_hit = True
        for part in (train_tok, eval_tok):
            if not part:
                continue
            key = reference_cache_key(fingerprint, part, settings)
            hit = precompute_reference(
                model.to(args.device), part, tokenizer.pad_token_id, batch_size=args.per_device_eval_batch_size,
                chunk_size=cfg.logprob_chunk_size, with_prompt=needs.prompt_logps,
                cache_file=Path(cfg.cache_dir) / "reference" / f"{key}.safetensors", device=args.device,
                progress=not args.disable_tqdm,
            )
            cache_hit = cache_hit and hit
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora)
    if needs.reference and cfg.reference == "live":
        reference = PeftReference(cfg.logprob_chunk_size) if cfg.lora is not None else LiveReference(
            model, cfg.logprob_chunk_size)
        if isinstance(reference, LiveReference):
            reference.model.to(args.device)

    trainer = AlignTrainer(
        model=model,
        args=args,
        objective=cfg.objective,
        objective_args=objective_args,
        train_dataset=GroupDataset(train_tok),
        eval_dataset=GroupDataset(eval_tok) if eval_tok else None,
        reference=reference,
        processing_class=tokenizer,
        logprob_chunk_size=cfg.logprob_chunk_size,
        group_by_length=cfg.group_by_length,
        dropout=cfg.dropout,
        layout=cfg.layout,
        pack_length=cfg.pack_length,
        callbacks=callbacks,
    )
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    final_eval = trainer.evaluate() if eval_tok else {}
    trainer.save_model(args.output_dir)

    summary = {
        "objective": cfg.objective,
        "steps": trainer.state.global_step,
        "processes": args.world_size,
        "train_groups": len(train_tok),
        "eval_groups": len(eval_tok) if eval_tok else 0,
        "response_tokens": trainer.response_tokens_seen,
        "seconds": round(timer.seconds, 2),
        "train_loss": result.training_loss,
        "final_eval": final_eval,
        "reference": cfg.reference if needs.reference else "none (reference-free objective)",
        "reference_cache_hit": cache_hit,
        "tokenize": tok_stats.as_dict(),
        "dropped_rows": len(drops),
        "dropped_by_reason": drops.counts(),
    }
    if trainer.is_world_process_zero():
        publish_run(folder, flat_dict(cfg) | {"objective_args": objective_args},
                    replace(cfg, objective_args=objective_args), args, summary, "align", cfg.objective)
    return summary
