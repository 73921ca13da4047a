"""``evaluate_model``: samples of a policy on prompts, scored by a judge (any reward source), against a reference and a baseline.

What it measures (each only where its inputs are given):

- ``reward_mean`` / ``reward_ci`` (and ``baseline_reward_mean`` / ``baseline_reward_ci``): the judge's mean reward of the policy's samples (cluster CI over prompts);
- ``win_rate`` / ``win_rate_ci``: against the baseline's samples drawn with the same settings and seed,
  paired by prompt and sample index, ties counting half, under the same judge;
- ``kl`` / ``kl_ci``: the Monte-Carlo estimate of KL(pi || pi_ref) on the policy's samples
  (mean of log pi(y|x) - log pi_ref(y|x), summed over the sampled response token ids, stop token included);
  ``kl_exact_sampling`` says whether the samples came from pi itself (temperature 1, no top-p / top-k),
  the condition for the estimate to be unbiased; ``kl_per_token``: the summed log-ratios over the number
  of sampled tokens;
- ``chosen_logp_shift`` / ``rejected_logp_shift``: likelihood displacement on held-out groups ``pairs``:
  the mean of log pi(y|x) - log pi_ref(y|x) over their chosen and their rejected responses (tokenised as
  training tokenises them), and ``margin_shift`` = chosen - rejected shift;
- ``eos_missing_fraction`` (and ``baseline_eos_missing_fraction``): the share of samples that never emit EOS (cut
  by max_new_tokens); above 10% (``metrics.EOS_MISSING_WARN``) ``evaluate`` and the demo warn;
- ``length``: response length in tokens and characters.

Log-probs come from :func:`rewardalign.modeling.logprobs.batch_logps` on the exact sampled token ids (never
re-tokenised text), with the prompt ids the generation saw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, check_model_path
from ..data.collate import collate_groups
from ..data.schema import Group, Text
from ..data.tokenize import TokenizeConfig, TokenizedGroup, tokenize_groups
from ..modeling.generation import Samples, SamplingConfig, generate_samples, stop_token_ids
from ..modeling.loading import load_causal_lm, load_tokenizer, resolve_device
from ..modeling.logprobs import batch_logps
from ..rewards.base import RewardSource, mean_reward, score_finite
from ..rewards.sources import build_source
from . import metrics

ModelLike = nn.Module | str


def _load(model: ModelLike, device: torch.device | None = None, what: str = "model", dtype: str = "float32",
          trust_remote_code: bool = False) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    check_model_path(model, what)
    loaded = load_causal_lm(model, dtype, trust_remote_code)
    return loaded.to(device if device is not None else resolve_device("auto"))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _tokenizer_of(path: ModelLike) -> Any | None:
    if isinstance(path, str) and (Path(path) / "tokenizer_config.json").is_file():
        return load_tokenizer(path)
    return None


def check_same_vocab(tokenizer: Any, model: ModelLike, what: str) -> None:
    """A reference must share the policy's token ids; checked where ``model`` is a directory with a tokenizer."""
    other = _tokenizer_of(model)
    if other is not None and other.get_vocab() != tokenizer.get_vocab():
        raise ConfigError(f"the {what} has another tokenizer than the policy: log-probs of the same token ids "
                         "would not compare the same texts")


@torch.no_grad()
def group_logps(model: nn.Module, groups: Sequence[TokenizedGroup], pad_token_id: int, batch_size: int = 16,
                chunk_size: int = 1024) -> list[list[float]]:
    """Summed response log-probs of every group's responses, [G][K_g], at most ``batch_size`` sequences a
    batch (a group of more responses is split)."""
    pieces = [(gi, TokenizedGroup(prompt_ids=g.prompt_ids, response_ids=g.response_ids[s: s + batch_size]))
              for gi, g in enumerate(groups) for s in range(0, g.k, batch_size)]
    out: list[list[float]] = [[] for _ in groups]
    was_training = model.training
    model.eval()
    device = _device(model)
    try:
        start = 0
        while start < len(pieces):
            end, n_seq = start, 0
            while end < len(pieces) and n_seq + pieces[end][1].k <= batch_size:
                n_seq += pieces[end][1].k
                end += 1
            batch = collate_groups([g for _, g in pieces[start:end]], pad_token_id)
            logps = batch_logps(model, {k: v.to(device) for k, v in batch.items()}, chunk_size).logps.float().cpu()
            for b, (gi, g) in enumerate(pieces[start:end]):
                out[gi].extend(logps[b, : g.k].tolist())
            start = end
    finally:
        model.train(was_training)
    return out


def sample_groups(samples: Samples) -> list[TokenizedGroup]:
    """One tokenised group per prompt, its K = n sampled responses as generated."""
    return [TokenizedGroup(prompt_ids=p, response_ids=r, index=i)
            for i, (p, r) in enumerate(zip(samples.prompt_ids, samples.response_ids))]


def _estimate(key: str, est: metrics.Estimate) -> dict[str, Any]:
    """``{key: mean, <key without _mean>_ci: [lo, hi]}``."""
    return {key: est.mean, f"{key.removesuffix('_mean')}_ci": [est.lo, est.hi]}


def _nested(flat: list[float], n: int) -> list[list[float]]:
    return [flat[i: i + n] for i in range(0, len(flat), n)]


def _rewards(judge: RewardSource, samples: Samples) -> list[list[float]]:
    """The judge's reward of every sample (an ensemble's member mean), nested [prompt][sample]."""
    prompts = [p for p, row in zip(samples.prompts, samples.texts) for _ in row]
    flat = mean_reward(score_finite(judge, prompts, [t for row in samples.texts for t in row]))
    return _nested([float(v) for v in flat], samples.n_samples)


def displacement(policy: nn.Module, reference: nn.Module, tokenizer: Any, pairs: Sequence[Group],
                 tokenize: TokenizeConfig, batch_size: int = 16, chunk_size: int = 1024,
                 confidence: float = 0.95, method: str = "normal") -> dict[str, Any]:
    """Chosen and rejected log-prob shifts from the reference on held-out groups (see the module docstring)."""
    tokenized, _ = tokenize_groups(list(pairs), tokenizer, tokenize)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pol = group_logps(policy, tokenized, pad, batch_size, chunk_size)
    ref = group_logps(reference, tokenized, pad, batch_size, chunk_size)
    sides: dict[str, tuple[list[float], list[float]]] = {"chosen": ([], []), "rejected": ([], [])}
    skipped = 0
    for g, lp, lr in zip(tokenized, pol, ref):
        rewards = g.rewards
        if rewards is None and g.reward_members is not None:
            rewards = [sum(col) / len(col) for col in zip(*g.reward_members)]
        chosen, rejected = metrics.chosen_rejected(rewards, g.scores, g.labels, g.k)
        skipped += not chosen and not rejected
        for name, idx in (("chosen", chosen), ("rejected", rejected)):
            sides[name][0].extend(lp[i] for i in idx)
            sides[name][1].extend(lr[i] for i in idx)
    out: dict[str, Any] = {"n_pair_groups": len(tokenized), "pair_groups_tied": skipped}
    for name, (lp, lr) in sides.items():
        if lp:
            out |= _estimate(f"{name}_logp_shift", metrics.logp_shift(lp, lr, confidence, method))
            out[f"{name}_logp_mean"] = sum(lp) / len(lp)
    if "chosen_logp_shift" in out and "rejected_logp_shift" in out:
        out["margin_shift"] = out["chosen_logp_shift"] - out["rejected_logp_shift"]
    return out


def evaluate_model(
    model: ModelLike,
    prompts: Sequence[Text],
    judge: RewardSource | Any = None,
    *,
    tokenizer: Any = None,
    reference: ModelLike | None = None,
    baseline: ModelLike | None = None,
    baseline_tokenizer: Any = None,
    pairs: Sequence[Group] | None = None,
    sampling: SamplingConfig | None = None,
    chat_template: str = "auto",
    max_prompt_length: int | None = None,
    max_length: int = 512,
    logprob_chunk_size: int = 1024,
    confidence: float = 0.95,
    ci_method: str = "normal",
    torch_dtype: str = "float32",
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Evaluate a policy (a model or a model directory) on ``prompts``; returns the metrics and the samples.

    ``judge`` (a reward source, or anything :func:`~rewardalign.rewards.sources.build_source` takes: a spec
    string, a mapping, a callable) gives rewards (reward_mean, win_rate); ``reference`` gives kl and, with ``pairs`` (groups with
    feedback, e.g. a held-out split), the likelihood displacement; ``baseline`` gives win_rate (with
    ``baseline_tokenizer``, else its directory's, else the policy's). ``tokenizer`` defaults to the policy
    directory's. ``max_length`` bounds the tokenised pairs (prompt and response, as in training).
    Models given as directories are loaded with ``torch_dtype`` and ``trust_remote_code`` on the policy's
    device (a GPU where there is one); the baseline is freed once it has sampled, before the reference loads.

    The dict holds the metrics of the module docstring, ``n_prompts``, ``n_samples``, ``judge``, ``sampling``,
    ``ci`` (confidence, method, unit) and ``samples``: one record per sample (prompt, prompt_index,
    sample_index, response, tokens, finished, and where measured reward, logp, ref_logp, baseline_response,
    baseline_reward). ``eval.json`` is this dict without ``samples``.
    """
    sampling = sampling or SamplingConfig()
    judge = None if judge is None else build_source(judge)
    if not prompts:
        raise ValueError("no prompts to evaluate on")
    if tokenizer is None:
        tokenizer = _tokenizer_of(model)
        if tokenizer is None:
            raise ValueError("give the tokenizer (the model is not a directory with one)")
    if reference is not None:
        check_same_vocab(tokenizer, reference, "reference")
    elif pairs:
        raise ValueError("likelihood displacement on pairs needs a reference model")
    load = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    policy = _load(model, **load)
    device = _device(policy)
    stats = {"confidence": confidence, "method": ci_method}

    samples = generate_samples(policy, tokenizer, prompts, sampling, chat_template, max_prompt_length)
    stop = stop_token_ids(tokenizer, policy)
    tokens = samples.lengths(stop)
    out: dict[str, Any] = {
        "n_prompts": samples.n_prompts,
        "n_samples": sampling.n_samples,
        "judge": judge.name if judge is not None else None,
        "sampling": {k: getattr(sampling, k) for k in ("temperature", "top_p", "top_k", "max_new_tokens", "seed",
                                                         "batch_size")},
        "ci": stats | {"unit": "prompt" if samples.n_prompts > 1 else "sample"},
    }
    records = [
        {"prompt": p, "prompt_index": i, "sample_index": j, "response": samples.texts[i][j],
         "tokens": tokens[i][j], "finished": samples.finished[i][j]}
        for i, p in enumerate(samples.prompts) for j in range(samples.n_samples)
    ]
    out["eos_missing_fraction"] = metrics.eos_missing_fraction(samples.finished)
    out["length"] = metrics.length_stats(tokens, [[len(t) for t in row] for row in samples.texts])

    rewards = None
    if judge is not None:
        rewards = _rewards(judge, samples)
        out |= _estimate("reward_mean", metrics.clustered_mean_ci(rewards, **stats))
        for rec in records:
            rec["reward"] = rewards[rec["prompt_index"]][rec["sample_index"]]

    if baseline is not None:
        base_model = _load(baseline, device, "baseline", **load)
        base_tok = baseline_tokenizer or _tokenizer_of(baseline) or tokenizer
        base = generate_samples(base_model, base_tok, prompts, sampling, chat_template, max_prompt_length)
        out["baseline_eos_missing_fraction"] = metrics.eos_missing_fraction(base.finished)
        out["baseline_length"] = metrics.length_stats(base.lengths(stop_token_ids(base_tok, base_model)),
                                                      [[len(t) for t in row] for row in base.texts])
        for rec in records:
            rec["baseline_response"] = base.texts[rec["prompt_index"]][rec["sample_index"]]
        if judge is not None:
            base_rewards = _rewards(judge, base)
            out |= _estimate("baseline_reward_mean", metrics.clustered_mean_ci(base_rewards, **stats))
            est, counts = metrics.win_rate(rewards, base_rewards, confidence=confidence, method=ci_method)
            out |= _estimate("win_rate", est) | counts
            for rec in records:
                rec["baseline_reward"] = base_rewards[rec["prompt_index"]][rec["sample_index"]]
        del base_model
        if isinstance(baseline, str) and device.type == "cuda":
            torch.cuda.empty_cache()

    if reference is not None:
        ref_model = _load(reference, device, "reference", **load)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
        groups = sample_groups(samples)
        lp = group_logps(policy, groups, pad, sampling.batch_size, logprob_chunk_size)
        lr = group_logps(ref_model, groups, pad, sampling.batch_size, logprob_chunk_size)
        out |= _estimate("kl", metrics.kl_estimate(lp, lr, **stats))
        n_tok = sum(len(r) for row in samples.response_ids for r in row)
        out["kl_per_token"] = sum(a - b for ra, rb in zip(lp, lr) for a, b in zip(ra, rb)) / max(n_tok, 1)
        out["kl_exact_sampling"] = sampling.exact
        for rec in records:
            i, j = rec["prompt_index"], rec["sample_index"]
            rec["logp"], rec["ref_logp"] = lp[i][j], lr[i][j]
        if pairs:
            tok_cfg = TokenizeConfig(max_length=max_length, max_prompt_length=max_prompt_length,
                                     chat_template=chat_template)
            out |= displacement(policy, ref_model, tokenizer, pairs, tok_cfg, sampling.batch_size,
                                logprob_chunk_size, confidence, ci_method)

    out["samples"] = records
    return out


def json_ready(value: Any) -> Any:
    """``value`` with NaN / infinite floats as None (strict JSON), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
