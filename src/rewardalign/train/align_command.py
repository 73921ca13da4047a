"""``rewardalign align --config align.yaml``: offline alignment with any objective of the registry.

Everything that can be checked without a model is checked first (objective, hyperparameters, model path,
data and what the objective needs of it), so a bad config fails in seconds with a message that says what to
change. The run folder (``output_dir``) gets the ``save_pretrained`` model (or adapter), the resolved config,
``metrics.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import set_seed

from ..config import (
    TRAINING_ARGS_NOTE,
    ConfigError,
    RunFields,
    add_config_arguments,
    from_dict,
    resolve,
    split_known,
)
from ..data import DropReport, Group
from ..data.collate import LAYOUTS, GroupDataset
from ..data.pipeline import prepare_dataset
from ..data.schema import DataError
from ..fingerprint import path_fingerprint
from ..modeling.reference import (
    LiveReference,
    PeftReference,
    precompute_reference,
    reference_cache_key,
)
from ..modeling.tiny import load_tokenizer
from ..objectives import OBJECTIVES, get_objective, validate_hparams
from .common import (
    JsonlMetrics,
    Timer,
    apply_lora,
    check_model_path,
    load_causal_lm,
    print_summary,
    training_arguments,
    write_run_files,
)
from .trainer import AlignTrainer


@dataclass
class AlignConfig(RunFields):
    """The fields of ``align.yaml`` besides transformers ``TrainingArguments`` fields (output_dir, seed,
    learning_rate, max_steps, per_device_train_batch_size, ...), which sit beside them in the same mapping."""

    eval_data: str | None = None
    eval_fraction: float = 0.0
    objective: str = "dpo"
    objective_args: dict[str, Any] = field(default_factory=dict)
    reference: str = "precompute"
    lora: dict[str, Any] | None = None
    group_by_length: bool = False
    layout: str = "plain"
    pack_length: int | None = None
    cache_dir: str = ".cache/rewardalign"


def check_objective(name: str, args: dict[str, Any]) -> dict[str, Any]:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{name}'; choose one of: {', '.join(sorted(OBJECTIVES))}")
    try:
        return validate_hparams(name, args)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(str(err)) from err


def check_data_fits(objective: str, hparams: dict[str, Any], groups: list[Group], source: str) -> None:
    """The data must carry what the objective needs; the error names the first group that lacks it."""
    needs = get_objective(objective).requirements(hparams)
    wanted = [("rewards", needs.rewards and not needs.ensemble), ("reward_members", needs.ensemble),
              ("scores", needs.scores), ("labels", needs.labels)]
    for name, needed in wanted:
        if not needed:
            continue
        for i, g in enumerate(groups):
            has = getattr(g, name) is not None or (name == "reward_members" and g.rewards is not None)
            if not has:
                hint = {
                    "rewards": "annotate the data with a reward source (rewardalign annotate) or choose a "
                               "preference objective such as dpo",
                    "reward_members": "annotate with an ensemble reward model",
                    "scores": "give scores in [0, 1] (annotate with a transform, e.g. sigmoid or minmax)",
                    "labels": "give binary labels (the binary format) or choose another objective",
                }[name]
                raise DataError(i, name, f"objective '{objective}' needs {name} and the data in {source} "
                                         f"has none here: {hint}")
    for i, g in enumerate(groups):
        if g.k < needs.min_k:
            raise DataError(i, "responses", f"objective '{objective}' needs K >= {needs.min_k} responses per "
                                            f"group, this group has {g.k}")


def split_eval(groups: list[Group], fraction: float, seed: int) -> tuple[list[Group], list[Group]]:
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"eval_fraction must be in [0, 1), got {fraction}")
    if hasattr(groups, "split"):  # a TokenizedDataset: split its views, same groups
        return groups.split(fraction, seed)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    n_eval = int(round(fraction * len(groups)))
    held = set(order[:n_eval])
    return [g for i, g in enumerate(groups) if i not in held], [g for i, g in enumerate(groups) if i in held]


def run_align(raw: dict[str, Any], callbacks: list | None = None) -> dict[str, Any]:
    """Run ``align`` from a resolved config mapping; returns the summary. ``callbacks`` are added to the
    trainer's (``transformers.TrainerCallback``)."""
    timer = Timer()
    known, rest = split_known(raw, AlignConfig)
    cfg = from_dict(AlignConfig, known, "align")
    args = training_arguments(rest, "align")
    objective_args = check_objective(cfg.objective, cfg.objective_args)
    if cfg.layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {cfg.layout!r}")
    if cfg.reference not in ("precompute", "live"):
        raise ConfigError(f"reference must be 'precompute' or 'live', got {cfg.reference!r}")
    check_model_path(cfg.model)
    if not cfg.data:
        raise ConfigError("no data given: set `data: PATH` in the config or pass --data PATH")
    needs = get_objective(cfg.objective).requirements(objective_args)

    drops = DropReport()
    tokenizer = load_tokenizer(cfg.model)
    tok_cfg = cfg.tokenize_config()
    load_opts = dict(format=cfg.format, split=cfg.split, on_error=cfg.on_error, drops=drops,
                     cache_dir=Path(cfg.cache_dir) / "data", **cfg.format_options)
    train_tok, tok_stats = prepare_dataset(cfg.data, tokenizer, tok_cfg, **load_opts)
    if cfg.eval_data:
        eval_tok, _ = prepare_dataset(cfg.eval_data, tokenizer, tok_cfg, **load_opts)
    else:
        train_tok, eval_tok = split_eval(train_tok, cfg.eval_fraction, args.seed)
    check_data_fits(cfg.objective, objective_args, train_tok.feedback(), cfg.data)
    if eval_tok:
        check_data_fits(cfg.objective, objective_args, eval_tok.feedback(), cfg.eval_data or cfg.data)

    set_seed(args.seed)
    if not train_tok:
        raise ConfigError("no training group is left after tokenisation; raise max_length or check the data")

    model = load_causal_lm(cfg.model, cfg.torch_dtype, cfg.trust_remote_code, cfg.attn_implementation)
    reference = None
    cache_hit = None
    if needs.reference and cfg.reference == "precompute":
        settings = {"dtype": cfg.torch_dtype, "with_prompt": needs.prompt_logps}
        fingerprint = path_fingerprint(cfg.model)
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
        callbacks=[JsonlMetrics(Path(args.output_dir) / "metrics.jsonl"), *(callbacks or [])],
    )
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    final_eval = trainer.evaluate() if eval_tok else {}
    trainer.save_model(args.output_dir)

    summary = {
        "objective": cfg.objective,
        "steps": trainer.state.global_step,
        "processes": args.world_size,
        "train_groups": len(train_tok),
        "eval_groups": len(eval_tok),
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
        config = dataclasses.asdict(cfg) | {k: v for k, v in rest.items()} | {"objective_args": objective_args}
        write_run_files(args.output_dir, config, summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, AlignConfig, TRAINING_ARGS_NOTE + ". Objectives: " + ", ".join(sorted(OBJECTIVES))
                         + ". Hyperparameters: --objective_args.beta 0.1")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    summary = run_align(resolve(args.config, overrides))
    print_summary(f"align ({summary['objective']})", summary)
    return 0
