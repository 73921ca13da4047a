"""Stages 7-8 of the demo: align one method on the shared world and evaluate it against the gold reward (cached
by every setting that matters)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from ..config import from_dict
from ..data import load_groups
from ..evaluate import metrics
from ..evaluate.evaluator import evaluate_model
from ..evaluate.run import write_eval_outputs
from ..fingerprint import file_digest, hash_json, model_fingerprint
from ..gym import get_task
from ..rewards.sources import GymSource
from ..runs import write_json
from ..train.align import run_align
from ..train.configs import AlignConfig
from .config import PIPELINE_VERSION, DemoConfig, MethodSpec
from .stages import World, log_to, quiet_transformers, sampling

# ---- alignment and evaluation -----------------------------------------------------------------------------------


def align_method(cfg: DemoConfig, world: World, spec: MethodSpec, run_dir: str | Path, *,
                 data: str | None = None, steps: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Align the SFT policy with ``spec`` on the annotated training groups (or ``data``) into ``run_dir``."""
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
        "logging_steps": max(1, steps // 15), "disable_tqdm": not cfg.verbose, "report_to": "none",
    }
    with log_to(run_dir / "train.log"):
        return run_align(from_dict(AlignConfig, raw, "align"))


def nested_rewards(samples: list[dict[str, Any]], n_prompts: int, n_samples: int) -> list[list[float]]:
    """The reward of every sample record (``prompt_index``, ``sample_index``, ``reward``), nested
    [prompt][sample] (NaN where a record is missing)."""
    rewards = [[math.nan] * n_samples for _ in range(n_prompts)]
    for rec in samples:
        rewards[rec["prompt_index"]][rec["sample_index"]] = rec["reward"]
    return rewards


def evaluate_run(cfg: DemoConfig, world: World, model: str, run_dir: str | Path,
                 baseline_rewards: list[list[float]] | None = None) -> dict[str, Any]:
    """Gold reward, win rate against ``baseline_rewards`` (the SFT policy's, same prompts and sampling), KL from
    the SFT policy and held-out likelihood drift of ``model``; writes ``eval.json`` and ``samples.jsonl`` into
    ``run_dir`` and returns the metrics with ``rewards`` [P][n] (not written)."""
    task = get_task(cfg.task, **cfg.task_args)
    heldout, _ = load_groups(world.heldout, format="group")
    result = evaluate_model(
        model, world.eval_prompts, GymSource(task), reference=world.sft, pairs=heldout,
        sampling=sampling(world.stats["sft"]["max_new_tokens"], cfg.eval_samples, cfg.eval_temperature, cfg.seed + 4),
        max_length=cfg.max_length, progress=cfg.verbose)
    result = {"model": str(model)} | result
    rewards = nested_rewards(result["samples"], result["n_prompts"], result["n_samples"])
    if baseline_rewards is not None:
        est, counts = metrics.win_rate(rewards, baseline_rewards)
        result |= {"win_rate": est.mean, "win_rate_ci": [est.lo, est.hi]} | counts
    samples = result.pop("samples")
    write_eval_outputs(run_dir, result, samples)
    return result | {"rewards": rewards}


def sft_baseline(cfg: DemoConfig, world: World, run_dir: str | Path,
                 baseline_rewards: list[list[float]] | None = None) -> dict[str, Any]:
    """The SFT policy evaluated as a run of its own (``runs/sft``): the table's first row and the baseline
    of every win rate; at another ``eval_temperature``, with the win rate against ``baseline_rewards``, the
    sharpened SFT row. Cached by the evaluation settings."""
    run_dir = Path(run_dir)
    key = hash_json({"version": PIPELINE_VERSION, "sft": model_fingerprint(world.sft),
                     "eval": _eval_key(cfg, world), "eval_prompts": hash_json(world.eval_prompts),
                     "heldout": file_digest(world.heldout)}
                    | ({} if baseline_rewards is None else {"baseline": hash_json(baseline_rewards)}))
    cache = run_dir / "rewards.json"
    if cfg.reuse and cache.is_file() and (run_dir / "eval.json").is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return json.loads((run_dir / "eval.json").read_text()) | {"rewards": saved["rewards"], "cached": True}
    cache.unlink(missing_ok=True)
    result = evaluate_run(cfg, world, world.sft, run_dir, baseline_rewards)
    write_json(run_dir / "summary.json", {"objective": "sft", "steps": 0})
    write_json(cache, {"key": key, "rewards": result["rewards"]}, indent=None)
    return result


def _eval_key(cfg: DemoConfig, world: World) -> dict[str, Any]:
    """The evaluation settings, and the task's code (its gold reward judges every run)."""
    return {"task_code": world.task_key} | {f: getattr(cfg, f) for f in (
        "task", "task_args", "seed", "eval_prompts", "eval_samples", "eval_temperature", "max_length")}


def run_method(cfg: DemoConfig, world: World, name: str, spec: MethodSpec, run_dir: str | Path,
               baseline_rewards: list[list[float]], *, data: str | None = None, cache: bool = True
               ) -> dict[str, Any]:
    """Align and evaluate one method (cached in ``run_dir/run_key.json`` by every setting that matters);
    returns the evaluation metrics (without samples) and the training summary."""
    quiet_transformers()
    run_dir = Path(run_dir)
    key = hash_json({"version": PIPELINE_VERSION, "spec": dataclasses.asdict(spec), "data": data or world.train,
                "data_key": file_digest(data or world.train), "sft": model_fingerprint(world.sft),
                "eval": _eval_key(cfg, world),
                "eval_prompts": hash_json(world.eval_prompts), "heldout": file_digest(world.heldout),
                "align": {f: getattr(cfg, f) for f in ("align_steps", "align_batch_size", "seed", "max_length")}})
    marker = run_dir / "run_key.json"
    if cache and marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        return json.loads(marker.read_text())["result"] | {"cached": True}
    marker.unlink(missing_ok=True)  # a run cut short leaves no marker that vouches for its folder
    start = time.perf_counter()
    summary = align_method(cfg, world, spec, run_dir, data=data)
    result = evaluate_run(cfg, world, str(run_dir), run_dir, baseline_rewards)
    result.pop("rewards")
    out = {"name": name, "objective": spec.objective, "feedback": spec.feedback,
           "learning_rate": spec.learning_rate, "objective_args": summary_args(run_dir),
           "train_groups": summary["train_groups"], "steps": summary["steps"], "train_loss": summary["train_loss"],
           "seconds": round(time.perf_counter() - start, 2), "eval": headline(result)}
    write_json(marker, {"key": key, "result": out}, indent=1)
    return out


def summary_args(run_dir: Path) -> dict[str, Any]:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    return cfg.get("objective_args") or {}


HEADLINE = ("reward_mean", "reward_ci", "win_rate", "win_rate_ci", "kl", "kl_ci", "chosen_logp_shift",
            "chosen_logp_shift_ci", "rejected_logp_shift", "rejected_logp_shift_ci", "margin_shift",
            "eos_missing_fraction")


def sharpened_row(cfg: DemoConfig, world: World, run_dir: str | Path,
                  baseline_rewards: list[list[float]]) -> dict[str, Any] | None:
    """The SFT policy sampled at ``sharpened_temperature`` (same prompts, sampling seed and judge), untrained: the
    gold reward that sharpening alone gives, the bar a method's gain at ``eval_temperature`` has to clear. Its KL
    and likelihood drift are left out: the evaluation reads them off the SFT model at temperature 1, where they
    are 0, not off the tempered policy. None when ``sharpened_temperature`` is null or not below
    ``eval_temperature`` (nothing sharper to compare with)."""
    t = cfg.sharpened_temperature
    if t is None or t >= cfg.eval_temperature:
        return None
    result = sft_baseline(dataclasses.replace(cfg, eval_temperature=t), world, run_dir, baseline_rewards)
    untempered = dict.fromkeys(("kl", "kl_ci", "chosen_logp_shift", "chosen_logp_shift_ci", "rejected_logp_shift",
                                "rejected_logp_shift_ci", "margin_shift"))
    return {"name": f"sft (T = {t:g})", "objective": None, "feedback": None, "learning_rate": None,
            "objective_args": {}, "eval": headline(result) | untempered, "cached": result.get("cached", False)}


def headline(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: result.get(k) for k in HEADLINE}
    length = result.get("length") or {}
    out["tokens_mean"] = length.get("tokens_mean")
    return out
