"""``rewardalign online --config online.yaml``: UNA online (paper 003, Sec. 2.3.4) and the RLOO baseline.

Each step samples ``num_generations`` responses for each of ``per_device_train_batch_size`` prompts from the
current policy, scores them with ``reward``, and takes an optimiser step (see :mod:`rewardalign.train.online`).

    algorithm: una      objective una_score_mse by default (or any objective of the registry whose inputs an
                        online batch can give: una_reward_mse, dro, una_binary_mse, ...)
    algorithm: rloo     objective rloo: REINFORCE, leave-one-out baseline, KL penalty in the reward

Fields besides transformers ``TrainingArguments`` (output_dir, seed, learning_rate, max_steps, save_steps,
resume_from_checkpoint, report_to, ...):

- ``model`` (required): the initial policy, also the live reference (a frozen copy; the PEFT base with ``lora``);
- ``prompts`` (required): a data file (``rewardalign evaluate``'s prompt files: any group format, or rows with a
  ``prompt``) or ``gym:<task>`` for ``max_prompts`` (default 1000) prompts of a gym task (seed ``prompts_seed``);
- ``reward`` (required): ``gym:<task>`` (gold reward), ``rule:<module>:<function>``, ``rm:<path>``, or a reward
  source mapping ``{type: reward_model | ensemble | rule | teacher_ratio, ...}``;
- ``transform``: raw reward -> what the objective reads: ``sigmoid`` (s = sigma(r); the default for objectives
  that read scores), ``{kind: minmax, range: [lo, hi]}`` (the range defaults to the reward's declared one, e.g.
  a gym task's [0, 1]), ``standardize`` (z-score of each step's rewards), ``none`` (the default otherwise);
- ``judge``: a second reward only logged (``judge/reward``), e.g. the gold reward while training on an RM;
- sampling: ``num_generations`` (K, 4), ``temperature`` (1.0), ``top_p`` (1.0), ``max_new_tokens`` (64),
  ``generation_batch_size`` (sequences per generate call, 64), ``sampler`` (``auto``: vLLM where it is
  installed and CUDA is available, else ``hf``; ``hf``; ``vllm``), ``vllm_gpu_memory_utilization`` (0.3);
- ``objective_args`` (the objective's hyperparameters), ``label_threshold`` (binary objectives: label 1 when
  the score is at least this), ``reference`` (``auto``: ``peft`` with lora, else ``live``), ``lora``,
  ``torch_dtype``, ``max_prompt_length``, ``chat_template``, ``logprob_chunk_size``, ``dropout`` (false),
  ``trust_remote_code``.

The run folder gets the model, ``config.yaml``, ``metrics.jsonl`` and ``summary.json``; checkpoints and resume
are ``transformers.Trainer``'s (a resumed run draws the same samples: the sampling seed is a function of the
seed and the step).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import set_seed

from ..config import (
    TRAINING_ARGS_NOTE,
    ConfigError,
    ModelFields,
    add_config_arguments,
    from_dict,
    resolve,
    split_known,
)
from ..evaluate.generation import SamplingConfig
from ..modeling.reference import LiveReference, PeftReference
from ..modeling.tiny import load_tokenizer
from ..objectives import OBJECTIVES, get_objective
from .align_command import check_objective
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
from .online import HFSampler, OnlineReward, OnlineTrainer, PromptDataset, resolve_transform

ALGORITHMS = {"una": "una_score_mse", "rloo": "rloo"}
SAMPLERS = ("auto", "hf", "vllm")


@dataclass
class OnlineConfig(ModelFields):
    """The fields of ``online.yaml`` besides ``TrainingArguments`` fields (see the module docstring)."""

    prompts: str | None = None
    prompts_format: str | None = None
    split: str | None = None
    max_prompts: int | None = None
    prompts_seed: int = 0
    reward: Any = None
    transform: Any = None
    judge: Any = None
    algorithm: str = "una"
    objective: str | None = None
    objective_args: dict[str, Any] = field(default_factory=dict)
    label_threshold: float = 0.5
    num_generations: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    generation_batch_size: int = 64
    sampler: str = "auto"
    vllm_gpu_memory_utilization: float = 0.3
    reference: str = "auto"
    lora: dict[str, Any] | None = None
    max_prompt_length: int | None = None
    chat_template: str = "auto"


def check_config(cfg: OnlineConfig) -> tuple[str, dict[str, Any]]:
    """(objective, validated hyperparameters), or a ConfigError saying what to change; no model is loaded."""
    if cfg.algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {cfg.algorithm!r}")
    objective = cfg.objective or ALGORITHMS[cfg.algorithm]
    if cfg.algorithm == "rloo" and objective != "rloo":
        raise ConfigError(f"algorithm rloo trains objective rloo, not {objective!r} (use algorithm: una for it)")
    if cfg.algorithm == "una" and objective == "rloo":
        raise ConfigError("objective rloo is the RLOO baseline: set algorithm: rloo")
    hparams = check_objective(objective, cfg.objective_args)
    needs = get_objective(objective).requirements(hparams)
    if cfg.num_generations < max(1, needs.min_k):
        raise ConfigError(f"objective '{objective}' needs num_generations >= {needs.min_k}, got {cfg.num_generations}")
    if cfg.sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {cfg.sampler!r}")
    if cfg.reference not in ("auto", "live", "peft"):
        raise ConfigError(f"reference must be auto, live or peft, got {cfg.reference!r}")
    if cfg.reference == "peft" and cfg.lora is None:
        raise ConfigError("reference: peft needs lora (the reference is the base model under the adapters)")
    if not 0.0 <= cfg.label_threshold <= 1.0:
        raise ConfigError(f"label_threshold must be in [0, 1], got {cfg.label_threshold}")
    check_model_path(cfg.model)
    if not cfg.prompts:
        raise ConfigError("no prompts given: set `prompts: PATH` (or gym:<task>) in the config or pass --prompts")
    if cfg.reward is None:
        raise ConfigError("no reward given: set `reward:` to gym:<task>, rule:<module>:<function>, rm:<path> "
                          "or a reward source mapping")
    return objective, hparams


def online_prompts(cfg: OnlineConfig) -> list[Any]:
    """The run's prompts: a gym task's (``gym:<task>``) or a file's distinct prompts."""
    kind, _, task = cfg.prompts.partition(":")
    if kind == "gym" and task:
        from ..gym import get_task, make_prompts

        try:
            return make_prompts(get_task(task), cfg.max_prompts or 1000, seed=cfg.prompts_seed)
        except ValueError as err:
            raise ConfigError(f"prompts {cfg.prompts}: {err}") from err
    from ..evaluate.command import load_prompts

    prompts = load_prompts(cfg.prompts, cfg.prompts_format, cfg.split, cfg.max_prompts)
    if not prompts:
        raise ConfigError(f"no prompts in {cfg.prompts}")
    return prompts


def build_sampler(cfg: OnlineConfig, tokenizer: Any) -> Any:
    from .online_vllm import vllm_usable

    if cfg.sampler == "vllm" or (cfg.sampler == "auto" and vllm_usable()):
        from .online_vllm import VLLMSampler

        if cfg.lora is not None:
            raise ConfigError("sampler: vllm does not sync LoRA adapters; use sampler: hf with lora")
        return VLLMSampler(cfg.model, tokenizer, cfg.vllm_gpu_memory_utilization, chat_template=cfg.chat_template,
                           max_prompt_length=cfg.max_prompt_length)
    return HFSampler(tokenizer, cfg.chat_template, cfg.max_prompt_length)


def run_online(raw: dict[str, Any], callbacks: list | None = None) -> dict[str, Any]:
    """Run ``online`` from a resolved config mapping; returns the summary. ``callbacks`` are added to the
    trainer's (``transformers.TrainerCallback``)."""
    timer = Timer()
    known, rest = split_known(raw, OnlineConfig)
    cfg = from_dict(OnlineConfig, known, "online")
    args = training_arguments(rest, "online")
    objective, hparams = check_config(cfg)
    try:
        sampling = SamplingConfig(n_samples=cfg.num_generations, temperature=cfg.temperature, top_p=cfg.top_p,
                                  top_k=0, max_new_tokens=cfg.max_new_tokens, seed=args.seed,
                                  batch_size=cfg.generation_batch_size)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    reward = OnlineReward(cfg.reward)
    transform = resolve_transform(cfg.transform, objective, hparams, reward.value_range)
    judge = None if cfg.judge is None else OnlineReward(cfg.judge)
    prompts = online_prompts(cfg)

    set_seed(args.seed)
    tokenizer = load_tokenizer(cfg.model)
    model = load_causal_lm(cfg.model, cfg.torch_dtype, cfg.trust_remote_code, cfg.attn_implementation)
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora)
    use_peft = cfg.reference == "peft" or (cfg.reference == "auto" and cfg.lora is not None)
    if use_peft:
        reference = PeftReference(cfg.logprob_chunk_size)
    else:
        reference = LiveReference(model, cfg.logprob_chunk_size)
        reference.model.to(args.device)

    trainer = OnlineTrainer(
        model=model,
        args=args,
        objective=objective,
        objective_args=hparams,
        train_dataset=PromptDataset(prompts),
        reward=reward,
        processing_class=tokenizer,
        sampling=sampling,
        reference=reference,
        transform=transform,
        judge=judge,
        sampler=build_sampler(cfg, tokenizer),
        label_threshold=cfg.label_threshold,
        logprob_chunk_size=cfg.logprob_chunk_size,
        dropout=cfg.dropout,
        chat_template=cfg.chat_template,
        max_prompt_length=cfg.max_prompt_length,
        callbacks=[JsonlMetrics(Path(args.output_dir) / "metrics.jsonl"), *(callbacks or [])],
    )
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    reward.close()
    if judge is not None:
        judge.close()

    history = [h for h in trainer.state.log_history if "objective/reward" in h]
    summary = {
        "algorithm": cfg.algorithm,
        "objective": objective,
        "reward": reward.name,
        "transform": trainer.transform.as_dict(),
        "sampler": trainer.sampler.name,
        "steps": trainer.state.global_step,
        "processes": args.world_size,
        "prompts": len(prompts),
        "samples": trainer.samples_seen,
        "response_tokens": trainer.response_tokens_seen,
        "seconds": round(timer.seconds, 2),
        "train_loss": result.training_loss,
        "first_reward": history[0]["objective/reward"] if history else None,
        "last_reward": history[-1]["objective/reward"] if history else None,
        "last_kl": history[-1].get("objective/kl") if history else None,
        "reference": "peft" if use_peft else "live",
    }
    if trainer.is_world_process_zero():
        config = dataclasses.asdict(cfg) | dict(rest) | {"objective": objective, "objective_args": hparams,
                                                          "transform": trainer.transform.as_dict()}
        write_run_files(args.output_dir, config, summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    others = ", ".join(sorted(set(OBJECTIVES) - {"rloo"}))
    add_config_arguments(parser, OnlineConfig, TRAINING_ARGS_NOTE + f". Algorithms: una (objective una_score_mse "
                         f"or any of: {others}), rloo. Hyperparameters: --objective_args.beta 0.1")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    summary = run_online(resolve(args.config, overrides))
    print_summary(f"online ({summary['algorithm']}: {summary['objective']})", summary)
    return 0
