"""Supervised fine-tuning on demonstrations, loss on response tokens only.

The pipeline of the papers starts here. Data: prompt/response rows (format ``demonstrations``) or any group
format, from which ``responses: best`` takes each group's best response (by reward, score or label; index 0,
the chosen one, without feedback) and ``responses: all`` takes every response. ``model_init`` builds a tiny
causal LM and a BPE tokenizer trained on the data's text instead of loading ``model`` (no download).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import set_seed

from ..config import ConfigError, as_config, check_model_path, flat_dict
from ..data import Group
from ..data.collate import GroupDataset
from ..data.tokenize import render, tokenize_groups
from ..modeling.loading import apply_lora, load_causal_lm, load_tokenizer
from ..modeling.logprobs import batch_logps
from ..modeling.tiny import build_tiny_model, build_tiny_tokenizer
from ..runs import JsonlMetrics, Timer, training_arguments, write_run_files
from .base import GroupTrainer
from .configs import SFTConfig
from .data import load_training_groups, tokenize_config
from .model_card import publish_run


def demonstrations(groups: list[Group], which: str) -> list[Group]:
    """One K = 1 group per demonstration: each group's best response, or all of them."""
    if which not in ("best", "all"):
        raise ConfigError(f"responses must be 'best' or 'all', got {which!r}")
    out = []
    for g in groups:
        if which == "all":
            out.extend(Group(g.prompt, [r], meta=g.meta) for r in g.responses)
            continue
        feedback = g.rewards or g.scores or g.labels
        best = max(range(g.k), key=lambda k: feedback[k]) if feedback else 0
        out.append(Group(g.prompt, [g.responses[best]], meta=g.meta))
    return out


class SFTTrainer(GroupTrainer):
    """Mean token negative log-likelihood of the response tokens (prompt tokens are context only)."""

    def __init__(self, *args: Any, logprob_chunk_size: int = 1024, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.logprob_chunk_size = logprob_chunk_size

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = batch_logps(model, inputs, self.logprob_chunk_size)
        mask = inputs["mask"]
        loss = -out.logps[mask].sum() / out.n_tokens[mask].sum().clamp(min=1)
        if model.training:
            self.count_tokens(out.n_tokens, mask)
        return (loss, {}) if return_outputs else loss


def build_from_scratch(groups: list[Group], init: dict[str, Any], seed: int):
    """A tokenizer trained on the demonstrations' text and a tiny Llama sized by ``init``."""
    init = dict(init)
    vocab_size = init.pop("vocab_size", 512)
    texts = []
    for g in groups:
        prompt, response, _ = render(None, g.prompt, g.responses[0], "never")
        texts.append(prompt + response)
    tokenizer = build_tiny_tokenizer(texts, vocab_size=vocab_size)
    try:
        model = build_tiny_model(tokenizer, seed=seed, **init)
    except TypeError as err:
        raise ConfigError(f"bad model_init field: {err}") from err
    return tokenizer, model


def run_sft(cfg: SFTConfig | dict[str, Any], callbacks: list | None = None) -> dict[str, Any]:
    """Fine-tune ``cfg.model`` (or a tiny model built from ``cfg.model_init``) on ``cfg.data``'s demonstrations;
    returns the summary (also in the run folder). ``callbacks`` are added to the trainer's
    (``transformers.TrainerCallback``, e.g. one that stops early)."""
    cfg = as_config(SFTConfig, cfg, "sft")
    timer = Timer()
    args = training_arguments(cfg.training, "sft")
    if cfg.model_init is None:
        check_model_path(cfg.model)
    elif cfg.model:
        raise ConfigError("give either model (a path to fine-tune) or model_init (a tiny model from scratch)")
    tok_cfg = tokenize_config(cfg)
    groups, _, drops = load_training_groups(cfg, args.seed)
    examples = demonstrations(groups, cfg.responses)

    set_seed(args.seed)
    if cfg.model_init is not None:
        tokenizer, model = build_from_scratch(examples, cfg.model_init, args.seed)
    else:
        tokenizer = load_tokenizer(cfg.model)
        model = load_causal_lm(cfg.model, cfg.torch_dtype, cfg.trust_remote_code, cfg.attn_implementation)
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora)
    tokenized, tok_stats = tokenize_groups(examples, tokenizer, tok_cfg, drops)
    dataset = GroupDataset(tokenized)

    trainer = SFTTrainer(
        model=model,
        args=args,
        dropout=cfg.dropout,
        group_by_length=cfg.group_by_length,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[JsonlMetrics(Path(args.output_dir) / "metrics.jsonl"), *(callbacks or [])],
        logprob_chunk_size=cfg.logprob_chunk_size,
    )
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    summary = {
        "steps": trainer.state.global_step,
        "examples": len(tokenized),
        "response_tokens": trainer.response_tokens_seen,
        "seconds": round(timer.seconds, 2),
        "train_loss": result.training_loss,
        "tokenize": tok_stats.as_dict(),
        "dropped_rows": len(drops),
        "dropped_by_reason": drops.counts(),
    }
    if trainer.is_world_process_zero():
        write_run_files(args.output_dir, flat_dict(cfg), summary)
        publish_run(args.output_dir, cfg, args, summary, "sft", "sft")
    return summary
