"""Stages that learn, or say that they did not: SFT stops on the held-out gold reward of its samples, and the
quality gates that keep the demo from ranking methods on a world where SFT or the reward model did not learn.

- :func:`generation_budget`: ``max_new_tokens`` of every sampling stage, from the demo's own tokenizer (built from
  the data, so a task's ``max_new_tokens``, counted in some other tokenizer's tokens, could cut its responses:
  at the demo's default character-level vocabulary a keyword demonstration has up to 34 tokens);
- :class:`GoldRewardStopping`: every ``every`` steps, samples one response per held-out prompt (temperature 1, a
  fixed seed), scores them with the task's gold reward, keeps a copy of the best weights, stops after
  ``patience`` evaluations without an improvement of more than ``min_delta``, and restores the best weights when
  training ends (so the saved SFT model is the best one seen);
- :func:`quality_failures`: what did not learn, in words (empty when both gates pass):

  * SFT must clearly beat a random response: its held-out gold reward ``s`` must exceed the random responses'
    ``r`` by at least half the demonstrations' advantage ``d - r`` and by at least 5% of the task's reward range:
    ``s - r >= max(SFT_MIN_SHARE * (d - r), 0.05 * (hi - lo))``;
  * the reward model must order at least ``RM_MIN_ACCURACY`` of the held-out groups' response pairs as the gold
    reward does (groups never used to train or select it).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from ..gym.tasks import Task
from ..modeling.generation import SamplingConfig, generate_samples

SFT_MIN_SHARE = 0.5
"""SFT must recover at least this share of the demonstrations' gold-reward advantage over random responses."""
RM_MIN_ACCURACY = 0.6
"""The reward model must order at least this share of held-out response pairs as the gold reward does."""


class StageDidNotLearn(RuntimeError):
    """A stage of the demo did not learn (see :func:`quality_failures`); ``failures`` says why, ``stats`` holds
    the statistics of the stages built so far. ``--force`` continues instead."""

    def __init__(self, failures: list[str], stats: dict[str, Any]):
        super().__init__(failures, stats)
        self.failures, self.stats = failures, stats

    def __str__(self) -> str:
        return "; ".join(self.failures)


def generation_budget(tokenizer: Any, responses: Sequence[str]) -> int:
    """``max_new_tokens`` that fits the longest of ``responses`` (well-formed ones: demonstrations, best
    responses) and its EOS under ``tokenizer``, with a quarter to spare."""
    longest = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses)
    return math.ceil(1.25 * longest) + 1


class GoldRewardStopping(TrainerCallback):
    """Early stopping of SFT on the gold reward of samples on held-out prompts (see the module docstring);
    ``responses``: the well-formed responses that set the generation budget (:func:`generation_budget`)."""

    def __init__(self, task: Task, prompts: Sequence[str], responses: Sequence[str], every: int, patience: int,
                 seed: int, min_delta: float = 0.0):
        self.task, self.prompts, self.responses = task, list(prompts), list(responses)
        self.every, self.patience, self.min_delta, self.seed = every, patience, min_delta, seed
        self.max_new_tokens: int | None = None
        self.history: list[dict[str, float]] = []
        self.best: float = -math.inf
        self.best_step = 0
        self._best_state: dict[str, Any] | None = None
        self._since_best = 0

    def gold(self, model: Any, tokenizer: Any) -> float:
        """Mean gold reward of one sample per held-out prompt."""
        self.max_new_tokens = self.max_new_tokens or generation_budget(tokenizer, self.responses)
        sampling = SamplingConfig(n_samples=1, temperature=1.0, max_new_tokens=self.max_new_tokens, seed=self.seed,
                                  batch_size=256)
        texts = generate_samples(model, tokenizer, self.prompts, sampling).texts
        return sum(self.task.gold_reward(p, row[0]) for p, row in zip(self.prompts, texts)) / len(self.prompts)

    def _evaluate(self, state, model, tokenizer) -> None:
        value = self.gold(model, tokenizer)
        self.history.append({"step": state.global_step, "gold": value})
        if value > self.best + self.min_delta:
            self.best, self.best_step, self._since_best = value, state.global_step, 0
            self._best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self._since_best += 1

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.every == 0:
            self._evaluate(state, model, processing_class)
            if self._since_best >= self.patience:
                control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not self.history or self.history[-1]["step"] != state.global_step:
            self._evaluate(state, model, processing_class)
        if self._best_state is not None:
            model.load_state_dict(self._best_state)
        return control

    def summary(self) -> dict[str, Any]:
        return {"heldout_gold": self.best, "best_step": self.best_step, "max_new_tokens": self.max_new_tokens,
                "gold_history": copy.deepcopy(self.history)}


def sft_failure(sft_gold: float, demo_gold: float, random_gold: float, reward_range: tuple[float, float]
                ) -> str | None:
    """Why SFT did not clearly beat a random response (see the module docstring), or None when it did."""
    need = max(SFT_MIN_SHARE * (demo_gold - random_gold), 0.05 * (reward_range[1] - reward_range[0]))
    if sft_gold - random_gold >= need:
        return None
    return (f"SFT did not learn the task: its held-out gold reward {sft_gold:.3f} does not clearly beat random "
            f"responses ({random_gold:.3f}; the demonstrations score {demo_gold:.3f}, and SFT must gain at least "
            f"{need:.3f} over random)")


def rm_failure(accuracy: float) -> str | None:
    """Why the reward model did not learn, or None when it orders enough held-out pairs as the gold reward."""
    if accuracy >= RM_MIN_ACCURACY:
        return None
    shown = "no pair to judge" if math.isnan(accuracy) else f"{accuracy:.3f}"
    return (f"the reward model did not learn: it orders {shown} of the held-out response pairs as the gold reward "
            f"does (at least {RM_MIN_ACCURACY} needed)")


def quality_failures(stats: dict[str, Any], reward_range: tuple[float, float]) -> list[str]:
    """The failed gates of a world's statistics (the stages present so far), in words."""
    data, sft = stats.get("data") or {}, stats.get("sft") or {}
    failures = []
    if "heldout_gold" in sft:
        failures.append(sft_failure(sft["heldout_gold"], data["demonstration_gold_mean"],
                                    data["random_gold_mean"], reward_range))
    if "annotation" in stats:
        failures.append(rm_failure(stats["annotation"]["heldout_rm_gold_agreement"]))
    return [f for f in failures if f]
