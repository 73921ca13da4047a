"""Stages 1-6 of the demo (data, SFT, samples, "human" preferences, reward model, annotation), each cached in the
output folder under a key of its settings: the :class:`World` every aligned policy shares."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from filelock import FileLock
from transformers import EarlyStoppingCallback

from ..config import from_dict
from ..data import load_groups, validate_group, write_groups_jsonl
from ..data.schema import DropReport, Group
from ..evaluate.metrics import pair_agreement
from ..fingerprint import hash_json
from ..gym import Task, get_task, task_identity
from ..gym.data import make_prompts, make_sft_data, read_jsonl, write_jsonl
from ..gym.feedback import FeedbackConfig, build_groups, build_pairs
from ..modeling.generation import SamplingConfig, generate_samples
from ..modeling.loading import load_causal_lm, load_tokenizer
from ..rewards.annotate import run_annotate
from ..rewards.config import RewardModelConfig
from ..rewards.transforms import minmax, sigmoid
from ..runs import write_json
from ..train.configs import SFTConfig
from ..train.reward_model import run_train_rm
from ..train.sft import run_sft
from .config import PIPELINE_VERSION, DemoConfig
from .learning import GoldRewardStopping, StageDidNotLearn, quality_failures

# ---- small utilities --------------------------------------------------------------------------------------------


class Stages:
    """Completed stages of an output folder: ``.stages/<name>.json`` holds the key of the settings that built
    it; a stage whose key matches is not run again. A stage is built under its file lock (``.stages/<name>.lock``):
    a second process on the same folder waits for it, then finds it cached, instead of writing into it too. The
    marker goes before a build starts and comes back when it ends, so a crash mid-build rebuilds the stage."""

    def __init__(self, root: Path, log: Callable[[str], None], reuse: bool = True):
        self.root = root
        self.log = log
        self.reuse = reuse

    def run(self, name: str, settings: Any, build: Callable[[], Any]) -> Any:
        marker = self.root / ".stages" / f"{name}.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        key = hash_json(settings)
        with FileLock(str(marker.with_suffix(".lock"))):
            if self.reuse and marker.is_file():
                saved = json.loads(marker.read_text())
                if saved.get("key") == key:
                    self.log(f"[{name}] cached")
                    return saved.get("result")
            marker.unlink(missing_ok=True)  # a build cut short leaves no marker that vouches for its outputs
            start = time.perf_counter()
            result = build()
            seconds = time.perf_counter() - start
            write_json(marker, {"key": key, "seconds": round(seconds, 2), "result": result}, indent=1)
        self.log(f"[{name}] {seconds:.1f} s")
        return result


@contextlib.contextmanager
def log_to(path: Path):
    """The trainers' printed logs go to ``path`` (the demo prints its own progress lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f, contextlib.redirect_stdout(f):
        yield


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` torch CPU threads (restored after). One thread is the default: the tiny models' matrices
    are too small for a second thread to pay off, and a busy machine makes multithreaded torch several times
    slower; it also makes the results independent of the core count."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def quiet_transformers() -> None:
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


# ---- the world: data, SFT, samples, preferences, reward model, annotation ---------------------------------------


@dataclass
class World:
    """What every aligned policy shares: the task (its spec and the hash of its code), paths of the SFT model, the
    reward model and the data, and the statistics of their making (for the report)."""

    root: str
    task: str
    task_key: str
    sft: str
    rm: str
    train: str
    heldout: str
    eval_prompts: list[str]
    stats: dict[str, Any]
    failed_gates: list[str]


def make_data(cfg: DemoConfig, task: Task, root: Path) -> dict[str, Any]:
    """SFT demonstrations (``data/sft.jsonl``), preference, evaluation and SFT validation prompts (``data/*.json``);
    the gold reward of the demonstrations and of random responses (:meth:`Task.random_response`) on their
    prompts, the two ends SFT is measured against."""
    data = root / "data"
    sft_rows = make_sft_data(task, cfg.sft_examples, seed=cfg.seed)
    write_jsonl(({"prompt": r["prompt"], "responses": [r["response"]]} for r in sft_rows), data / "sft.jsonl")
    prompts = make_prompts(task, cfg.prompts, seed=cfg.seed + 1)
    seen = set(prompts) | {r["prompt"] for r in sft_rows}
    eval_prompts = held_out_prompts(make_prompts(task, 20 * cfg.eval_prompts, seed=cfg.seed + 2), seen,
                                    cfg.eval_prompts)
    val_prompts = held_out_prompts(make_prompts(task, 20 * cfg.sft_eval_prompts, seed=cfg.seed + 5),
                                   seen | set(eval_prompts), cfg.sft_eval_prompts)
    (data / "prompts.json").write_text(json.dumps(prompts))
    (data / "eval_prompts.json").write_text(json.dumps(eval_prompts))
    (data / "sft_val_prompts.json").write_text(json.dumps(val_prompts))
    rng = random.Random(f"random-responses:{cfg.seed}")
    demo_gold = statistics.mean(task.gold_reward(r["prompt"], r["response"]) for r in sft_rows)
    random_gold = statistics.mean(task.gold_reward(r["prompt"], task.random_response(r["prompt"], rng))
                                  for r in sft_rows)
    return {"sft_examples": len(sft_rows), "demonstration_gold_mean": demo_gold, "random_gold_mean": random_gold,
            "prompts": len(prompts), "eval_prompts": len(eval_prompts), "sft_val_prompts": len(val_prompts),
            "eval_prompts_seen_in_training": sum(p in seen for p in eval_prompts)}


def held_out_prompts(candidates: Sequence[str], seen: set[str], n: int) -> list[str]:
    """``n`` distinct evaluation prompts, those never seen in training (SFT or preference data) first, in the
    candidates' order; seen ones fill up only where the task has too few prompts (the keyword task has 120)."""
    distinct = list(dict.fromkeys(candidates))
    unseen = [p for p in distinct if p not in seen]
    return (unseen + [p for p in distinct if p in seen])[:n]


def train_sft(cfg: DemoConfig, task: Task, root: Path) -> dict[str, Any]:
    """The tiny model and tokenizer from ``model_init``, fine-tuned on the demonstrations into ``sft/`` until the
    gold reward of its samples on the validation prompts stops improving (at most ``sft_steps`` steps); the
    best weights are kept (:class:`~.learning.GoldRewardStopping`). ``max_new_tokens`` of every later sampling
    stage is set here, from the tokenizer (:func:`~.learning.generation_budget`)."""
    rows = read_jsonl(root / "data" / "sft.jsonl")
    well_formed = [r["responses"][0] for r in rows] + [task.best_response(r["prompt"]) for r in rows]
    stopping = GoldRewardStopping(task, json.loads((root / "data" / "sft_val_prompts.json").read_text()),
                                  well_formed, cfg.sft_eval_every, cfg.sft_patience, seed=cfg.seed + 6)
    with log_to(root / "logs" / "sft.log"):
        summary = _run_sft(cfg, root, stopping)
    return {"steps": summary["steps"], "train_loss": summary["train_loss"], "seconds": summary["seconds"],
            **_cut(summary), **stopping.summary()}


def _cut(summary: dict[str, Any]) -> dict[str, int]:
    """How many prompts and responses of a stage's data ``max_length`` cut (its tokenisation summary)."""
    counts = summary.get("tokenize") or {}
    return {"groups": counts.get("groups", 0), "truncated_prompts": counts.get("truncated_prompts", 0),
            "truncated_responses": counts.get("truncated_responses", 0)}


def _run_sft(cfg: DemoConfig, root: Path, stopping: GoldRewardStopping) -> dict[str, Any]:
    return run_sft(from_dict(SFTConfig, {
        "model_init": dict(cfg.model_init), "data": str(root / "data" / "sft.jsonl"), "format": "group",
        "max_length": cfg.max_length, "output_dir": str(root / "sft"), "max_steps": cfg.sft_steps,
        "per_device_train_batch_size": cfg.sft_batch_size, "learning_rate": cfg.sft_learning_rate,
        "lr_scheduler_type": "cosine", "warmup_steps": min(20, cfg.sft_steps // 10), "logging_steps": 25,
        "seed": cfg.seed, "disable_tqdm": not cfg.verbose, "report_to": "none", "overwrite_output_dir": True,
    }, "sft"), callbacks=[stopping])


def sampling(max_new_tokens: int, n: int, temperature: float, seed: int) -> SamplingConfig:
    return SamplingConfig(n_samples=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                          batch_size=256)


def sample_groups(cfg: DemoConfig, task: Task, root: Path, max_new_tokens: int) -> dict[str, Any]:
    """K samples per preference prompt from the SFT policy, as gold-scored groups (``data/groups_gold.jsonl``);
    split into training and held-out groups; groups with K < 2 after duplicate removal are filtered."""
    prompts = json.loads((root / "data" / "prompts.json").read_text())
    model = load_causal_lm(str(root / "sft"))
    samples = generate_samples(model, load_tokenizer(str(root / "sft")), prompts,
                               sampling(max_new_tokens, cfg.k, cfg.sample_temperature, cfg.seed + 3),
                               progress=cfg.verbose)
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
    return load_groups(str(path), format="group")[0]


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
                             kind: str | None = None) -> dict[str, Any]:
    """A reward model (``kind`` bt, oracle or likelihood; default ``rm_kind``) on the SFT model, trained on
    ``data/<pairs>.jsonl`` until its accuracy on the held-out 10% of the pairs stops improving (evaluated every
    ``rm_eval_every`` steps, at most ``rm_epochs`` epochs; transformers' ``EarlyStoppingCallback`` with
    ``load_best_model_at_end``: the best checkpoint is the model). With ``rm_members`` M > 1, an ensemble of M
    such models (seeds ``seed + i``, the same pairs; ``train-rm``'s ``kind: ensemble``) whose held-out accuracy is
    that of their mean reward."""
    with log_to(root / "logs" / f"{out}.log"):
        summary = _train_rm(cfg, root, pairs, out, kind or cfg.rm_kind)
    for checkpoint in (root / out).glob("**/checkpoint-*"):
        shutil.rmtree(checkpoint)
    final = summary.get("final_eval") or {}
    steps = summary["steps"] if "steps" in summary else sum(m["steps"] for m in summary["members"])
    return {"kind": summary["kind"], "train_pairs": summary["train_pairs"], "eval_pairs": summary["eval_pairs"],
            "steps": steps, "heldout_accuracy": final.get("eval_accuracy"), **_cut(summary),
            "heldout_bt_loss": final.get("eval_bt_loss"), "seconds": summary["seconds"]}


def _train_rm(cfg: DemoConfig, root: Path, pairs: str, out: str, kind: str) -> dict[str, Any]:
    every = cfg.rm_eval_every
    ensemble = {"kind": "ensemble", "members": cfg.rm_members, "member_kind": kind} if cfg.rm_members > 1 else {}
    center = cfg.rm_center_coefficient if kind != "likelihood" else 0.0
    return run_train_rm(from_dict(RewardModelConfig, {
        "kind": kind, "model": str(root / "sft"), "data": str(root / "data" / f"{pairs}.jsonl"),
        "format": "pairs", "eval_fraction": 0.1, "center_coefficient": center,
        "max_length": cfg.max_length, "output_dir": str(root / out), "num_train_epochs": cfg.rm_epochs,
        "per_device_train_batch_size": cfg.rm_batch_size, "per_device_eval_batch_size": 128,
        "learning_rate": cfg.rm_lr, "lr_scheduler_type": "cosine", "warmup_steps": 5,
        "logging_steps": 20, "eval_strategy": "steps", "eval_steps": every, "save_strategy": "steps",
        "save_steps": every, "save_only_model": True, "save_total_limit": 1, "load_best_model_at_end": True,
        "metric_for_best_model": "accuracy", "greater_is_better": True,
        "seed": cfg.seed, "disable_tqdm": not cfg.verbose, "report_to": "none", "overwrite_output_dir": True,
    } | ensemble, "train-rm"), callbacks=[EarlyStoppingCallback(cfg.rm_patience)])


def _pairwise_agreement(groups: Sequence[Group]) -> float:
    """Share of response pairs with different gold rewards that the RM rewards order the same way."""
    return pair_agreement([g.meta["gold_rewards"] for g in groups], [g.rewards for g in groups])


def annotate_groups(cfg: DemoConfig, root: Path, rm: str = "rm", suffix: str = "") -> dict[str, Any]:
    """RM rewards, scores and labels for the training and held-out groups (``data/train{suffix}.jsonl``,
    ``data/heldout{suffix}.jsonl``); the gold rewards stay in ``meta.gold_rewards`` for the report only."""
    stats: dict[str, Any] = {}
    for part in ("groups", "heldout"):
        gold_path = root / "data" / f"{'groups' if part == 'groups' else 'heldout'}_gold.jsonl"
        bare = root / "data" / f"{part}_bare{suffix}.jsonl"
        # Only the texts go to the annotator: no gold-derived field may reach training.
        write_jsonl(({"prompt": row["prompt"], "responses": row["responses"], "meta": row["meta"]}
                     for row in read_jsonl(gold_path)), bare)
        out = root / "data" / f"{part}_rm{suffix}.jsonl"
        run_annotate({"data": str(bare), "format": "group", "output": str(out),
                  "source": {"type": "reward_model", "path": str(root / rm), "batch_size": 256},
                  "transform": "none", "progress": cfg.verbose, "cache_dir": str(root / "cache" / "annotate")},
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
    """The group with its RM rewards, scores (``transform``: sigmoid, or minmax over [lo, hi]) and labels
    (reward above the group's mean), validated like loaded data."""
    rewards = [float(r) for r in g.rewards]
    if transform == "sigmoid":
        scores = sigmoid(np.asarray(rewards)).tolist()
    else:
        scores = minmax(np.asarray(rewards), lo, hi).tolist() if hi > lo else [0.5] * len(rewards)
    mean = sum(rewards) / len(rewards)
    labels = [int(r > mean) for r in rewards]
    meta = {k: v for k, v in g.meta.items() if k not in ("row", "rows")}
    return validate_group(Group(prompt=g.prompt, responses=list(g.responses), rewards=rewards, scores=scores,
                                labels=labels, meta=meta), g.meta.get("row", "-"))


def build_world(cfg: DemoConfig, root: str | Path | None = None, log: Callable[[str], None] = print) -> World:
    """Stages 1-6 (data, SFT, samples, preferences, reward model, annotation) into ``root`` (default
    ``cfg.output``), each skipped when its cached key matches. Every key holds the task's code
    (:func:`~rewardalign.gym.task_identity`), so an edited task rebuilds them. Unless ``cfg.force``, raises
    :class:`~.learning.StageDidNotLearn` after SFT, or after annotation, when a quality gate fails (and, even
    with ``force``, when the samples give no preference pair at all)."""
    quiet_transformers()
    root = Path(root if root is not None else cfg.output)
    root.mkdir(parents=True, exist_ok=True)
    task = get_task(cfg.task, **cfg.task_args)
    task_key = hash_json(task_identity(task))
    stages = Stages(root, log, cfg.reuse)
    base = {"version": PIPELINE_VERSION, "task": cfg.task, "task_args": cfg.task_args, "task_code": task_key,
            "seed": cfg.seed}
    data_key = base | {f: getattr(cfg, f) for f in ("sft_examples", "prompts", "eval_prompts", "sft_eval_prompts")}
    sft_key = data_key | {f: getattr(cfg, f) for f in ("model_init", "sft_steps", "sft_batch_size",
                                                       "sft_learning_rate", "sft_eval_every", "sft_patience",
                                                       "max_length")}
    sample_key = sft_key | {f: getattr(cfg, f) for f in ("k", "sample_temperature", "heldout_fraction",
                                                          "annotator")}
    rm_key = sample_key | {f: getattr(cfg, f) for f in ("rm_epochs", "rm_batch_size", "rm_center_coefficient",
                                                         "rm_eval_every", "rm_patience")}
    rm_key |= {"rm_learning_rate": cfg.rm_lr}
    # one bt model keeps the key it had before ensembles and other kinds
    rm_key |= {"rm_members": cfg.rm_members} if cfg.rm_members > 1 else {}
    rm_key |= {"rm_kind": cfg.rm_kind} if cfg.rm_kind != "bt" else {}
    stats: dict[str, Any] = {}

    def gate() -> list[str]:
        failures = quality_failures(stats, task.reward_range)
        if failures and not cfg.force:
            raise StageDidNotLearn(failures, stats)
        return failures

    stats["data"] = stages.run("data", data_key, lambda: make_data(cfg, task, root))
    stats["sft"] = stages.run("sft", sft_key, lambda: train_sft(cfg, task, root))
    gate()
    stats["samples"] = stages.run("samples", sample_key,
                                  lambda: sample_groups(cfg, task, root, stats["sft"]["max_new_tokens"]))
    stats["preferences"] = stages.run("preferences", sample_key, lambda: preference_pairs(cfg, root))
    if not stats["preferences"]["pairs"]:  # nothing to train a reward model on, --force or not
        raise StageDidNotLearn(["the SFT policy's samples give no preference pair (the samples of every prompt have "
                                "the same gold reward), so there is no reward model to train"], stats)
    stats["reward_model"] = stages.run("reward_model", rm_key, lambda: train_reward_model_stage(cfg, root))
    stats["annotation"] = stages.run("annotation", rm_key | {"score_transform": cfg.score_transform},
                                     lambda: annotate_groups(cfg, root))
    failed_gates = gate()
    return World(root=str(root), task=cfg.task, task_key=task_key, sft=str(root / "sft"), rm=str(root / "rm"),
                 train=str(root / "data" / "train.jsonl"), heldout=str(root / "data" / "heldout.jsonl"),
                 eval_prompts=json.loads((root / "data" / "eval_prompts.json").read_text()), stats=stats,
                 failed_gates=failed_gates)
