"""Online alignment: each step samples K responses per prompt from the CURRENT policy, scores them with a reward
source, and takes one optimiser step of an objective of the registry on them.

UNA online (paper 003, Sec. 2.3.4, Fig. 2d; Tables 4-6) replaces PPO's RL step with a supervised one: the implicit
score of each sample, q_k = sigma(beta * (l_k - l_ref_k)), is regressed onto its explicit score s_k (Eq. 13,
``una_score_mse``):

    loss = mean_k (sigma(beta * rho_k) - s_k)^2,   s_k = sigma(r_k) by default (or a declared min-max range)

and any point-wise objective of the registry can take its place (``una_reward_mse``: (beta * rho_k - r_k)^2;
``dro``; ``una_binary_*`` with labels s_k >= ``label_threshold``). The RL baseline is RLOO (Ahmadian et al.
2024; :mod:`rewardalign.objectives.rloo`): REINFORCE with a leave-one-out baseline over the K samples and the KL
penalty folded into the reward. Both take the same rollout; only the loss differs.

One training step of :class:`OnlineTrainer` (``compute_loss``), per micro-batch of P prompts:

1. sample K responses per prompt from the unwrapped policy, in eval mode, under ``no_grad``
   (:class:`HFSampler`: ``transformers`` generation, pure sampling at the given temperature, top-k off; or
   :class:`rewardalign.modeling.vllm.VLLMSampler` on a GPU with ``vllm`` installed). The sampling seed is a
   function of (seed, global step, micro-batch, process), so a resumed run draws the samples it would have drawn;
2. score the decoded (prompt, response) texts with the reward source, transform them;
3. build one :class:`~rewardalign.data.tokenize.TokenizedGroup` per prompt from the prompt ids that were fed to
   generation and the sampled response ids exactly (text is never re-tokenised), collate (plain layout);
4. policy log-probs (with gradient) and live reference log-probs (a frozen copy of the initial policy, or the
   PEFT base) of the samples, then the objective; the optimiser step, accumulation, schedules, checkpoints and
   multi-process training are ``transformers.Trainer``'s.

The train dataset is the prompts (:class:`PromptDataset`), so an epoch is one pass over them and
``per_device_train_batch_size`` is the number of prompts per step (times K samples each).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from transformers import set_seed

from ..config import ConfigError, as_config, check_data_path, check_model_path, flat_dict
from ..data.collate import collate_groups
from ..data.prompts import load_prompts
from ..data.schema import Text
from ..data.tokenize import TokenizedGroup
from ..gym import get_task, make_prompts
from ..modeling.generation import HFSampler, SamplingConfig, stop_token_ids
from ..modeling.loading import apply_lora, load_causal_lm, load_tokenizer
from ..modeling.reference import LiveReference, PeftReference
from ..objectives import OBJECTIVES, compute_objective, get_objective
from ..objectives.metrics import masked_mean
from ..rewards.base import RewardSource, mean_reward, score_finite
from ..rewards.sources import build_source
from ..rewards.transforms import Transform, parse_transform
from ..runs import RunFolder, Timer, training_arguments
from .align import AlignTrainer
from .configs import ALGORITHMS, SAMPLERS, OnlineConfig
from .data import check_objective
from .model_card import publish_run


class PromptDataset(Dataset):
    """The prompts of an online run: item i is ``{"prompt": prompts[i], "index": i}``."""

    def __init__(self, prompts: Sequence[Text]):
        if not prompts:
            raise ValueError("an online run needs at least one prompt")
        self.prompts = list(prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"prompt": self.prompts[i], "index": i}


def collate_prompts(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A batch of prompts: ``prompts`` (a list, strings or message lists) and ``prompt_index`` [P]."""
    return {"prompts": [it["prompt"] for it in items], "prompt_index": torch.tensor([it["index"] for it in items])}


def resolve_transform(spec: Any, objective: str, hparams: dict[str, Any] | None = None,
                      value_range: tuple[float, float] | None = None) -> Transform:
    """The transform of raw rewards an objective reads: ``spec`` (a :class:`Transform`, a name or a mapping of
    :func:`rewardalign.rewards.transforms.parse_transform`), by default ``sigmoid`` for objectives that read
    scores or labels and ``none`` otherwise; a minmax range defaults to the reward's ``value_range``. An
    objective that reads scores refuses a transform that does not give scores in [0, 1]."""
    needs = get_objective(objective).requirements(hparams)
    wants_scores = needs.scores or needs.labels
    if spec is None:
        spec = "sigmoid" if wants_scores else "none"
    transform = spec if isinstance(spec, Transform) else parse_transform(spec)
    transform.with_default_range(value_range)
    if wants_scores and transform.target != "scores":
        raise ConfigError(f"objective '{objective}' needs scores in [0, 1]: set transform to sigmoid or minmax "
                          f"(with a range), not {transform.kind!r}")
    return transform


# ---- sampling -------------------------------------------------------------------------------------------------


def step_seed(seed: int, step: int, micro: int = 0, process: int = 0) -> int:
    """The sampling seed of one micro-batch: a hash of (seed, global step, micro-batch index, process index).

    Distinct runs, steps, micro-batches and processes get unrelated streams (``seed + step`` would make run 1's
    step 0 replay run 0's step 1); a resumed run recomputes the same seed for the same step.
    """
    return int(np.random.SeedSequence([seed, step, micro, process]).generate_state(1, np.uint32)[0])


# ---- the trainer ----------------------------------------------------------------------------------------------


class OnlineTrainer(AlignTrainer):
    """Online alignment with objective ``objective`` on samples of the current policy (module docstring).

    ``train_dataset``: a :class:`PromptDataset`. ``reward``: a reward source, or anything
    :func:`~rewardalign.rewards.sources.build_source` takes (a spec string, a mapping, a callable).
    ``sampling``: K (``n_samples``), temperature, top_p, max_new_tokens and the generation batch size; its
    ``seed`` is replaced each step by :func:`step_seed`. ``transform``: raw rewards -> what the objective reads
    (:class:`rewardalign.rewards.transforms.Transform`; ``sigmoid`` / ``minmax`` give ``scores``, ``standardize``
    z-scores the step's rewards). ``reference``: a live reference (``LiveReference`` / ``PeftReference``), needed
    by objectives with a reference and by the KL metric. ``judge``: an optional second reward (e.g. a gym's gold
    reward while training on a reward model), only logged. ``sampler``: :class:`HFSampler` by default.
    ``label_threshold``: objectives that read binary labels (``una_binary_*``, ``kto``) get b_k = [s_k >= it].

    Logged each ``logging_steps`` (means over the steps since the last log), besides ``loss`` and the objective's
    metrics (``rewards/*``, ``logps/*``): ``objective/reward`` (mean explicit reward of the step's samples; an
    ensemble's member mean), ``objective/reward_std`` (its spread within prompts), ``objective/score`` (mean
    score, where scores are used), ``objective/kl`` (mean of l_policy - l_ref over the samples, the Monte-Carlo
    KL(pi || pi_ref), unbiased at temperature 1), ``judge/reward``, ``val/response_length`` (tokens, stop
    included), ``val/contain_eos_token`` (share of samples that stopped before ``max_new_tokens``),
    ``time/sampling`` and ``time/scoring`` (seconds per micro-batch).
    """

    def __init__(
        self,
        model: nn.Module,
        args: Any,
        objective: str,
        train_dataset: PromptDataset,
        reward: RewardSource | Any,
        processing_class: Any,
        sampling: SamplingConfig | None = None,
        objective_args: dict[str, Any] | None = None,
        reference: Any = None,
        transform: Transform | None = None,
        judge: Any = None,
        sampler: Any = None,
        label_threshold: float = 0.5,
        logprob_chunk_size: int = 1024,
        dropout: bool = False,
        callbacks: list | None = None,
        chat_template: str = "auto",
        max_prompt_length: int | None = None,
    ):
        super().__init__(
            model=model, args=args, objective=objective, train_dataset=train_dataset, objective_args=objective_args,
            reference=reference, processing_class=processing_class, logprob_chunk_size=logprob_chunk_size,
            dropout=dropout, callbacks=callbacks,
        )
        self.data_collator = collate_prompts
        self.reward = build_source(reward)
        self.judge = None if judge is None else build_source(judge)
        self.sampling = sampling or SamplingConfig(n_samples=4)
        if self.sampling.n_samples < self.needs.min_k:
            raise ConfigError(f"objective '{objective}' needs K >= {self.needs.min_k} samples per prompt, "
                              f"n_samples is {self.sampling.n_samples}")
        self.transform = resolve_transform(transform, objective, self.objective_args, self.reward.value_range)
        if self.needs.reference and reference is None:
            raise ConfigError(f"objective '{objective}' needs a live reference (reference: live or peft)")
        self.label_threshold = label_threshold
        self.sampler = sampler or HFSampler(processing_class, chat_template, max_prompt_length)
        self.pad_id = processing_class.pad_token_id
        if self.pad_id is None:
            self.pad_id = stop_token_ids(processing_class)[0]
        self._seed_step, self._micro = -1, 0

    def _sampling_seed(self) -> int:
        step = self.state.global_step
        if step != self._seed_step:
            self._seed_step, self._micro = step, 0
        seed = step_seed(self.args.seed, step, self._micro, self.args.process_index)
        self._micro += 1
        return seed

    def rollout(self, model: nn.Module, prompts: list[Text], indices: Sequence[int]) -> tuple[dict, dict]:
        """Sample, score and collate one micro-batch: (batch on the device, per-step metrics)."""
        k = self.sampling.n_samples
        policy = self.accelerator.unwrap_model(model)
        cfg = replace(self.sampling, seed=self._sampling_seed())
        start = time.perf_counter()
        with torch.no_grad():
            samples = self.sampler.sample(policy, prompts, cfg)
        sampled = time.perf_counter()
        flat_prompts = [p for p in prompts for _ in range(k)]
        flat_texts = [t for row in samples.texts for t in row]
        raw = score_finite(self.reward, flat_prompts, flat_texts)
        members = raw.reshape(len(prompts), k, -1) if raw.ndim == 2 else None
        rewards = members.mean(axis=2) if members is not None else raw.reshape(len(prompts), k)
        values, _ = self.transform.apply(rewards)
        scores = values if self.transform.target == "scores" else None
        if self.transform.target == "rewards":
            rewards = values
        metrics = {
            "objective/reward": float(raw.reshape(len(prompts), k, -1).mean()),
            "objective/reward_std": float(raw.reshape(len(prompts), k, -1).mean(axis=2).std(axis=1).mean()),
            "val/response_length": float(np.mean([len(r) for row in samples.response_ids for r in row])),
            "val/contain_eos_token": float(np.mean([f for row in samples.finished for f in row])),
            "time/sampling": sampled - start,
            "time/scoring": time.perf_counter() - sampled,
        }
        if scores is not None:
            metrics["objective/score"] = float(scores.mean())
        if self.judge is not None:
            gold = mean_reward(score_finite(self.judge, flat_prompts, flat_texts))
            metrics["judge/reward"] = float(gold.mean())
        groups = []
        for i, index in enumerate(indices):
            groups.append(TokenizedGroup(
                prompt_ids=samples.prompt_ids[i],
                response_ids=samples.response_ids[i],
                rewards=rewards[i].tolist(),
                scores=None if scores is None else scores[i].tolist(),
                labels=[int(s >= self.label_threshold) for s in scores[i]] if self.needs.labels else None,
                reward_members=None if members is None else members[i].T.tolist(),
                index=int(index),
            ))
        batch = self._prepare_inputs(collate_groups(groups, self.pad_id))
        return batch, metrics

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        indices = inputs["prompt_index"].tolist()
        batch, step_metrics = self.rollout(model, list(inputs["prompts"]), indices)
        obj_inputs = self.objective_inputs(model, batch)
        loss, metrics = compute_objective(self.objective_name, obj_inputs, **self.objective_args)
        ref_logps = obj_inputs.ref_logps
        if ref_logps is None and self.reference is not None:
            ref_logps = self.reference.logps(model, batch, False).logps
        if ref_logps is not None:
            mask = obj_inputs.mask
            step_metrics["objective/kl"] = masked_mean(obj_inputs.policy_logps.detach() - ref_logps, mask)
        self.record({**step_metrics, **metrics}, model.training)
        self.count_tokens(obj_inputs.n_tokens, obj_inputs.mask)
        self.count("samples", len(indices) * self.sampling.n_samples)
        return (loss, metrics) if return_outputs else loss


# ---- the run ------------------------------------------------------------------------------------------------


def check_config(cfg: OnlineConfig) -> tuple[str, dict[str, Any]]:
    """(objective, validated hyperparameters), or a ConfigError saying what to change; no model is loaded."""
    if cfg.algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {cfg.algorithm!r}")
    objective = cfg.objective or ALGORITHMS[cfg.algorithm]
    if cfg.algorithm == "rloo" and objective != "rloo":
        raise ConfigError(f"algorithm rloo trains objective rloo, not {objective!r} (use algorithm: una for it)")
    if cfg.algorithm == "una" and objective == "rloo":
        raise ConfigError("objective rloo is the RLOO baseline: set algorithm: rloo")
    try:
        hparams = check_objective(objective, cfg.objective_args)
    except ConfigError as err:
        if objective not in OBJECTIVES:
            raise
        raise ConfigError(f"algorithm {cfg.algorithm} trains objective {objective}; objective_args: {err}") from err
    if "auto" in hparams.values():
        raise ConfigError(f"objective_args: 'auto' values are estimated from offline training data (align); "
                          f"online training needs a number, got {hparams}")
    needs = get_objective(objective).requirements(hparams)
    if cfg.n_samples < max(1, needs.min_k):
        raise ConfigError(f"objective '{objective}' needs n_samples >= {needs.min_k}, got {cfg.n_samples}")
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
    if not str(cfg.prompts).startswith("gym:"):
        check_data_path(cfg.prompts, "prompts")
    if cfg.reward is None:
        raise ConfigError("no reward given: set `reward:` to gym:<task>, rule:<module>:<function>, rm:<path> "
                          "or a reward source mapping")
    return objective, hparams


def online_prompts(cfg: OnlineConfig) -> list[Any]:
    """The run's prompts: a gym task's (``gym:<task>``, ``gym:<path/file.py>:<Class>``, ``gym:<module>:<Class>``)
    or a file's distinct prompts."""
    kind, _, task = cfg.prompts.partition(":")
    if kind == "gym" and task:
        try:
            return make_prompts(get_task(task), cfg.max_prompts or 1000, seed=cfg.prompts_seed)
        except ValueError as err:
            raise ConfigError(f"prompts {cfg.prompts}: {err}") from err
    prompts = load_prompts(cfg.prompts, cfg.prompts_format, cfg.split, cfg.max_prompts, **cfg.format_options)
    if not prompts:
        raise ConfigError(f"no prompts in {cfg.prompts}")
    return prompts


def build_sampler(cfg: OnlineConfig, tokenizer: Any) -> Any:
    from ..modeling.vllm import VLLMSampler, vllm_usable  # vllm itself is imported only where it is usable

    if cfg.sampler == "vllm" or (cfg.sampler == "auto" and vllm_usable()):
        if cfg.lora is not None:
            raise ConfigError("sampler: vllm does not sync LoRA adapters; use sampler: hf with lora")
        return VLLMSampler(cfg.model, tokenizer, cfg.vllm_gpu_memory_utilization, chat_template=cfg.chat_template,
                           max_prompt_length=cfg.max_prompt_length)
    return HFSampler(tokenizer, cfg.chat_template, cfg.max_prompt_length)


def run_online(cfg: OnlineConfig | dict[str, Any], callbacks: list | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` online on ``cfg.prompts`` with ``cfg.reward``; returns the summary (also in the run
    folder). ``callbacks`` are added to the trainer's (``transformers.TrainerCallback``)."""
    cfg = as_config(OnlineConfig, cfg, "online")
    timer = Timer()
    args = training_arguments(cfg.training, "online")
    objective, hparams = check_config(cfg)
    folder = RunFolder(args, "online", cfg.overwrite_output_dir, inputs=(cfg.model,))
    try:
        sampling = SamplingConfig(n_samples=cfg.n_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                                  top_k=0, max_new_tokens=cfg.max_new_tokens, seed=args.seed,
                                  batch_size=cfg.generation_batch_size)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    reward = build_source(cfg.reward)
    transform = resolve_transform(cfg.transform, objective, hparams, reward.value_range)
    judge = None if cfg.judge is None else build_source(cfg.judge)
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
        callbacks=callbacks,
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
        "samples": trainer.totals.get("samples", 0),
        "response_tokens": trainer.response_tokens_seen,
        "seconds": round(timer.seconds, 2),
        "train_loss": result.training_loss,
        "first_reward": history[0]["objective/reward"] if history else None,
        "last_reward": history[-1]["objective/reward"] if history else None,
        "last_kl": history[-1].get("objective/kl") if history else None,
        "reference": "peft" if use_peft else "live",
    }
    if trainer.is_world_process_zero():
        config = flat_dict(cfg) | {"objective": objective, "objective_args": hparams,
                                   "transform": trainer.transform.as_dict()}
        publish_run(folder, config, replace(cfg, objective_args=hparams), args, summary, "online", objective)
    return summary
