"""``run_evaluate``: sample a model on prompts, score, compare, write the results.

Fields (any can be given on the command line, ``--n_samples 8``):

- ``model`` (required): the policy, a ``save_pretrained`` directory (its tokenizer is used);
- ``prompts`` (required): a data file of any format ``rewardalign.data.load_groups`` reads (``prompts_format``
  to force one; the groups' prompts are used, each distinct prompt once, in file order), or a JSONL / JSON /
  CSV / parquet file whose rows have just a ``prompt`` (a string or a chat message list);
- ``judge``: a reward source spec (``gym:<task>``, ``rule:<module>:<function>``, ``rm:<path>``; see
  :func:`rewardalign.rewards.sources.build_source`); without one no reward or win rate is measured;
- ``reference``: a model directory for the KL estimate and the likelihood displacement (default none);
- ``baseline``: a model directory whose samples the policy's are compared with (win rate);
- ``pairs``: held-out groups with feedback (``pairs_format``, ``max_pairs``) for the likelihood displacement;
- sampling: ``n_samples`` (4), ``temperature`` (1.0; 0 is greedy), ``top_p`` (1.0), ``top_k`` (0, off),
  ``max_new_tokens`` (64), ``generation_batch_size`` (16 sequences), ``seed`` (0), ``max_prompts`` (the first N);
- tokenisation as in training: ``chat_template`` (auto); ``max_prompt_length`` (a longer prompt keeps its end;
  generation: no limit by default, pairs: max_length // 2 by default, as in training); ``max_length`` (pairs);
- ``confidence`` (0.95) and ``ci_method`` (normal | bootstrap); ``torch_dtype``, ``logprob_chunk_size``,
  ``trust_remote_code``;
- ``output_dir`` (required): gets ``eval.json`` (every metric), ``samples.jsonl`` (prompt, response, reward,
  ...) and ``eval_config.yaml`` (the resolved config; not ``config.yaml``, so a training run folder can hold
  its evaluation without losing its training config), written atomically and recorded in the folder's
  ``manifest.json`` with the run id of the model evaluated. A folder that holds another model is refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError, as_config, check_data_path, check_model_path
from ..data import load_groups
from ..data.prompts import load_prompts
from ..data.schema import Group
from ..modeling.generation import SamplingConfig
from ..modeling.loading import load_tokenizer
from ..rewards.sources import build_source
from ..runs import MODEL_FILES, Timer, atomic_open, owner_run, record_files, write_json, write_text
from .config import CI_METHODS, EvalConfig
from .evaluator import evaluate_model, json_ready

__all__ = ["EvalConfig", "evaluate_model", "load_prompts", "run_evaluate", "summary_lines"]


def check_config(cfg: EvalConfig) -> None:
    """Everything checkable before loading a model."""
    check_model_path(cfg.model, "model")
    for what in ("reference", "baseline"):
        if getattr(cfg, what):
            check_model_path(getattr(cfg, what), what)
    check_data_path(cfg.prompts, "prompts")
    if cfg.pairs:
        check_data_path(cfg.pairs, "pairs")
    if not isinstance(cfg.format_options, dict):
        raise ConfigError("format_options must be a mapping of load options, e.g. {score_range: [1, 10]}")
    if not cfg.output_dir:
        raise ConfigError("evaluate needs an output_dir (--output_dir runs/NAME)")
    out = Path(cfg.output_dir)
    if any((out / f).is_file() for f in MODEL_FILES) and out.resolve() != Path(cfg.model).resolve():
        raise ConfigError(f"output_dir {out} holds another model: write the evaluation of {cfg.model} into its "
                          f"own folder or a new one")
    if cfg.pairs and not cfg.reference:
        raise ConfigError("pairs (likelihood displacement) need a reference model: set `reference: PATH`")
    if cfg.ci_method not in CI_METHODS:
        raise ConfigError(f"ci_method must be one of {CI_METHODS}, got {cfg.ci_method!r}")
    if cfg.max_prompts is not None and cfg.max_prompts < 1:
        raise ConfigError(f"max_prompts must be >= 1, got {cfg.max_prompts}")


def sampling_config(cfg: EvalConfig) -> SamplingConfig:
    try:
        return SamplingConfig(n_samples=cfg.n_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                              top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                              batch_size=cfg.generation_batch_size)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _load_pairs(cfg: EvalConfig) -> list[Group] | None:
    if not cfg.pairs:
        return None
    groups, _ = load_groups(cfg.pairs, cfg.pairs_format, split=cfg.split, **cfg.format_options)
    return groups[: cfg.max_pairs] if cfg.max_pairs is not None else groups


def run_evaluate(cfg: EvalConfig | dict[str, Any]) -> dict[str, Any]:
    """Sample ``cfg.model`` on ``cfg.prompts``, score, compare; writes the output folder and returns the metrics."""
    cfg = as_config(EvalConfig, cfg, "evaluate")
    timer = Timer()
    check_config(cfg)
    sampling = sampling_config(cfg)
    judge = build_source(cfg.judge) if cfg.judge else None
    prompts = load_prompts(cfg.prompts, cfg.prompts_format, cfg.split, cfg.max_prompts, **cfg.format_options)
    if not prompts:
        raise ConfigError(f"no prompts in {cfg.prompts}")
    pairs = _load_pairs(cfg)

    result = evaluate_model(
        cfg.model, prompts, judge, tokenizer=load_tokenizer(cfg.model), reference=cfg.reference,
        baseline=cfg.baseline, baseline_tokenizer=load_tokenizer(cfg.baseline) if cfg.baseline else None,
        pairs=pairs, sampling=sampling, chat_template=cfg.chat_template, max_prompt_length=cfg.max_prompt_length,
        max_length=cfg.max_length, logprob_chunk_size=cfg.logprob_chunk_size, confidence=cfg.confidence,
        ci_method=cfg.ci_method, torch_dtype=cfg.torch_dtype, trust_remote_code=cfg.trust_remote_code,
        progress=True,
    )
    samples = result.pop("samples")
    result = {"model": cfg.model, "reference": cfg.reference, "baseline": cfg.baseline, "prompts": cfg.prompts,
              **result, "seconds": round(timer.seconds, 2)}
    write_text(Path(cfg.output_dir) / "eval_config.yaml", yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    write_eval_outputs(cfg.output_dir, result, samples, extra=["eval_config.yaml"])
    return result


def write_eval_outputs(output_dir: str | Path, result: dict[str, Any], samples: list[dict[str, Any]],
                       extra: list[str] = ()) -> None:
    """``eval.json`` (the metrics) and ``samples.jsonl`` (one record per sample) in ``output_dir``, written
    atomically and recorded in its manifest (with ``extra`` files already there) for ``result["model"]``."""
    out = Path(output_dir)
    with atomic_open(out / "samples.jsonl") as f:
        for record in samples:
            f.write(json.dumps(json_ready(record), ensure_ascii=False) + "\n")
    write_json(out / "eval.json", json_ready(result))
    model = result.get("model")
    record_files(out, ["eval.json", "samples.jsonl", *extra], "evaluate", model=str(model),
                 model_run=owner_run(model) if isinstance(model, (str, Path)) and Path(model).is_dir() else None)


def summary_lines(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an evaluation, for the terminal."""
    def with_ci(key: str) -> str | None:
        if key not in result:
            return None
        lo, hi = result.get(f"{key.removesuffix('_mean')}_ci", [None, None])
        ci = f" [{lo:.4g}, {hi:.4g}]" if lo is not None and hi is not None and lo == lo else ""
        return f"{result[key]:.4g}{ci}"

    lines = {"prompts x samples": f"{result['n_prompts']} x {result['n_samples']}", "judge": result.get("judge")}
    for key in ("reward_mean", "baseline_reward_mean", "win_rate", "kl", "chosen_logp_shift",
                "rejected_logp_shift"):
        lines[key] = with_ci(key)
    lines["eos_missing_fraction"] = f"{result['eos_missing_fraction']:.3f}"
    lines["length"] = result["length"]
    return {k: v for k, v in lines.items() if v is not None}
