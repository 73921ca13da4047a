"""The demo's configuration: the methods it aligns (with their tuned learning rates) and ``DemoConfig``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError, from_dict, opt
from ..gym import Task, get_task
from ..gym.data import make_sft_data
from ..gym.feedback import FeedbackConfig

# ---- the methods ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSpec:
    """One aligned policy of the demo: an objective of the registry, the feedback it reads, its settings.

    feedback: what of the annotated groups the objective uses (for the report): ``rewards`` (RM rewards of all
    K responses), ``scores`` (sigmoid of the RM reward), ``labels`` (RM reward above the group mean),
    ``pairs`` (best vs one random other response of each RM-ranked group).
    """

    objective: str
    feedback: str
    learning_rate: float
    objective_args: dict[str, Any] = field(default_factory=dict)
    source: str = ""


# Every method at the claims benchmark's tuned settings (`python benchmarks/claims.py --tune`, docs/demo/tune.md): the
# best of one grid, learning rate {3e-5, 1e-4, 3e-4} x (the paper's beta x {1/3, 1, 3}), by held-out gold reward
# averaged over the tuning seed 1000 of arithmetic, sort and count at the --quick sizes. Every method has the same
# tuning budget, and none is tuned on a seed the demo measures (0, 1, 2, ...). tests/test_demo.py holds these to
# the tuned table of docs/demo/claims.md.
METHODS: dict[str, MethodSpec] = {
    "dro": MethodSpec("dro", "rewards", 1e-4, {"baseline": "group_mean", "prompt_normalization": False, "beta": 0.3},
                      "000/001 DRO: point-wise reward distillation"),
    "drdo": MethodSpec("drdo", "rewards", 3e-5, {"beta": 0.0333}, "002 DRDO: reward differences + focal preference"),
    "una_score_mse": MethodSpec("una_score_mse", "scores", 3e-5, {"beta": 0.09}, "003 UNA on scores"),
    "una_binary_bce": MethodSpec("una_binary_bce", "labels", 3e-5, {"beta": 0.03}, "003 UNA on binary labels"),
    "spo_abs": MethodSpec("spo_abs", "rewards", 1e-4, {"beta": 0.333}, "004 SPO-abs: listwise soft preferences"),
    "rpo": MethodSpec("rpo", "rewards", 1e-4, {"beta": 0.3}, "Fisch 2024 reward distillation"),
    "dpo": MethodSpec("dpo", "pairs", 1e-4, {"beta": 0.3}, "baseline: DPO, best vs random"),
    "ipo": MethodSpec("ipo", "pairs", 1e-4, {"beta": 0.1}, "baseline: IPO, best vs random"),
    "simpo": MethodSpec("simpo", "pairs", 3e-5, {"beta": 2.0}, "baseline: SimPO, best vs random"),
    "kto": MethodSpec("kto", "labels", 3e-5, {"beta": 0.3}, "baseline: KTO on binary labels"),
    "spo": MethodSpec("spo", "rewards", 1e-4, {"beta": 0.333}, "004 SPO: listwise soft preferences"),
}
"""Every method the demo and the claims benchmark know, by run name."""

FULL_BUDGET_LEARNING_RATES: dict[str, float] = {
    "dro": 1e-4, "drdo": 1e-5, "una_score_mse": 1e-4, "una_binary_bce": 1e-4, "spo_abs": 1e-4,
    "rpo": 3e-5, "dpo": 3e-5, "ipo": 3e-5, "simpo": 1e-5, "kto": 1e-4,
}
"""Each demo method's learning rate at the default alignment budget (``align_steps`` 200, five times --quick's 40),
at the beta of :data:`METHODS`: the best of {1e-5, 3e-5, 1e-4} by gold reward averaged over the tuning seed 1000
of arithmetic, sort and count at the default sizes (``python benchmarks/tune_budget.py``, docs/demo/tune_budget.md).
A rate tuned for 40 steps can carry a method far from the SFT policy in 200: DPO at its --quick rate 1e-4 reached
KL 18 with 53% of its samples without EOS on arithmetic, SimPO at 3e-5 KL 3.4-5.5. :meth:`DemoConfig.method`
takes these for runs nearer 200 steps than 40."""

DEFAULT_METHODS = ("dro", "drdo", "una_score_mse", "una_binary_bce", "spo_abs", "rpo", "dpo", "ipo", "simpo", "kto")

RM_LEARNING_RATES = {"bt": 1e-3, "likelihood": 1e-4}
"""The reward model's learning rate by ``rm_kind`` when ``rm_learning_rate`` is unset: a new score head on the SFT
model takes 1e-3; the likelihood kind trains the SFT model's own weights (measured: see docs/tasks.md)."""

FEEDBACK_TEXT = {
    "rewards": "RM rewards of all K responses",
    "scores": "scores sigmoid(RM reward) of all K responses",
    "labels": "binary labels: RM reward > group mean",
    "pairs": "pair (best, random other) of each RM-ranked group",
}


# ---- configuration ----------------------------------------------------------------------------------------------


@dataclass
class DemoConfig:
    """The fields of ``rewardalign demo`` (any can be given as ``--field value``, nested ones with dots)."""

    task: str = opt("arithmetic", "gym task: arithmetic, sort, keyword, package.module:Class or path/file.py:Class")
    task_args: dict[str, Any] = opt(help="the task's knobs, e.g. {max_operand: 9}", factory=dict)
    seed: int = opt(0, "seed of every stage")
    output: str = opt("runs/demo", "output folder (stages are cached there)")
    quick: bool = opt(False, "a CI-sized run: smaller SFT, fewer prompts, steps and evaluation samples")
    # SFT
    model_init: dict[str, Any] = opt(help="the tiny Llama's size (LlamaConfig fields)", factory=lambda: {
        "hidden_size": 128, "num_layers": 2, "num_heads": 4, "vocab_size": 256})
    sft_examples: int = opt(20000, "demonstrations generated for SFT")
    sft_steps: int | None = opt(None, "cap on SFT optimizer steps, stopping earlier when the held-out gold stalls "
                                "(default: the task's, 2000; arithmetic 4000)")
    sft_batch_size: int = opt(32, "SFT batch size")
    sft_learning_rate: float = opt(1e-3, "SFT peak learning rate (cosine schedule)")
    sft_eval_every: int = opt(100, "SFT: gold reward of samples on held-out prompts every N steps")
    sft_eval_prompts: int = opt(128, "SFT: held-out prompts of that evaluation (one sample each)")
    sft_patience: int | None = opt(None, "SFT: stop after N evaluations without improvement, the best weights "
                                   "kept (default: the task's, 3; arithmetic trains to its cap)")
    max_length: int | None = opt(None, "longest prompt + response in tokens, every stage (default: fitted to the "
                                 "task: 48, or more where its longest prompt and demonstration need it)")
    # preference data
    prompts: int = opt(1024, "preference prompts sampled from the SFT policy")
    k: int = opt(4, "K: responses sampled per preference prompt")
    sample_temperature: float = opt(1.0, "temperature of those samples")
    heldout_fraction: float = opt(0.125, "share of the groups held out (likelihood drift)")
    annotator: dict[str, Any] = opt(help="the Bradley-Terry 'human': {temperature, flip_prob}",
                                    factory=lambda: {"temperature": 0.1, "flip_prob": 0.0})
    # reward model
    rm_epochs: float = opt(3.0, "cap on reward-model epochs (it stops earlier when held-out accuracy stalls)")
    rm_batch_size: int = opt(32, "reward-model batch size (pairs)")
    rm_kind: str = opt("likelihood", "reward model: likelihood (the SFT model's own beta / |y| * log pi(y|x), "
                                     "trained by Bradley-Terry: SimPO's reward) or bt (a score head on the SFT "
                                     "model, the papers' reward model: it fails the gate on keyword and reverse)")
    rm_learning_rate: float | None = opt(None, "reward-model learning rate (default: the kind's, RM_LEARNING_RATES)")
    rm_center_coefficient: float = opt(0.01, "reward-model centring weight (bt; a likelihood model is centred by "
                                       "its offset)")
    rm_eval_every: int = opt(20, "reward model: accuracy on the held-out 10% of the pairs every N steps")
    rm_patience: int = opt(5, "reward model: stop after N evaluations without improvement (best one kept)")
    rm_members: int = opt(1, "reward models of seeds seed, seed + 1, ... on the same pairs; above 1 an ensemble, "
                          "whose mean reward annotates")
    score_transform: str = opt("sigmoid", "RM reward -> score: sigmoid or minmax")
    # alignment
    methods: list[str] = opt(help="the methods to align (see Methods below)", factory=lambda: list(DEFAULT_METHODS))
    method_args: dict[str, dict[str, Any]] = opt(help="per method: {learning_rate, objective_args}", factory=dict)
    align_steps: int = opt(200, "optimizer steps of every method")
    align_batch_size: int = opt(8, "groups per step of every method")
    # evaluation
    eval_prompts: int = opt(256, "held-out evaluation prompts")
    eval_samples: int = opt(4, "samples per evaluation prompt")
    eval_temperature: float = opt(1.0, "evaluation sampling temperature")
    sharpened_temperature: float | None = opt(0.5, "also the SFT policy sampled at this temperature, untrained, when "
                                              "it is below eval_temperature: the gain sharpening alone gives "
                                              "(null: not evaluated)")
    # report and runtime
    plots: bool = opt(True, "write the plots")
    verbose: bool = opt(True, "print progress")
    threads: int = opt(1, "torch CPU threads (one is fastest for the tiny model)")
    reuse: bool = opt(True, "reuse cached stages whose settings match")
    force: bool = opt(False, "continue and rank the methods even when SFT or the reward model did not learn")

    def check(self) -> None:
        try:
            get_task(self.task, **self.task_args)
        except (TypeError, ValueError) as err:  # an unknown task, or knobs the task does not have
            raise ConfigError(f"task {self.task!r} with task_args {self.task_args}: {err}") from err
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown demo method(s) {unknown}; known: {', '.join(METHODS)}")
        for name, args in self.method_args.items():
            if name not in METHODS:
                raise ConfigError(f"method_args.{name}: unknown method; known: {', '.join(METHODS)}")
            extra = set(args) - {"learning_rate", "objective_args"}
            if extra:
                raise ConfigError(f"method_args.{name}: only learning_rate and objective_args, got {sorted(extra)}")
        for name in ("sft_steps", "sft_eval_every", "sft_eval_prompts", "sft_patience", "rm_eval_every",
                     "rm_patience", "rm_members"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"max_length must be at least 2 tokens (a prompt's and a response's), got "
                              f"{self.max_length}; leave it out to fit it to the task")
        if self.k < 2:
            raise ConfigError(f"k must be >= 2 (responses sampled per prompt), got {self.k}")
        if self.rm_kind not in RM_LEARNING_RATES:
            raise ConfigError(f"rm_kind must be one of {', '.join(RM_LEARNING_RATES)}, got {self.rm_kind!r}")
        if self.score_transform not in ("sigmoid", "minmax"):
            raise ConfigError(f"score_transform must be sigmoid or minmax, got {self.score_transform!r}")
        if self.sharpened_temperature is not None and not self.sharpened_temperature > 0.0:
            raise ConfigError(f"sharpened_temperature must be above 0 or null, got {self.sharpened_temperature}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ConfigError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        try:
            FeedbackConfig(**self.annotator)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"annotator: {err}") from err

    @property
    def rm_lr(self) -> float:
        """The reward model's learning rate: ``rm_learning_rate``, or :data:`RM_LEARNING_RATES` of ``rm_kind``."""
        return self.rm_learning_rate if self.rm_learning_rate is not None else RM_LEARNING_RATES[self.rm_kind]

    def method(self, name: str) -> MethodSpec:
        """The method's spec with this config's ``method_args`` applied. Its learning rate is the one tuned for the
        nearer alignment budget, on a log scale: :data:`METHODS`' (40 steps, --quick) below sqrt(40 x 200) = 89
        steps, else :data:`FULL_BUDGET_LEARNING_RATES`' (200 steps, the default)."""
        spec = METHODS[name]
        full_budget = self.align_steps ** 2 > QUICK["align_steps"] * DemoConfig.align_steps
        if full_budget and name in FULL_BUDGET_LEARNING_RATES:
            spec = dataclasses.replace(spec, learning_rate=FULL_BUDGET_LEARNING_RATES[name])
        over = self.method_args.get(name, {})
        return dataclasses.replace(
            spec, learning_rate=float(over.get("learning_rate", spec.learning_rate)),
            objective_args={**spec.objective_args, **over.get("objective_args", {})})


QUICK: dict[str, Any] = {"prompts": 512, "align_steps": 40, "eval_prompts": 64, "eval_samples": 2}
"""What ``--quick`` changes: a smaller run (fewer preference prompts, alignment steps and evaluation samples); the
stages that must learn keep the defaults' caps (SFT the task's, 2000 steps or arithmetic's 4000; the reward
model 3 epochs).
Measured on tuning seed 1000 (``python benchmarks/claims.py --stages --quick``): with SFT capped at 1000 steps the
tiny model had not learned arithmetic (held-out gold 0.35 against random responses' 0.24 and demonstrations'
0.75: the quality gate stops the demo; a learning rate of 3e-3 instead of 1e-3 gave arithmetic 0.41 but sort 0.45
instead of 0.65); with 256 prompts and one reward-model epoch the reward model ordered only 0.48 (keyword) of
held-out pairs as the gold reward does."""


MIN_MAX_LENGTH = 48
"""The demo's sequence length unless a task needs more (:func:`fitted_max_length`)."""


def fitted_max_length(task: Task, sft_examples: int, seed: int) -> int:
    """The shortest ``max_length`` (at least :data:`MIN_MAX_LENGTH`) at which no stage cuts a prompt or a
    well-formed response: with ``p`` the longest prompt and ``r`` the longest well-formed response (demonstration
    or best response) of the SFT data, in UTF-8 bytes (a byte-level BPE never has more tokens than bytes; plain
    text adds no BOS),

        max_length = max(MIN_MAX_LENGTH, p + r + 1, 2 p)

    ``+ 1`` is the EOS, and ``2 p`` keeps the whole prompt within its default share (``max_prompt_length``: half of
    ``max_length``). Only samples longer than every well-formed response (within the generation budget's quarter
    to spare) can still be cut, as the stages' summaries count. At 48 the keyword task cut a fifth of its
    demonstrations and its reward model never saw a long response whole."""
    rows = make_sft_data(task, sft_examples, seed=seed)
    longest_prompt = max(len(r["prompt"].encode()) for r in rows)
    longest_response = max(max(len(r["response"].encode()), len(task.best_response(r["prompt"]).encode()))
                           for r in rows)
    return max(MIN_MAX_LENGTH, longest_prompt + longest_response + 1, 2 * longest_prompt)


def demo_config(raw: dict[str, Any] | None = None) -> DemoConfig:
    """A checked :class:`DemoConfig` from a mapping; ``quick: true`` first applies :data:`QUICK` (fields given
    explicitly still win); ``sft_steps`` and ``sft_patience`` not given are the task's (:attr:`Task.sft_steps`), and
    ``max_length`` is fitted to it (:func:`fitted_max_length`)."""
    raw = dict(raw or {})
    base = dict(QUICK) if raw.get("quick") else {}
    cfg = from_dict(DemoConfig, base | raw, "demo")
    cfg.check()
    task = get_task(cfg.task, **cfg.task_args)
    cfg.sft_steps = task.sft_steps if cfg.sft_steps is None else cfg.sft_steps
    cfg.sft_patience = task.sft_patience if cfg.sft_patience is None else cfg.sft_patience
    if cfg.max_length is None:
        cfg.max_length = fitted_max_length(task, cfg.sft_examples, cfg.seed)
    return cfg


PIPELINE_VERSION = 3
"""Part of every cache key: bumped when a stage's code changes what it produces, so old caches are rebuilt."""
