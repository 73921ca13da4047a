"""``rewardalign demo``: the whole pipeline of the papers on a gym task, offline, in one command.

    rewardalign demo [--quick] [--output runs/demo] [--task arithmetic] [--seed 0] [--field value ...]

Stages (each a public function, cached in the output folder under a key of its settings, so a rerun or the
claims benchmark reuses what is already built):

1. **data**: SFT demonstrations of the task (imperfect: the style facet only at chance), preference prompts,
   evaluation prompts (:func:`make_data`);
2. **SFT**: a tiny Llama and a BPE tokenizer built from a config, fine-tuned on the demonstrations
   (:func:`train_sft`);
3. **samples**: K = 4 responses per preference prompt sampled from the SFT policy (temperature 1), scored by
   the gold reward (:func:`sample_groups`). Duplicate samples are removed from their group, so some groups
   have K < 4; groups left with K < 2 carry no preference and are filtered for EVERY method (so all methods
   train on the same prompts) and counted in the report;
4. **human preferences**: every pair of each group's responses labelled by a Bradley-Terry draw on the gold
   reward (``annotator.temperature``, ``annotator.flip_prob``): the "human" preference data
   (:func:`preference_pairs`);
5. **reward model**: a Bradley-Terry reward model (a scalar head on the SFT model) trained on those pairs
   (:func:`train_reward_model_stage`);
6. **annotation**: every response of the training and held-out groups scored by the reward model
   (:func:`annotate_groups`): ``rewards`` = the RM logit r, ``scores`` = sigmoid(r) (``score_transform``:
   ``sigmoid``, or ``minmax`` over the observed range), ``labels`` = 1 where r is above its group's mean
   (a thumbs up for the better-than-average responses, the KTO/UNA binarisation of a scored group);
7. **alignment**: each method on the SAME annotated groups (:func:`align_method`), each reading the feedback
   its paper uses (:data:`METHODS`): DRO, RPO, DRDO and SPO(-abs) the RM rewards of all K responses;
   UNA-score the scores; UNA-binary and KTO the binary labels; DPO, IPO and SimPO the pair (best, random
   other) of each RM-ranked group (``pairs: best_vs_random``, the Zephyr/UltraFeedback binarisation);
8. **evaluation**: each policy sampled on held-out prompts (:func:`evaluate_run`): gold reward mean (95% CI
   over prompts), win rate against the SFT policy's samples (same prompts, same sampling seed), KL(pi || SFT)
   (Monte-Carlo on the policy's samples), and the log-prob shift of the held-out groups' chosen (best by RM)
   and rejected (worst by RM) responses;
9. **report**: ``compare_runs`` (``compare.md``, ``compare.json``, ``training_curves.png``,
   ``reward_kl_frontier.png``, ``likelihood_drift.png``) plus ``report.md`` (setup, the table, the
   choices) and ``demo.json`` (everything, for machines) in the output folder.

Budget. Every method trains ``align_steps`` steps of ``align_batch_size`` groups (the same number of
gradient steps and groups for all, constant learning rate, Adam) at its paper's default beta; the learning rate
of each method in :data:`METHODS` is the best of the same grid {1e-5, 3e-5, 1e-4, 3e-4, 1e-3} by held-out gold
reward averaged over the tuning seeds 1000-1002 (``python benchmarks/claims.py --tune``), never the demo's seed.

Choices, and why:

- one reward model for everything: every method reads feedback derived from the same BT reward model trained
  on the same "human" pairs, so the comparison is between objectives, not between annotators;
- binary labels from the RM (above the group mean) rather than the gold threshold: a gold-threshold label would
  hand KTO and UNA-binary a noiseless annotator the others do not get; UNA's score-versus-binary claim (003)
  is then exactly "the RM's score against its own binarisation";
- scores = sigmoid(RM logit): a BT logit is a log-odds, so sigmoid(r) is the probability of beating a response
  of reward 0 (``score_transform: minmax`` rescales over the observed range instead);
- groups with K < 2 are removed for all methods alike (point-wise methods could use them; they would then see
  prompts the pairwise ones do not), and counted in the report;
- one torch thread (``threads``): the tiny model's matrices are too small for a second thread, and on a busy
  machine two threads were several times slower than one.

Seeded and deterministic: the same config and seed give the same table on the same machine (one thread also
keeps the floating-point reductions in a fixed order).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import random
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, apply_overrides, from_dict, load_yaml, parse_overrides
from ..data.schema import DropReport, Group
from .data import make_prompts, make_sft_data, read_jsonl, write_jsonl
from .feedback import FeedbackConfig, build_groups, build_pairs
from .tasks import Task, get_task, gold_judge

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "QUICK",
    "DemoConfig",
    "MethodSpec",
    "World",
    "align_method",
    "annotate_groups",
    "build_world",
    "evaluate_run",
    "make_data",
    "preference_pairs",
    "run_demo",
    "sample_groups",
    "split_groups",
    "train_reward_model_stage",
    "train_sft",
]


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


# Learning rates: for each method the best of the grid {1e-5, 3e-5, 1e-4, 3e-4, 1e-3} by held-out gold reward
# averaged over the tuning seeds 1000, 1001 and 1002 (`python benchmarks/claims.py --tune`), every method with the
# same steps, batch size and default beta; the demo and the claims run other seeds (0, 1, 2, ...).
METHODS: dict[str, MethodSpec] = {
    "dro": MethodSpec("dro", "rewards", 1e-4, {}, "000/001 DRO: point-wise reward distillation"),
    "drdo": MethodSpec("drdo", "rewards", 3e-5, {}, "002 DRDO: reward differences + focal preference"),
    "una_score_mse": MethodSpec("una_score_mse", "scores", 3e-4, {}, "003 UNA on scores"),
    "una_binary_bce": MethodSpec("una_binary_bce", "labels", 3e-5, {}, "003 UNA on binary labels"),
    "spo_abs": MethodSpec("spo_abs", "rewards", 3e-4, {}, "004 SPO-abs: listwise soft preferences"),
    "rpo": MethodSpec("rpo", "rewards", 3e-4, {}, "Fisch 2024 reward distillation"),
    "dpo": MethodSpec("dpo", "pairs", 3e-5, {}, "baseline: DPO, best vs random"),
    "ipo": MethodSpec("ipo", "pairs", 1e-4, {}, "baseline: IPO, best vs random"),
    "simpo": MethodSpec("simpo", "pairs", 1e-5, {}, "baseline: SimPO, best vs random"),
    "kto": MethodSpec("kto", "labels", 3e-4, {}, "baseline: KTO on binary labels"),
    "spo": MethodSpec("spo", "rewards", 1e-4, {}, "004 SPO: listwise soft preferences"),
}
"""Every method the demo and the claims benchmark know, by run name."""

DEFAULT_METHODS = ("dro", "drdo", "una_score_mse", "una_binary_bce", "spo_abs", "rpo", "dpo", "ipo", "simpo", "kto")

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

    task: str = "arithmetic"
    task_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    output: str = "runs/demo"
    quick: bool = False
    # SFT
    model_init: dict[str, Any] = field(default_factory=lambda: {
        "hidden_size": 64, "num_layers": 2, "num_heads": 4, "vocab_size": 256})
    sft_examples: int = 4000
    sft_steps: int = 2000
    sft_batch_size: int = 32
    sft_learning_rate: float = 3e-3
    max_length: int = 48
    # preference data
    prompts: int = 1024
    k: int = 4
    sample_temperature: float = 1.0
    heldout_fraction: float = 0.125
    annotator: dict[str, Any] = field(default_factory=lambda: {"temperature": 0.1, "flip_prob": 0.0})
    # reward model
    rm_epochs: float = 3.0
    rm_batch_size: int = 32
    rm_learning_rate: float = 1e-3
    rm_center_coefficient: float = 0.01
    score_transform: str = "sigmoid"
    # alignment
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    align_steps: int = 200
    align_batch_size: int = 8
    # evaluation
    eval_prompts: int = 256
    eval_samples: int = 4
    eval_temperature: float = 1.0
    # report and runtime
    plots: bool = True
    verbose: bool = True
    threads: int = 1
    reuse: bool = True

    def check(self) -> None:
        get_task(self.task, **self.task_args)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown demo method(s) {unknown}; known: {', '.join(METHODS)}")
        for name, args in self.method_args.items():
            if name not in METHODS:
                raise ConfigError(f"method_args.{name}: unknown method; known: {', '.join(METHODS)}")
            extra = set(args) - {"learning_rate", "objective_args"}
            if extra:
                raise ConfigError(f"method_args.{name}: only learning_rate and objective_args, got {sorted(extra)}")
        if self.k < 2:
            raise ConfigError(f"k must be >= 2 (responses sampled per prompt), got {self.k}")
        if self.score_transform not in ("sigmoid", "minmax"):
            raise ConfigError(f"score_transform must be sigmoid or minmax, got {self.score_transform!r}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ConfigError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        FeedbackConfig(**self.annotator)

    def method(self, name: str) -> MethodSpec:
        """The method's spec with this config's ``method_args`` applied."""
        spec = METHODS[name]
        over = self.method_args.get(name, {})
        return dataclasses.replace(
            spec, learning_rate=float(over.get("learning_rate", spec.learning_rate)),
            objective_args={**spec.objective_args, **over.get("objective_args", {})})


QUICK: dict[str, Any] = {
    "sft_examples": 2000, "sft_steps": 300, "prompts": 256, "rm_epochs": 1.0, "align_steps": 40,
    "eval_prompts": 64, "eval_samples": 2,
}
"""What ``--quick`` changes: a CI-sized run (smaller SFT, fewer prompts, steps and evaluation samples)."""


def demo_config(raw: dict[str, Any] | None = None) -> DemoConfig:
    """A checked :class:`DemoConfig` from a mapping; ``quick: true`` first applies :data:`QUICK` (fields given
    explicitly still win)."""
    raw = dict(raw or {})
    base = dict(QUICK) if raw.get("quick") else {}
    cfg = from_dict(DemoConfig, base | raw, "demo")
    cfg.check()
    return cfg


PIPELINE_VERSION = 2
"""Part of every cache key: bumped when a stage's code changes what it produces, so old caches are rebuilt."""


# ---- small utilities --------------------------------------------------------------------------------------------


def _key(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stages:
    """Completed stages of an output folder: ``.stages/<name>.json`` holds the key of the settings that built
    it; a stage whose key matches is not run again."""

    def __init__(self, root: Path, log: Callable[[str], None], reuse: bool = True):
        self.root = root
        self.log = log
        self.reuse = reuse

    def run(self, name: str, settings: Any, build: Callable[[], Any]) -> Any:
        marker = self.root / ".stages" / f"{name}.json"
        key = _key(settings)
        if self.reuse and marker.is_file():
            saved = json.loads(marker.read_text())
            if saved.get("key") == key:
                self.log(f"[{name}] cached")
                return saved.get("result")
        start = time.perf_counter()
        result = build()
        seconds = time.perf_counter() - start
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"key": key, "seconds": round(seconds, 2), "result": result}, indent=1,
                                     default=str))
        self.log(f"[{name}] {seconds:.1f} s")
        return result


@contextlib.contextmanager
def _log_to(path: Path):
    """The trainers' printed logs go to ``path`` (the demo prints its own progress lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f, contextlib.redirect_stdout(f):
        yield


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` torch CPU threads (restored after). One thread is the default: the tiny models' matrices
    are too small for a second thread to pay off, and a busy machine makes multithreaded torch several times
    slower; it also makes the results independent of the core count."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


# ---- the world: data, SFT, samples, preferences, reward model, annotation ---------------------------------------


@dataclass
class World:
    """What every aligned policy shares: paths of the SFT model, the reward model and the data, and the
    statistics of their making (for the report)."""

    root: str
    task: str
    sft: str
    rm: str
    train: str
    heldout: str
    eval_prompts: list[str]
    stats: dict[str, Any]


def make_data(cfg: DemoConfig, task: Task, root: Path) -> dict[str, Any]:
    """SFT demonstrations (``data/sft.jsonl``), preference and evaluation prompts (``data/*.json``)."""
    data = root / "data"
    sft_rows = make_sft_data(task, cfg.sft_examples, seed=cfg.seed)
    write_jsonl(({"prompt": r["prompt"], "responses": [r["response"]]} for r in sft_rows), data / "sft.jsonl")
    prompts = make_prompts(task, cfg.prompts, seed=cfg.seed + 1)
    seen = set(prompts) | {r["prompt"] for r in sft_rows}
    eval_prompts = held_out_prompts(make_prompts(task, 20 * cfg.eval_prompts, seed=cfg.seed + 2), seen,
                                    cfg.eval_prompts)
    (data / "prompts.json").write_text(json.dumps(prompts))
    (data / "eval_prompts.json").write_text(json.dumps(eval_prompts))
    demo_gold = statistics.mean(task.gold_reward(r["prompt"], r["response"]) for r in sft_rows)
    return {"sft_examples": len(sft_rows), "demonstration_gold_mean": demo_gold, "prompts": len(prompts),
            "eval_prompts": len(eval_prompts), "eval_prompts_seen_in_training": sum(p in seen for p in eval_prompts)}


def held_out_prompts(candidates: Sequence[str], seen: set[str], n: int) -> list[str]:
    """``n`` distinct evaluation prompts, those never seen in training (SFT or preference data) first, in the
    candidates' order; seen ones fill up only where the task has too few prompts (the keyword task has 120)."""
    distinct = list(dict.fromkeys(candidates))
    unseen = [p for p in distinct if p not in seen]
    return (unseen + [p for p in distinct if p in seen])[:n]


def train_sft(cfg: DemoConfig, root: Path) -> dict[str, Any]:
    """The tiny model and tokenizer from ``model_init``, fine-tuned on the demonstrations into ``sft/``."""
    with _log_to(root / "logs" / "sft.log"):
        summary = _run_sft(cfg, root)
    return {"steps": summary["steps"], "train_loss": summary["train_loss"], "seconds": summary["seconds"]}


def _run_sft(cfg: DemoConfig, root: Path) -> dict[str, Any]:
    from ..train.sft_command import run_sft

    return run_sft({
        "model_init": dict(cfg.model_init), "data": str(root / "data" / "sft.jsonl"), "format": "group",
        "max_length": cfg.max_length, "output_dir": str(root / "sft"), "max_steps": cfg.sft_steps,
        "per_device_train_batch_size": cfg.sft_batch_size, "learning_rate": cfg.sft_learning_rate,
        "lr_scheduler_type": "cosine", "warmup_steps": min(20, cfg.sft_steps // 10), "logging_steps": 25,
        "seed": cfg.seed, "disable_tqdm": True, "report_to": "none",
    })


def _sampling(task: Task, n: int, temperature: float, seed: int):
    from ..evaluate.generation import SamplingConfig

    return SamplingConfig(n_samples=n, temperature=temperature, max_new_tokens=task.max_new_tokens, seed=seed,
                          batch_size=256)


def sample_groups(cfg: DemoConfig, task: Task, root: Path) -> dict[str, Any]:
    """K samples per preference prompt from the SFT policy, as gold-scored groups (``data/groups_gold.jsonl``);
    split into training and held-out groups; groups with K < 2 after duplicate removal are filtered."""
    from ..evaluate.generation import generate_samples
    from ..modeling.tiny import load_tokenizer
    from ..train.common import load_causal_lm

    prompts = json.loads((root / "data" / "prompts.json").read_text())
    model = load_causal_lm(str(root / "sft"))
    samples = generate_samples(model, load_tokenizer(str(root / "sft")), prompts,
                               _sampling(task, cfg.k, cfg.sample_temperature, cfg.seed + 3))
    drops = DropReport()
    feedback = FeedbackConfig(**(cfg.annotator | {"seed": cfg.seed}))
    groups = build_groups(task, prompts, samples.texts, feedback, drops)
    train, heldout, filtered = split_groups(groups, cfg.heldout_fraction, cfg.seed)
    write_jsonl(train, root / "data" / "groups_gold.jsonl")
    write_jsonl(heldout, root / "data" / "heldout_gold.jsonl")
    golds = [r for g in groups for r in g.meta["gold_rewards"]]
    k_hist: dict[str, int] = {}
    for g in groups:
        k_hist[str(g.k)] = k_hist.get(str(g.k), 0) + 1
    return {
        "prompts": len(prompts), "samples": len(prompts) * cfg.k,
        "samples_removed": drops.counts(),
        "groups_by_k": k_hist, "groups_k_below_2_filtered": filtered,
        "prompts_without_any_response": len(prompts) - len(groups),
        "train_groups": len(train), "heldout_groups": len(heldout),
        "sample_gold_mean": statistics.mean(golds), "sample_gold_std": statistics.pstdev(golds),
    }


def split_groups(groups: Sequence[Group], heldout_fraction: float, seed: int
                 ) -> tuple[list[Group], list[Group], int]:
    """(training groups, held-out groups, number filtered): groups with K < 2 (every other sample was a
    duplicate) carry no preference and are filtered for every method; the rest is split at random (seeded)."""
    kept = [g for g in groups if g.k >= 2]
    order = list(range(len(kept)))
    random.Random(f"heldout:{seed}").shuffle(order)
    n_held = max(1, int(round(heldout_fraction * len(kept)))) if kept else 0
    held = set(order[:n_held])
    train = [g for i, g in enumerate(kept) if i not in held]
    heldout = [g for i, g in enumerate(kept) if i in held]
    return train, heldout, len(groups) - len(kept)


def _load_gold_groups(path: Path) -> list[Group]:
    return [Group(prompt=row["prompt"], responses=row["responses"], rewards=row.get("rewards"),
                  scores=row.get("scores"), labels=row.get("labels"), meta=row.get("meta", {}))
            for row in read_jsonl(path)]


def preference_pairs(cfg: DemoConfig, root: Path, annotator: dict[str, Any] | None = None,
                     name: str = "human_pairs") -> dict[str, Any]:
    """The "human" preferences: every pair of each training group labelled by a Bradley-Terry draw on the gold
    reward (``annotator``: :class:`FeedbackConfig` fields), written as prompt/chosen/rejected rows
    (``data/<name>.jsonl``)."""
    feedback = FeedbackConfig(**((annotator or cfg.annotator) | {"seed": cfg.seed, "pairing": "all"}))
    drops = DropReport()
    pairs = build_pairs(_load_gold_groups(root / "data" / "groups_gold.jsonl"), feedback, drops)
    write_jsonl(({"prompt": p.prompt, "chosen": p.responses[0], "rejected": p.responses[1]} for p in pairs),
                root / "data" / f"{name}.jsonl")
    agree = sum(bool(p.meta["agrees_with_gold"]) for p in pairs)
    return {"pairs": len(pairs), "ties_skipped": len(drops), "agree_with_gold": agree / max(len(pairs), 1)}


def train_reward_model_stage(cfg: DemoConfig, root: Path, pairs: str = "human_pairs", out: str = "rm",
                             kind: str = "bt") -> dict[str, Any]:
    """A reward model (``kind`` bt or oracle) on the SFT model, trained on ``data/<pairs>.jsonl``."""
    with _log_to(root / "logs" / f"{out}.log"):
        summary = _train_rm(cfg, root, pairs, out, kind)
    final = summary.get("final_eval") or {}
    return {"kind": kind, "train_pairs": summary["train_pairs"], "eval_pairs": summary["eval_pairs"],
            "heldout_accuracy": final.get("eval_accuracy"), "heldout_bt_loss": final.get("eval_bt_loss"),
            "seconds": summary["seconds"]}


def _train_rm(cfg: DemoConfig, root: Path, pairs: str, out: str, kind: str) -> dict[str, Any]:
    from ..rewards.train import train_reward_model

    return train_reward_model({
        "kind": kind, "model": str(root / "sft"), "data": str(root / "data" / f"{pairs}.jsonl"),
        "format": "pairs", "eval_fraction": 0.1, "center_coefficient": cfg.rm_center_coefficient,
        "max_length": cfg.max_length, "output_dir": str(root / out), "num_train_epochs": cfg.rm_epochs,
        "per_device_train_batch_size": cfg.rm_batch_size, "learning_rate": cfg.rm_learning_rate,
        "lr_scheduler_type": "cosine", "warmup_steps": 5, "logging_steps": 20, "eval_strategy": "no",
        "seed": cfg.seed, "disable_tqdm": True, "report_to": "none",
    })


def _pairwise_agreement(groups: Sequence[Group]) -> float:
    """Share of response pairs with different gold rewards that the RM rewards order the same way."""
    agree = total = 0
    for g in groups:
        gold = g.meta["gold_rewards"]
        for i in range(g.k):
            for j in range(i + 1, g.k):
                if gold[i] != gold[j]:
                    total += 1
                    agree += (gold[i] - gold[j]) * (g.rewards[i] - g.rewards[j]) > 0
    return agree / total if total else math.nan


def annotate_groups(cfg: DemoConfig, root: Path, rm: str = "rm", suffix: str = "") -> dict[str, Any]:
    """RM rewards, scores and labels for the training and held-out groups (``data/train{suffix}.jsonl``,
    ``data/heldout{suffix}.jsonl``); the gold rewards stay in ``meta.gold_rewards`` for the report only."""
    from ..data import load_groups, write_groups_jsonl
    from ..rewards.annotate import annotate

    stats: dict[str, Any] = {}
    for part in ("groups", "heldout"):
        gold_path = root / "data" / f"{'groups' if part == 'groups' else 'heldout'}_gold.jsonl"
        bare = root / "data" / f"{part}_bare{suffix}.jsonl"
        # Only the texts go to the annotator: no gold-derived field may reach training.
        write_jsonl(({"prompt": row["prompt"], "responses": row["responses"], "meta": row["meta"]}
                     for row in read_jsonl(gold_path)), bare)
        out = root / "data" / f"{part}_rm{suffix}.jsonl"
        annotate({"data": str(bare), "format": "group", "output": str(out),
                  "source": {"type": "reward_model", "path": str(root / rm), "batch_size": 256},
                  "transform": "none", "progress": False, "cache_dir": str(root / "cache" / "annotate")},
                 verbose=False)
        groups, _ = load_groups(str(out), format="group")
        stats[part] = groups
    flat = [r for g in stats["groups"] + stats["heldout"] for r in g.rewards]
    lo, hi = min(flat), max(flat)
    result: dict[str, Any] = {"rm_reward_min": lo, "rm_reward_max": hi,
                              "rm_reward_mean": statistics.mean(flat), "rm_reward_std": statistics.pstdev(flat)}
    for part, name in (("groups", "train"), ("heldout", "heldout")):
        groups = [_with_feedback(g, cfg.score_transform, lo, hi) for g in stats[part]]
        write_groups_jsonl(groups, root / "data" / f"{name}{suffix}.jsonl")
        result[f"{name}_rm_gold_agreement"] = _pairwise_agreement(groups)
        result[f"{name}_groups"] = len(groups)
        result[f"{name}_label_share"] = statistics.mean(b for g in groups for b in g.labels)
    return result


def _with_feedback(g: Group, transform: str, lo: float, hi: float) -> Group:
    rewards = [float(r) for r in g.rewards]
    if transform == "sigmoid":
        scores = [1.0 / (1.0 + math.exp(-r)) if r >= 0 else math.exp(r) / (1.0 + math.exp(r)) for r in rewards]
    else:
        scores = [(r - lo) / (hi - lo) if hi > lo else 0.5 for r in rewards]
    mean = sum(rewards) / len(rewards)
    labels = [int(r > mean) for r in rewards]
    meta = {k: v for k, v in g.meta.items() if k not in ("row", "rows")}
    return Group(prompt=g.prompt, responses=list(g.responses), rewards=rewards, scores=scores, labels=labels,
                 meta=meta)


def build_world(cfg: DemoConfig, root: str | Path | None = None, log: Callable[[str], None] = print) -> World:
    """Stages 1-6 (data, SFT, samples, preferences, reward model, annotation) into ``root`` (default
    ``cfg.output``), each skipped when its cached key matches."""
    _quiet_transformers()
    root = Path(root if root is not None else cfg.output)
    root.mkdir(parents=True, exist_ok=True)
    task = get_task(cfg.task, **cfg.task_args)
    stages = Stages(root, log, cfg.reuse)
    base = {"version": PIPELINE_VERSION, "task": cfg.task, "task_args": cfg.task_args, "seed": cfg.seed}
    data_key = base | {"sft_examples": cfg.sft_examples, "prompts": cfg.prompts, "eval_prompts": cfg.eval_prompts}
    sft_key = data_key | {f: getattr(cfg, f) for f in ("model_init", "sft_steps", "sft_batch_size",
                                                       "sft_learning_rate", "max_length")}
    sample_key = sft_key | {f: getattr(cfg, f) for f in ("k", "sample_temperature", "heldout_fraction",
                                                          "annotator")}
    rm_key = sample_key | {f: getattr(cfg, f) for f in ("rm_epochs", "rm_batch_size", "rm_learning_rate",
                                                         "rm_center_coefficient")}
    stats = {
        "data": stages.run("data", data_key, lambda: make_data(cfg, task, root)),
        "sft": stages.run("sft", sft_key, lambda: train_sft(cfg, root)),
        "samples": stages.run("samples", sample_key, lambda: sample_groups(cfg, task, root)),
        "preferences": stages.run("preferences", sample_key, lambda: preference_pairs(cfg, root)),
        "reward_model": stages.run("reward_model", rm_key, lambda: train_reward_model_stage(cfg, root)),
        "annotation": stages.run("annotation", rm_key | {"score_transform": cfg.score_transform},
                                 lambda: annotate_groups(cfg, root)),
    }
    return World(root=str(root), task=cfg.task, sft=str(root / "sft"), rm=str(root / "rm"),
                 train=str(root / "data" / "train.jsonl"), heldout=str(root / "data" / "heldout.jsonl"),
                 eval_prompts=json.loads((root / "data" / "eval_prompts.json").read_text()), stats=stats)


# ---- alignment and evaluation -----------------------------------------------------------------------------------


def align_method(cfg: DemoConfig, world: World, spec: MethodSpec, run_dir: str | Path, *,
                 data: str | None = None, steps: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Align the SFT policy with ``spec`` on the annotated training groups (or ``data``) into ``run_dir``."""
    from ..train.align_command import run_align

    run_dir = Path(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    steps = steps if steps is not None else cfg.align_steps
    raw = {
        "model": world.sft, "data": data or world.train, "format": "group", "objective": spec.objective,
        "objective_args": dict(spec.objective_args), "reference": "precompute", "max_length": cfg.max_length,
        "output_dir": str(run_dir), "cache_dir": str(Path(world.root) / "cache"), "max_steps": steps,
        "learning_rate": spec.learning_rate, "lr_scheduler_type": "constant", "warmup_steps": 0,
        "per_device_train_batch_size": cfg.align_batch_size, "seed": cfg.seed if seed is None else seed,
        "logging_steps": max(1, steps // 15), "disable_tqdm": True, "report_to": "none",
    }
    with _log_to(run_dir / "train.log"):
        return run_align(raw)


def _nested_rewards(result: dict[str, Any]) -> list[list[float]]:
    n_p, n_s = result["n_prompts"], result["n_samples"]
    rewards = [[math.nan] * n_s for _ in range(n_p)]
    for rec in result["samples"]:
        rewards[rec["prompt_index"]][rec["sample_index"]] = rec["reward"]
    return rewards


def evaluate_run(cfg: DemoConfig, world: World, model: str, run_dir: str | Path,
                 baseline_rewards: list[list[float]] | None = None) -> dict[str, Any]:
    """Gold reward, win rate against ``baseline_rewards`` (the SFT policy's, same prompts and sampling), KL from
    the SFT policy and held-out likelihood drift of ``model``; writes ``eval.json`` and ``samples.jsonl`` into
    ``run_dir`` and returns the metrics with ``rewards`` [P][n] (not written)."""
    from ..data import load_groups
    from ..evaluate import metrics
    from ..evaluate.evaluator import evaluate_model, json_ready

    task = get_task(cfg.task, **cfg.task_args)
    heldout, _ = load_groups(world.heldout, format="group")
    result = evaluate_model(
        model, world.eval_prompts, gold_judge(task), reference=world.sft, pairs=heldout,
        sampling=_sampling(task, cfg.eval_samples, cfg.eval_temperature, cfg.seed + 4),
        max_length=cfg.max_length)
    rewards = _nested_rewards(result)
    if baseline_rewards is not None:
        est, counts = metrics.win_rate(rewards, baseline_rewards)
        result |= {"win_rate": est.mean, "win_rate_ci": [est.lo, est.hi]} | counts
    samples = result.pop("samples")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "eval.json").write_text(json.dumps(json_ready(result), indent=2, default=str))
    with (run_dir / "samples.jsonl").open("w", encoding="utf-8") as f:
        for rec in samples:
            f.write(json.dumps(json_ready(rec), ensure_ascii=False) + "\n")
    return result | {"rewards": rewards}


def sft_baseline(cfg: DemoConfig, world: World, run_dir: str | Path) -> dict[str, Any]:
    """The SFT policy evaluated as a run of its own (``runs/sft``): the table's first row and the baseline
    of every win rate. Cached by the evaluation settings."""
    run_dir = Path(run_dir)
    key = _key({"version": PIPELINE_VERSION, "sft": _dir_key(world.sft), "eval": _eval_key(cfg),
                "eval_prompts": _key(world.eval_prompts), "heldout": _file_key(world.heldout)})
    cache = run_dir / "rewards.json"
    if cfg.reuse and cache.is_file() and (run_dir / "eval.json").is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return json.loads((run_dir / "eval.json").read_text()) | {"rewards": saved["rewards"]}
    result = evaluate_run(cfg, world, world.sft, run_dir)
    (run_dir / "summary.json").write_text(json.dumps({"objective": "sft", "steps": 0}))
    cache.write_text(json.dumps({"key": key, "rewards": result["rewards"]}))
    return result


def _eval_key(cfg: DemoConfig) -> dict[str, Any]:
    return {f: getattr(cfg, f) for f in ("task", "task_args", "seed", "eval_prompts", "eval_samples",
                                         "eval_temperature", "max_length")}


def _dir_key(path: str | Path) -> str:
    """A content key of a model directory (its weights and config files)."""
    h = hashlib.sha256()
    for p in sorted(Path(path).iterdir()):
        if p.is_file() and p.suffix in (".safetensors", ".json"):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def run_method(cfg: DemoConfig, world: World, name: str, spec: MethodSpec, run_dir: str | Path,
               baseline_rewards: list[list[float]], *, data: str | None = None, cache: bool = True
               ) -> dict[str, Any]:
    """Align and evaluate one method (cached in ``run_dir/run_key.json`` by every setting that matters);
    returns the evaluation metrics (without samples) and the training summary."""
    _quiet_transformers()
    run_dir = Path(run_dir)
    key = _key({"version": PIPELINE_VERSION, "spec": dataclasses.asdict(spec), "data": data or world.train,
                "data_key": _file_key(data or world.train), "sft": _dir_key(world.sft), "eval": _eval_key(cfg),
                "eval_prompts": _key(world.eval_prompts), "heldout": _file_key(world.heldout),
                "align": {f: getattr(cfg, f) for f in ("align_steps", "align_batch_size", "seed", "max_length")}})
    marker = run_dir / "run_key.json"
    if cache and marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        saved = json.loads(marker.read_text())
        return saved["result"]
    start = time.perf_counter()
    summary = align_method(cfg, world, spec, run_dir, data=data)
    result = evaluate_run(cfg, world, str(run_dir), run_dir, baseline_rewards)
    result.pop("rewards")
    out = {"name": name, "objective": spec.objective, "feedback": spec.feedback,
           "learning_rate": spec.learning_rate, "objective_args": summary_args(run_dir),
           "train_groups": summary["train_groups"], "steps": summary["steps"], "train_loss": summary["train_loss"],
           "seconds": round(time.perf_counter() - start, 2), "eval": _headline(result)}
    marker.write_text(json.dumps({"key": key, "result": out}, indent=1, default=str))
    return out


def _file_key(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def summary_args(run_dir: Path) -> dict[str, Any]:
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    return cfg.get("objective_args") or {}


HEADLINE = ("reward_mean", "reward_ci", "win_rate", "win_rate_ci", "kl", "kl_ci", "chosen_logp_shift",
            "chosen_logp_shift_ci", "rejected_logp_shift", "rejected_logp_shift_ci", "margin_shift")


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: result.get(k) for k in HEADLINE}
    length = result.get("length") or {}
    out["tokens_mean"] = length.get("tokens_mean")
    out["unfinished_fraction"] = length.get("unfinished_fraction")
    return out


# ---- the report -------------------------------------------------------------------------------------------------


def _fmt(value: Any, ci: Any = None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    text = f"{value:.{digits}f}"
    if ci and all(isinstance(c, (int, float)) and math.isfinite(c) for c in ci):
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


def results_table(rows: Sequence[dict[str, Any]]) -> str:
    """The demo's Markdown table: one row per policy (the SFT policy first)."""
    lines = ["| policy | feedback | lr | β | gold reward (95% CI) | win rate vs SFT (95% CI) | KL(π‖SFT) | "
             "Δ log p chosen | Δ log p rejected |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ev = r["eval"]
        beta = (r.get("objective_args") or {}).get("beta")
        lines.append(
            f"| {r['name']} | {FEEDBACK_TEXT.get(r.get('feedback'), r.get('feedback') or '–')} | "
            f"{r['learning_rate'] if r.get('learning_rate') is not None else '–'} | "
            f"{beta if beta is not None else '–'} | {_fmt(ev.get('reward_mean'), ev.get('reward_ci'))} | "
            f"{_fmt(ev.get('win_rate'), ev.get('win_rate_ci'))} | {_fmt(ev.get('kl'), ev.get('kl_ci'), 2)} | "
            f"{_fmt(ev.get('chosen_logp_shift'), None, 2)} | {_fmt(ev.get('rejected_logp_shift'), None, 2)} |")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counts.items()) or "none"


PLOT_NAMES = {"training_curves": "training curves (loss, log p of the chosen responses)",
              "reward_kl_frontier": "gold reward against KL(π‖SFT), one point per policy",
              "likelihood_drift": "likelihood drift of the held-out chosen and rejected responses"}


def observations(rows: Sequence[dict[str, Any]]) -> list[str]:
    """A few facts read off the table (no judgement beyond the confidence intervals)."""
    sft, methods = rows[0]["eval"], [r for r in rows[1:] if r["eval"].get("reward_mean") is not None]
    if not methods:
        return []
    lo_sft, hi_sft = sft.get("reward_ci") or (sft["reward_mean"], sft["reward_mean"])
    above = [r["name"] for r in methods if (r["eval"].get("reward_ci") or [0, 0])[0] > hi_sft]
    below = [r["name"] for r in methods if (r["eval"].get("reward_ci") or [1, 1])[1] < lo_sft]
    best = max(methods, key=lambda r: r["eval"]["reward_mean"])
    lowered = [r["name"] for r in methods if (r["eval"].get("chosen_logp_shift") or 0.0) < 0]
    out = [f"- Highest gold reward: `{best['name']}` ({best['eval']['reward_mean']:.3f}, KL "
           f"{best['eval']['kl']:.2f}); the SFT policy has {sft['reward_mean']:.3f}."]
    out.append("- Above the SFT policy (95% CIs apart): " + (", ".join(f"`{n}`" for n in above) or "none")
               + "; below it: " + (", ".join(f"`{n}`" for n in below) or "none") + ".")
    out.append("- Lowered the held-out chosen responses' log-prob: " + (", ".join(f"`{n}`" for n in lowered)
                                                                       or "none") + ".")
    unfinished = [(r["name"], r["eval"].get("unfinished_fraction") or 0.0) for r in methods]
    unfinished = [(n, f) for n, f in unfinished if f > 0.1]
    if unfinished:
        out.append("- Samples that reach max_new_tokens without ending (the policy pushed EOS down): "
                   + ", ".join(f"`{n}` ({100 * f:.0f}%)" for n, f in unfinished) + ".")
    out.append("- One seed, one run per method: `python benchmarks/claims.py` measures the papers' claims over "
               "several seeds with beta sweeps.")
    return out


def write_report(cfg: DemoConfig, world: World, rows: list[dict[str, Any]], plots: dict[str, str],
                 seconds: float, command: str) -> str:
    """``report.md`` in the output folder: the setup, the table, the choices and where the plots are."""
    s = world.stats
    smp, pref, rm, ann, sft = s["samples"], s["preferences"], s["reward_model"], s["annotation"], s["sft"]
    task = get_task(cfg.task, **cfg.task_args)
    text = [
        f"# rewardalign demo: {cfg.task}, seed {cfg.seed}",
        "",
        f"`{command}` — {seconds:.0f} s wall time.",
        "",
        "## Setup",
        "",
        f"- **Task** `{cfg.task}` ({type(task).__name__}): gold reward in [0, 1], "
        f"{(task.__doc__ or '').strip().splitlines()[0].replace('``', '`')}",
        f"- **SFT**: a tiny Llama {cfg.model_init} and a BPE tokenizer built from the data, "
        f"{sft['steps']} steps × {cfg.sft_batch_size} on {s['data']['sft_examples']} imperfect demonstrations "
        f"(their gold reward: {s['data']['demonstration_gold_mean']:.3f}).",
        f"- **Samples**: K = {cfg.k} responses per prompt from the SFT policy (temperature "
        f"{cfg.sample_temperature}) on {smp['prompts']} prompts; gold reward of the samples "
        f"{smp['sample_gold_mean']:.3f} ± {smp['sample_gold_std']:.3f} (std). Samples removed from their group: "
        f"{_counts(smp['samples_removed'])}; groups by K {smp['groups_by_k']}; "
        f"**{smp['groups_k_below_2_filtered']} groups with K < 2 filtered** for every method; "
        f"{smp['train_groups']} training and {smp['heldout_groups']} held-out groups.",
        f"- **Human preferences**: every pair of each training group, labelled by a Bradley-Terry draw on the "
        f"gold reward (temperature {cfg.annotator.get('temperature', 0.1)}, flip probability "
        f"{cfg.annotator.get('flip_prob', 0.0)}): {pref['pairs']} pairs ({pref['ties_skipped']} exact ties "
        f"skipped), {100 * pref['agree_with_gold']:.1f}% agree with the gold reward.",
        f"- **Reward model**: Bradley-Terry head on the SFT model, {cfg.rm_epochs:g} epoch(s) on those pairs; "
        f"held-out pair accuracy {_fmt(rm.get('heldout_accuracy'))}; it orders "
        f"{100 * ann['heldout_rm_gold_agreement']:.1f}% of the held-out groups' response pairs as the gold "
        f"reward does.",
        f"- **Annotation** of the K responses: rewards = RM logit (mean {ann['rm_reward_mean']:.2f}, std "
        f"{ann['rm_reward_std']:.2f}); scores = {cfg.score_transform}(reward); labels = reward above the group's "
        f"mean ({100 * ann['train_label_share']:.0f}% desirable).",
        f"- **Alignment**: every method {cfg.align_steps} steps × {cfg.align_batch_size} groups (constant "
        f"learning rate, Adam), from the SFT policy, reference = the SFT policy; each objective's default β "
        f"(its paper's). Learning rate per method: the best of the same grid {{1e-5, 3e-5, 1e-4, 3e-4, 1e-3}} "
        f"by held-out gold reward on the tuning seeds 1000-1002 (`python benchmarks/claims.py --tune`), "
        f"not on this seed.",
        f"- **Evaluation**: {len(world.eval_prompts)} prompts × {cfg.eval_samples} samples (temperature "
        f"{cfg.eval_temperature}, the same sampling seed for every policy); "
        f"{s['data'].get('eval_prompts_seen_in_training', 0)} of these prompts occur in the SFT or preference "
        f"data, the others are new. Win rate against the "
        f"SFT policy's samples paired by prompt and sample index (ties count ½); KL(π‖SFT) is the Monte-Carlo "
        f"estimate on the policy's own samples; Δ log p: mean log-prob change of the held-out groups' chosen "
        f"(best by RM) and rejected (worst by RM) responses.",
        "",
        "## Results",
        "",
        results_table(rows),
        "",
        *observations(rows),
        "",
        "Which feedback each method reads (all from the same reward model on the same groups):",
        "",
    ]
    for r in rows[1:]:
        spec = METHODS.get(r["name"])
        text.append(f"- `{r['name']}` ({spec.source if spec else r['objective']}): "
                    f"{FEEDBACK_TEXT.get(r['feedback'], r['feedback'])}")
    text += ["", "## Plots and files", ""]
    if plots:
        for plot, name in plots.items():
            text.append(f"- {PLOT_NAMES.get(plot, plot)}: [`{name}`]({name})")
    else:
        text.append("- no plots (matplotlib missing or plots: false)")
    text += [
        "- `compare.md` / `compare.json`: the same runs through `rewardalign compare` (training loss, eval "
        "ranking accuracy, …)",
        "- `demo.json`: this table and every statistic above, for machines",
        "- `runs/<policy>/`: each aligned model (`save_pretrained`), its config, metrics, eval.json and samples",
        "- `data/`, `sft/`, `rm/`: the data sets, the SFT policy and the reward model; `.stages/` records the "
        "settings of each stage, and a rerun with the same settings reuses them (`--reuse false` rebuilds all)",
        "",
    ]
    report = "\n".join(text)
    (Path(cfg.output) / "report.md").write_text(report)
    return report


# ---- the command ------------------------------------------------------------------------------------------------


def run_demo(raw: dict[str, Any] | DemoConfig, command: str = "rewardalign demo") -> dict[str, Any]:
    """Run the whole demo from a config mapping; returns ``demo.json``'s content."""
    cfg = raw if isinstance(raw, DemoConfig) else demo_config(raw)
    with torch_threads(cfg.threads):
        return _run_demo(cfg, command)


def _run_demo(cfg: DemoConfig, command: str) -> dict[str, Any]:
    start = time.perf_counter()
    log = print if cfg.verbose else (lambda _msg: None)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(cfg, out, log)
    runs = out / "runs"
    t0 = time.perf_counter()
    sft_eval = sft_baseline(cfg, world, runs / "sft")
    log(f"[evaluate sft] {time.perf_counter() - t0:.1f} s")
    rows = [{"name": "sft", "objective": None, "feedback": None, "learning_rate": None, "objective_args": {},
             "eval": _headline(sft_eval)}]
    for name in cfg.methods:
        row = run_method(cfg, world, name, cfg.method(name), runs / name, sft_eval["rewards"], cache=cfg.reuse)
        rows.append(row)
        ev = row["eval"]
        log(f"[{name}] {row['seconds']:.1f} s: gold reward {ev['reward_mean']:.3f}, win rate "
            f"{ev['win_rate']:.3f}, KL {ev['kl']:.2f}")
    plots: dict[str, str] = {}
    if cfg.plots:
        from ..evaluate.report import compare_runs

        report = compare_runs([runs / "sft", *(runs / n for n in cfg.methods)], out)
        plots = report["plots"]
    seconds = time.perf_counter() - start
    write_report(cfg, world, rows, plots, seconds, command)
    result = {"config": dataclasses.asdict(cfg), "stats": world.stats, "rows": rows, "plots": plots,
              "table": results_table(rows), "seconds": round(seconds, 1)}
    (out / "demo.json").write_text(json.dumps(result, indent=2, default=str))
    log("")
    log(result["table"])
    log(f"\nwritten: {out / 'report.md'}, demo.json, compare.md" + "".join(f", {p}" for p in plots.values())
        + f" ({seconds:.0f} s)")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config; any field can also be given as --field value")
    parser.add_argument("--quick", action="store_true", default=None,
                        help="a CI-sized run (under 2 minutes on two CPU cores)")
    parser.add_argument("--output", help="output folder (default runs/demo)")
    parser.add_argument("--task", help="gym task: arithmetic (default), sort or keyword")
    parser.add_argument("--seed", type=int, help="seed of every stage (default 0)")
    parser.epilog = (
        "Fields: " + ", ".join(f.name for f in dataclasses.fields(DemoConfig))
        + ". Methods: " + ", ".join(METHODS) + " (default: " + ", ".join(DEFAULT_METHODS) + "). "
        "Per-method settings: --method_args.dpo.learning_rate 3e-4 --method_args.dpo.objective_args.beta 0.05"
    )


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raw = apply_overrides(load_yaml(args.config), parse_overrides(overrides))
    for name in ("quick", "output", "task", "seed"):
        value = getattr(args, name, None)
        if value is not None:
            raw[name] = value
    parts = ["rewardalign demo"] + (["--config", args.config] if args.config else [])
    parts += ["--quick"] if raw.get("quick") else []
    parts += [f"--{n} {raw[n]}" for n in ("output", "task", "seed") if n in raw] + list(overrides)
    run_demo(copy.deepcopy(raw), " ".join(parts))
    return 0
