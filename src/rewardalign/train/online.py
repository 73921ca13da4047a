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
   :class:`rewardalign.train.online_vllm.VLLMSampler` on a GPU with ``vllm`` installed). The sampling seed is a
   function of (seed, global step, micro-batch, process), so a resumed run draws the samples it would have drawn;
2. score the decoded (prompt, response) texts with the reward (:class:`OnlineReward`), transform them;
3. build one :class:`~rewardalign.data.tokenize.TokenizedGroup` per prompt from the prompt ids that were fed to
   generation and the sampled response ids exactly (text is never re-tokenised), collate (plain layout);
4. policy log-probs (with gradient) and live reference log-probs (a frozen copy of the initial policy, or the
   PEFT base) of the samples, then the objective; the optimiser step, accumulation, schedules, checkpoints and
   multi-process training are ``transformers.Trainer``'s.

The train dataset is the prompts (:class:`PromptDataset`), so an epoch is one pass over them and
``per_device_train_batch_size`` is the number of prompts per step (times K samples each).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import ConfigError
from ..data.collate import collate_groups
from ..data.schema import Text
from ..data.tokenize import TokenizedGroup
from ..evaluate.generation import Samples, SamplingConfig, generate_samples, stop_token_ids
from ..evaluate.judges import resolve_judge, score_responses
from ..objectives import compute_objective, get_objective
from ..rewards.transforms import Transform, parse_transform
from .trainer import AlignTrainer


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


# ---- rewards --------------------------------------------------------------------------------------------------


JUDGE_KINDS = ("gym", "rule", "rm")


class OnlineReward:
    """The explicit reward of sampled (prompt, response) pairs.

    ``spec`` is a judge spec string (``gym:<task>``: the task's gold reward; ``rule:<module>:<function>``;
    ``rm:<path>``: a ``train-rm`` reward model or ensemble), a reward source mapping of
    :func:`rewardalign.rewards.build_source` (``{type: reward_model | ensemble | rule | teacher_ratio, ...}``), or
    any callable ``fn(prompt, response) -> float``. ``score`` gives float64 [N] rewards, or [N, M] for an
    ensemble (one column per member). ``value_range`` is the declared range where the reward knows one (a gym
    task's), the default of a ``minmax`` transform.
    """

    def __init__(self, spec: Any):
        self.source = None
        self.judge = None
        self.value_range: tuple[float, float] | None = None
        if callable(spec):
            self.judge, self.name = spec, getattr(spec, "name", getattr(spec, "__qualname__", "callable"))
        elif isinstance(spec, str) and spec.partition(":")[0] == "rm":
            self._from_source(spec.partition(":")[2])
            self.name = spec
        elif isinstance(spec, str) and spec.partition(":")[0] in JUDGE_KINDS:
            self.judge = resolve_judge(spec)
            self.name = spec
            owner = getattr(getattr(self.judge, "fn", None), "__self__", None)  # gym: a Task's bound gold_reward
            self.value_range = getattr(owner, "reward_range", None) or getattr(self.judge, "reward_range", None)
        elif isinstance(spec, dict):
            self._from_source(spec)
            self.name = self.source.name
        else:
            raise ConfigError(f"reward {spec!r}: give a judge spec ({', '.join(k + ':...' for k in JUDGE_KINDS)}) "
                              f"or a reward source mapping {{type: reward_model | ensemble | rule | ...}}")

    def _from_source(self, spec: Any) -> None:
        from ..rewards import build_source

        self.source = build_source(spec)
        self.value_range = self.source.value_range

    @property
    def columns(self) -> list[str] | None:
        return None if self.source is None else self.source.columns

    def score(self, prompts: Sequence[Text], responses: Sequence[str]) -> np.ndarray:
        if self.source is None:
            return np.asarray(score_responses(self.judge, prompts, responses), dtype=np.float64)
        values = np.asarray(self.source.score(list(prompts), list(responses)), dtype=np.float64)
        if not np.isfinite(values).all():
            i = int(np.flatnonzero(~np.isfinite(values).reshape(len(prompts), -1).all(axis=1))[0])
            raise ValueError(f"reward {self.name} gave a non-finite reward for prompt {prompts[i]!r}, "
                             f"response {responses[i]!r}")
        return values

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


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


class HFSampler:
    """Samples with ``model.generate`` (:func:`rewardalign.evaluate.generation.generate_samples`): batched,
    left-padded, seeded in a forked RNG, from the model's own distribution at ``temperature`` / ``top_p``."""

    name = "hf"

    def __init__(self, tokenizer: Any, chat_template: str = "auto", max_prompt_length: int | None = None):
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.max_prompt_length = max_prompt_length

    def sample(self, model: nn.Module, prompts: Sequence[Text], cfg: SamplingConfig) -> Samples:
        return generate_samples(model, self.tokenizer, prompts, cfg, self.chat_template, self.max_prompt_length)


# ---- the trainer ----------------------------------------------------------------------------------------------


class OnlineTrainer(AlignTrainer):
    """Online alignment with objective ``objective`` on samples of the current policy (module docstring).

    ``train_dataset``: a :class:`PromptDataset`. ``reward``: an :class:`OnlineReward` (or a spec for one).
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
        reward: OnlineReward | Any,
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
        self.reward = reward if isinstance(reward, OnlineReward) else OnlineReward(reward)
        self.judge = None if judge is None else (judge if isinstance(judge, OnlineReward) else OnlineReward(judge))
        self.sampling = sampling or SamplingConfig(n_samples=4)
        if self.sampling.n_samples < self.needs.min_k:
            raise ConfigError(f"objective '{objective}' needs K >= {self.needs.min_k} samples per prompt, "
                              f"num_generations is {self.sampling.n_samples}")
        self.transform = resolve_transform(transform, objective, self.objective_args, self.reward.value_range)
        if self.needs.reference and reference is None:
            raise ConfigError(f"objective '{objective}' needs a live reference (reference: live or peft)")
        self.label_threshold = label_threshold
        self.sampler = sampler or HFSampler(processing_class, chat_template, max_prompt_length)
        self.pad_id = processing_class.pad_token_id
        if self.pad_id is None:
            self.pad_id = stop_token_ids(processing_class)[0]
        self._seed_step, self._micro = -1, 0
        self.samples_seen = 0

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
        raw = self.reward.score(flat_prompts, flat_texts)
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
            gold = self.judge.score(flat_prompts, flat_texts)
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
            step_metrics["objective/kl"] = float((obj_inputs.policy_logps.detach() - ref_logps)[mask].mean())
        store = self._metrics["train" if model.training else "eval"]
        for name, value in {**step_metrics, **{k: float(v) for k, v in metrics.items()}}.items():
            if math.isfinite(value):
                store[name].append(value)
        self.response_tokens_seen += int(obj_inputs.n_tokens[obj_inputs.mask].sum())
        self.samples_seen += int(obj_inputs.mask.sum())
        return (loss, metrics) if return_outputs else loss
