"""``rewardalign sft --config sft.yaml``: supervised fine-tuning on demonstrations, loss on response tokens only.

The pipeline of the papers starts here. Data: prompt/response rows (format ``demonstrations``) or any group
format, from which ``responses: best`` takes each group's best response (by reward, score or label; index 0,
the chosen one, without feedback) and ``responses: all`` takes every response. ``model_init`` builds a tiny
causal LM and a BPE tokenizer trained on the data's text instead of loading ``model`` (no download).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, set_seed

from ..config import (
    TRAINING_ARGS_NOTE,
    ConfigError,
    RunFields,
    add_config_arguments,
    from_dict,
    resolve,
    split_known,
)
from ..data import Group, load_groups
from ..data.collate import GroupCollator, GroupDataset
from ..data.tokenize import render, tokenize_groups
from ..modeling.logprobs import batch_logps
from ..modeling.tiny import build_tiny_model, build_tiny_tokenizer, load_tokenizer
from .common import (
    JsonlMetrics,
    Timer,
    apply_lora,
    check_model_path,
    disable_dropout,
    load_causal_lm,
    print_summary,
    training_arguments,
    write_run_files,
)


@dataclass
class SFTConfig(RunFields):
    """The fields of ``sft.yaml`` besides transformers ``TrainingArguments`` fields."""

    model_init: dict[str, Any] | None = None
    responses: str = "best"
    lora: dict[str, Any] | None = None
    group_by_length: bool = False


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


class SFTTrainer(Trainer):
    """Mean token negative log-likelihood of the response tokens (prompt tokens are context only)."""

    def __init__(self, *args, logprob_chunk_size: int = 1024, **kwargs):
        super().__init__(*args, **kwargs)
        self.logprob_chunk_size = logprob_chunk_size
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = batch_logps(model, inputs, self.logprob_chunk_size)
        mask = inputs["mask"]
        loss = -out.logps[mask].sum() / out.n_tokens[mask].sum().clamp(min=1)
        return (loss, {}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None


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


def run_sft(raw: dict[str, Any]) -> dict[str, Any]:
    timer = Timer()
    known, rest = split_known(raw, SFTConfig)
    cfg = from_dict(SFTConfig, known, "sft")
    args = training_arguments(rest, "sft")
    if cfg.model_init is None:
        check_model_path(cfg.model)
    elif cfg.model:
        raise ConfigError("give either model (a path to fine-tune) or model_init (a tiny model from scratch)")
    if not cfg.data:
        raise ConfigError("no data given: set `data: PATH` in the config or pass --data PATH")
    groups, drops = load_groups(cfg.data, format=cfg.format, split=cfg.split, on_error=cfg.on_error,
                                **cfg.format_options)
    examples = demonstrations(groups, cfg.responses)

    set_seed(args.seed)
    if cfg.model_init is not None:
        tokenizer, model = build_from_scratch(examples, cfg.model_init, args.seed)
    else:
        tokenizer = load_tokenizer(cfg.model)
        model = load_causal_lm(cfg.model, cfg.torch_dtype, cfg.trust_remote_code, cfg.attn_implementation)
    if not cfg.dropout:
        disable_dropout(model)
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora)
    tok_cfg = cfg.tokenize_config()
    tokenized, tok_stats = tokenize_groups(examples, tokenizer, tok_cfg, drops)
    dataset = GroupDataset(tokenized)

    trainer = SFTTrainer(
        model=model,
        args=args,
        data_collator=GroupCollator(tokenizer.pad_token_id),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[JsonlMetrics(Path(args.output_dir) / "metrics.jsonl")],
        logprob_chunk_size=cfg.logprob_chunk_size,
    )
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    summary = {
        "steps": trainer.state.global_step,
        "examples": len(tokenized),
        "response_tokens": sum(len(r) for g in tokenized for r in g.response_ids),
        "seconds": round(timer.seconds, 2),
        "train_loss": result.training_loss,
        "tokenize": tok_stats.as_dict(),
        "dropped_rows": len(drops),
        "dropped_by_reason": drops.counts(),
    }
    if trainer.is_world_process_zero():
        write_run_files(args.output_dir, dataclasses.asdict(cfg) | rest, summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, SFTConfig, TRAINING_ARGS_NOTE + ".")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    summary = run_sft(resolve(args.config, overrides))
    print_summary("sft", summary)
    return 0
