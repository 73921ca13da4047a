"""Reward-model training on preference pairs: ``bt``, ``oracle``, ``likelihood`` and ``ensemble``, built on
``transformers.Trainer``.

Data: groups of any K, each reduced to its ordered preference pairs (:mod:`rewardalign.rewards.pairs`). A
batch is ``per_device_train_batch_size`` pairs, laid out by the group collator as 2 sequences per pair.
Held-out pairs (``eval_data`` or ``eval_fraction`` of the prompts) give the figures of 000/001 Table 1:
accuracy (r_w > r_l) and BT loss, logged as ``eval_accuracy`` and ``eval_bt_loss``.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import EvalPrediction, set_seed

from ..config import ConfigError, as_config, flat_dict
from ..data import DropReport, Group, load_groups
from ..data.collate import GroupDataset, collate_groups
from ..data.tokenize import TokenizedGroup, tokenize_groups
from ..modeling.loading import load_tokenizer
from ..rewards.config import RewardModelConfig
from ..rewards.losses import reward_model_loss
from ..rewards.models import (
    LikelihoodRewardModel,
    OracleRewardModel,
    build_reward_model,
    load_reward_model,
    write_ensemble_config,
    write_training_info,
)
from ..rewards.pairs import PairStats, bootstrap, build_pairs, split_by_prompt
from ..runs import RunFolder, Timer, training_arguments
from .base import GroupTrainer
from .model_card import publish_run

# ---- the trainer ----------------------------------------------------------------------------------------------


def pair_rewards(model: nn.Module, batch: dict[str, torch.Tensor],
                 with_nll: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(r_w [P], r_l [P], nll_w [P] or None) of a collated batch of pairs (K = 2 groups [w, l]); ``with_nll``
    needs an :class:`~rewardalign.rewards.models.OracleRewardModel`."""
    if isinstance(model, LikelihoodRewardModel):
        rewards = model(batch).float()
        return rewards[:, 0], rewards[:, 1], None
    is_chosen = batch["seq_slot"] == 0
    extra = {"response_mask": batch["response_mask"], "nll_rows": is_chosen} if with_nll else {}
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False, **extra)
    values = out.logits[:, 0].float()
    b = batch["mask"].shape[0]
    rewards = torch.zeros(b, 2, dtype=values.dtype, device=values.device)
    rewards = rewards.index_put((batch["seq_group"], batch["seq_slot"]), values)
    nll = None
    if with_nll:
        # the chosen rows come in group order (the collator writes group b's sequences together)
        nll = torch.zeros(b, dtype=out.nll.dtype, device=out.nll.device)
        nll = nll.index_put((batch["seq_group"][is_chosen],), out.nll)
    return rewards[:, 0], rewards[:, 1], nll


def pair_metrics(r_w: np.ndarray, r_l: np.ndarray, nll_w: np.ndarray | None = None) -> dict[str, float]:
    """Held-out figures from every pair's rewards: accuracy (r_w > r_l, a tie is wrong), BT loss
    mean(-logsig(r_w - r_l)), mean margin, reward mean and std, and the chosen responses' mean token NLL."""
    r_w = np.asarray(r_w, dtype=np.float64)
    r_l = np.asarray(r_l, dtype=np.float64)
    diff = r_w - r_l
    out = {
        "pairs": int(diff.size),
        "accuracy": float((diff > 0).mean()) if diff.size else math.nan,
        "bt_loss": float(np.logaddexp(0.0, -diff).mean()) if diff.size else math.nan,
        "margin": float(diff.mean()) if diff.size else math.nan,
        "reward_mean": float(np.concatenate([r_w, r_l]).mean()) if diff.size else math.nan,
        "reward_std": float(np.concatenate([r_w, r_l]).std()) if diff.size else math.nan,
    }
    if nll_w is not None and np.isfinite(nll_w).all():
        out["nll_chosen"] = float(np.mean(nll_w))
    return out


class RewardTrainer(GroupTrainer):
    """``Trainer`` for a reward model on batches of preference pairs.

    Loss: :func:`rewardalign.rewards.losses.reward_model_loss` (BT with ``margin`` and ``center_coefficient``;
    ``oracle_alpha`` > 0 adds the chosen responses' NLL). Evaluation goes through Trainer's loop (so it is
    gathered across processes): the predictions are (r_w, r_l, nll_w) per pair and ``compute_metrics`` turns
    them into ``eval_accuracy``, ``eval_bt_loss``, ``eval_margin``, ... ``model``: a sequence-classification
    reward model, an :class:`~rewardalign.rewards.models.OracleRewardModel` when ``oracle_alpha`` > 0, or with
    ``likelihood_beta`` a causal LM whose rewards are read by
    :class:`~rewardalign.rewards.models.LikelihoodRewardModel` (with offset 0).
    Checkpoints and resume are Trainer's (a bt checkpoint is a standard reward-model directory; an oracle one,
    the wrapper's state dict with its LM head).
    """

    def __init__(self, model: nn.Module, args: Any, train_dataset: GroupDataset,
                 eval_dataset: GroupDataset | None = None, processing_class: Any = None, *,
                 margin: float = 0.0, center_coefficient: float = 0.0, oracle_alpha: float = 0.0,
                 likelihood_beta: float | None = None, chunk_size: int = 1024, dropout: bool = False,
                 callbacks: list | None = None):
        self.margin = float(margin)
        self.center_coefficient = float(center_coefficient)
        self.oracle_alpha = float(oracle_alpha)
        self.likelihood_beta = likelihood_beta
        self.chunk_size = chunk_size
        super().__init__(model, args, train_dataset, eval_dataset, processing_class, dropout=dropout,
                         callbacks=callbacks, compute_metrics=self._compute_metrics)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.likelihood_beta is not None:
            model = LikelihoodRewardModel(model, self.likelihood_beta, chunk_size=self.chunk_size)
        r_w, r_l, nll = pair_rewards(model, inputs, self.oracle_alpha > 0)
        loss, metrics = reward_model_loss(r_w, r_l, margin=self.margin, center_coefficient=self.center_coefficient,
                                          nll_w=nll, oracle_alpha=self.oracle_alpha)
        if model.training:
            self.record(metrics, training=True)
        if return_outputs:
            nll_col = nll.detach() if nll is not None else torch.full_like(r_w, math.nan)
            return loss, torch.stack([r_w.detach(), r_l.detach(), nll_col], dim=-1)
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, preds = self.compute_loss(model, inputs, return_outputs=True)
        # Trainer computes metrics only where labels exist: a dummy "slot 0 is preferred" per pair.
        labels = torch.zeros(preds.shape[0], dtype=torch.long, device=preds.device)
        return loss.detach(), preds, labels

    @staticmethod
    def _compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        preds = np.asarray(prediction.predictions).reshape(-1, 3)
        nll = preds[:, 2] if np.isfinite(preds[:, 2]).all() else None
        return pair_metrics(preds[:, 0], preds[:, 1], nll)


# ---- evaluation outside the trainer ---------------------------------------------------------------------------


@torch.no_grad()
def score_pairs(model: nn.Module, pairs: list[TokenizedGroup], pad_token_id: int, batch_size: int = 32,
                with_nll: bool = False,
                device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(r_w, r_l, nll_w) of every pair, in order (the model is put in eval mode)."""
    model.eval()
    device = device or next(model.parameters()).device
    r_w, r_l, nll = [], [], []
    for start in range(0, len(pairs), batch_size):
        batch = collate_groups(pairs[start: start + batch_size], pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        w, lo, n = pair_rewards(model, batch, with_nll)
        r_w.append(w.cpu())
        r_l.append(lo.cpu())
        if n is not None:
            nll.append(n.cpu())
    return _cat(r_w), _cat(r_l), (_cat(nll) if with_nll else None)


def _cat(parts: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def evaluate_pairs(model: nn.Module, pairs: list[TokenizedGroup], pad_token_id: int, batch_size: int = 32,
                   with_nll: bool = False, device: str | torch.device | None = None) -> dict[str, float]:
    """:func:`pair_metrics` of ``model`` on ``pairs`` (with the chosen responses' NLL when ``with_nll``)."""
    r_w, r_l, nll = score_pairs(model, pairs, pad_token_id, batch_size, with_nll, device)
    return pair_metrics(r_w, r_l, nll)


# ---- the command's work -----------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    train_pairs: list[TokenizedGroup]
    eval_pairs: list[TokenizedGroup]
    train_stats: PairStats
    eval_stats: PairStats
    tokenize: dict[str, int]
    drops: DropReport


def load_pair_groups(cfg: RewardModelConfig, seed: int) -> tuple[list[Group], list[Group], DropReport]:
    """(training groups, held-out groups, drops) of ``cfg``: ``eval_data``, or a split of ``data`` by prompt."""
    drops = DropReport()
    options = dict(format=cfg.format, on_error=cfg.on_error, **cfg.format_options)
    groups, dropped = load_groups(cfg.data, split=cfg.split, **options)
    drops.extend(dropped)
    if cfg.eval_data:
        eval_groups, dropped = load_groups(cfg.eval_data, split=cfg.eval_split, **options)
        drops.extend(dropped)
    else:
        train_idx, eval_idx = split_by_prompt(groups, float(cfg.eval_fraction), seed)
        groups, eval_groups = [groups[i] for i in train_idx], [groups[i] for i in eval_idx]
    return groups, eval_groups, drops


def prepare_pairs(cfg: RewardModelConfig, groups: list[Group], eval_groups: list[Group], drops: DropReport,
                  tokenizer: Any) -> PreparedData:
    """Tokenise and pair the groups of :func:`load_pair_groups`."""
    tok_cfg = cfg.tokenize_config()
    train_tok, tok_stats = tokenize_groups(groups, tokenizer, tok_cfg, drops)
    eval_tok, _ = tokenize_groups(eval_groups, tokenizer, tok_cfg, drops)
    train_pairs, train_stats = build_pairs(train_tok)
    eval_pairs, eval_stats = build_pairs(eval_tok)
    if not train_pairs:
        raise ConfigError(f"{cfg.data} gives no training pair: reward models need groups with a preference "
                          f"(K = 2 pairs, or rewards / scores / labels that are not all tied)")
    return PreparedData(train_pairs, eval_pairs, train_stats, eval_stats, tok_stats.as_dict(), drops)


def _train_one(cfg: RewardModelConfig, args: Any, data: PreparedData, train_pairs: list[TokenizedGroup],
               tokenizer: Any, seed: int, output_dir: Path,
               callbacks: list | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Train and save one reward model; returns (training summary, final held-out metrics)."""
    set_seed(seed)  # seeds the new score head
    kind = cfg.base_kind
    model = build_reward_model(cfg.model, kind, tokenizer.pad_token_id, cfg.torch_dtype, cfg.trust_remote_code,
                               cfg.attn_implementation, cfg.logprob_chunk_size)
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=GroupDataset(train_pairs),
        eval_dataset=GroupDataset(data.eval_pairs) if data.eval_pairs else None, processing_class=tokenizer,
        margin=cfg.margin, center_coefficient=cfg.center_coefficient,
        oracle_alpha=cfg.oracle_alpha if kind == "oracle" else 0.0,
        likelihood_beta=cfg.likelihood_beta if kind == "likelihood" else None, chunk_size=cfg.logprob_chunk_size,
        dropout=cfg.dropout, callbacks=callbacks,
    )
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    final = trainer.evaluate() if data.eval_pairs else {}
    save_reward_model(trainer, output_dir)
    if trainer.is_world_process_zero():
        likelihood = {"likelihood_beta": cfg.likelihood_beta, "offset": final.get("eval_reward_mean", 0.0)}
        write_training_info(output_dir, {
            "kind": kind, "seed": seed, "base_model": str(cfg.model), "margin": cfg.margin,
            "center_coefficient": cfg.center_coefficient, "oracle_alpha": cfg.oracle_alpha if kind == "oracle" else 0.0,
            **(likelihood if kind == "likelihood" else {}),
            "max_length": cfg.max_length, "chat_template": cfg.chat_template, "eval": final})
    trainer.accelerator.wait_for_everyone()  # other processes may read the saved model next
    summary = {"steps": trainer.state.global_step, "train_loss": result.training_loss,
               "train_pairs": len(train_pairs)}
    trainer.accelerator.free_memory()
    return summary, final


def save_reward_model(trainer: RewardTrainer, output_dir: Path) -> None:
    """The trained model as a standard sequence-classification directory, with the tokenizer. The oracle's LM head
    (a training-only part) is left out; a sharded model (FSDP, ZeRO-3) is gathered first, on every process."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not isinstance(model, OracleRewardModel):
        trainer.save_model(str(output_dir))
        return
    state = trainer.accelerator.get_state_dict(trainer.model)
    if trainer.args.should_save:
        prefix = "classifier."
        model.classifier.save_pretrained(output_dir, state_dict={
            key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)})
        trainer.processing_class.save_pretrained(output_dir)


def _ensemble_eval(output_dir: Path, members: list[str], data: PreparedData, tokenizer: Any,
                   batch_size: int, device: Any) -> dict[str, Any]:
    """Held-out metrics of the ensemble mean reward (and the members' spread)."""
    columns_w, columns_l = [], []
    for name in members:
        model = load_reward_model(output_dir / name, device=device)
        r_w, r_l, _ = score_pairs(model, data.eval_pairs, tokenizer.pad_token_id, batch_size, device=device)
        columns_w.append(r_w)
        columns_l.append(r_l)
        del model
    mean = pair_metrics(np.mean(columns_w, axis=0), np.mean(columns_l, axis=0))
    return {f"eval_{k}": v for k, v in mean.items()}


def run_train_rm(cfg: RewardModelConfig | dict[str, Any], callbacks: list | None = None) -> dict[str, Any]:
    """Train a reward model (``cfg.kind``: bt, oracle or ensemble); returns the summary (also in the run folder).
    ``callbacks`` are added to each trainer's (``transformers.TrainerCallback``).

    Every check that needs no model runs first (kind, fields, paths, TrainingArguments), so a bad config is a
    ConfigError before any model is loaded.
    """
    cfg = as_config(RewardModelConfig, cfg, "train-rm")
    timer = Timer()
    cfg.check()
    args = training_arguments({"seed": 0} | cfg.training, "train-rm")
    evaluating = args.eval_strategy != "no"
    if evaluating and not cfg.eval_data and not cfg.eval_fraction:
        raise ConfigError(f"eval_strategy '{args.eval_strategy}' needs held-out pairs: set eval_fraction > 0 "
                          f"or eval_data")
    output_dir = Path(args.output_dir)
    groups, eval_groups, drops = load_pair_groups(cfg, args.seed)
    folder = RunFolder(args, "train-rm", cfg.overwrite_output_dir, inputs=(cfg.model,))
    set_seed(args.seed)
    tokenizer = load_tokenizer(cfg.model)
    data = prepare_pairs(cfg, groups, eval_groups, drops, tokenizer)
    if evaluating and not data.eval_pairs:
        raise ConfigError("the held-out groups give no preference pair; raise eval_fraction or check eval_data")

    summary: dict[str, Any] = {
        "kind": cfg.kind,
        "train_pairs": len(data.train_pairs),
        "eval_pairs": len(data.eval_pairs),
        "pairs_train": data.train_stats.as_dict(),
        "pairs_eval": data.eval_stats.as_dict(),
        "tokenize": data.tokenize,
        "dropped_rows": len(data.drops),
        "dropped_by_reason": data.drops.counts(),
    }
    if cfg.kind != "ensemble":
        run, final = _train_one(cfg, args, data, data.train_pairs, tokenizer, args.seed, output_dir, callbacks)
        summary |= run
        summary["final_eval"] = final
    else:
        names, member_runs, member_evals = [], [], []
        for i in range(cfg.members):
            name = f"member_{i}"
            seed = args.seed + i
            member_args = copy.deepcopy(args)
            member_args.output_dir = str(output_dir / name)
            member_args.seed = seed
            member_args.push_to_hub = False  # the ensemble's folder is pushed whole, at the end
            pairs = bootstrap(data.train_pairs, seed) if cfg.bootstrap else data.train_pairs
            run, final = _train_one(cfg, member_args, data, pairs, tokenizer, seed, output_dir / name, callbacks)
            names.append(name)
            member_runs.append(run | {"seed": seed})
            member_evals.append(final)
        summary["members"] = member_runs
        summary["member_evals"] = member_evals
        if data.eval_pairs and args.should_save:
            summary["final_eval"] = _ensemble_eval(output_dir, names, data, tokenizer,
                                                   args.per_device_eval_batch_size, args.device)
            accuracies = [m.get("eval_accuracy", math.nan) for m in member_evals]
            summary["final_eval"]["eval_member_accuracy_mean"] = float(np.mean(accuracies))
        else:
            summary["final_eval"] = {}
        if args.should_save:
            write_ensemble_config(output_dir, names, {
                "member_kind": cfg.member_kind, "seeds": [r["seed"] for r in member_runs],
                "bootstrap": cfg.bootstrap, "base_model": str(cfg.model), "eval": summary["final_eval"]})
            tokenizer.save_pretrained(output_dir)
            with (output_dir / "metrics.jsonl").open("a") as f:
                f.write(json.dumps({"step": None, **summary["final_eval"]}) + "\n")
    summary["seconds"] = round(timer.seconds, 2)
    if args.should_save:
        publish_run(folder, flat_dict(cfg), cfg, args, summary, "train-rm", cfg.base_kind)
    return summary


def held_out_line(summary: dict[str, Any]) -> str:
    """The one-line held-out report printed at the end of ``train-rm``."""
    final = summary.get("final_eval") or {}
    acc, loss = final.get("eval_accuracy"), final.get("eval_bt_loss")
    if acc is None:
        return "held-out: no held-out pairs (set eval_fraction > 0 or eval_data)"
    what = "ensemble mean reward, " if summary.get("kind") == "ensemble" else ""
    return f"held-out ({what}{summary.get('eval_pairs')} pairs): accuracy {acc:.3f}, BT loss {loss:.4f}"
