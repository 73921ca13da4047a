"""Real scale on one GPU: rewardalign's batch layouts against TRL's ``DPOTrainer``, online sampling throughput,
and correctness checks, side by side in one run, written to ``benchmarks/results/``.

    python benchmarks/gpu.py --device cuda [--check-targets] [--only PATTERN ...] [--skip PATTERN ...]
    python benchmarks/gpu.py --device cpu --dry-run          # every step at toy size, on CPU, in under 2 minutes
    python benchmarks/gpu.py --device cuda --list            # the configuration names --only / --skip match

Models are built from configs with random weights (no download), the same seed for every configuration of a
model, so every system starts from identical weights: ``qwen2.5-0.5b`` (Qwen2Config: hidden 896, 24 layers, 14
heads, 2 KV heads, intermediate 4864, vocabulary 151936, tied embeddings) and ``llama-3.2-1b`` (LlamaConfig:
hidden 2048, 16 layers, 32 heads, 8 KV heads, intermediate 8192, vocabulary 128256, tied embeddings, rope_theta
500000; no rope scaling, which does not change the cost). ``--dry-run`` shrinks them to 2 layers of hidden 64
and a vocabulary of 8192 (``--dry-vocab 0`` keeps the real ones; a 150k bfloat16 head is slow on CPU), and the
lengths to tens of tokens. Data: random token ids, prompts and responses of 256-512 tokens each (responses end
with EOS), so every system trains on identical token ids.

Training (``<model>/<workload>/<system>``): ``dpo`` (pairs, K = 2, 8 pairs per batch) and ``spo`` (K = 4, 4 groups
per batch). rewardalign: every layout (plain, shared_prompt, packed, packed_shared_prompt) with
``attn_implementation`` sdpa, and for the packed layouts flex_attention where transformers and torch offer it
(``flex``: the 4D mask exactly as the package passes it, which transformers applies as a dense ``score_mod``;
``flex+blockmask``: a PROTOTYPE in which this script hands the model a flex ``BlockMask`` built from the same
segment / branch ids, i.e. what the package could do). TRL (``dpo`` only, it has no listwise objective): its
``DPOTrainer`` in its best configuration: precomputed reference log-probs, bf16, no gradient checkpointing,
dropout off, its fused LM head, and ``padding_free=True`` where the installed version honours it (TRL 1.16
turns it off with a warning: recorded in the row). Both systems run the same step, timed from the CPU batch to
the optimizer update: collate the batch's groups on the CPU (the package's collator / TRL's), move it to the
device, loss (rewardalign: ``batch_logps`` + ``compute_objective``, as its trainer does; TRL: its
``DPOTrainer.compute_loss``), backward, ``torch.optim.AdamW`` step (fused on CUDA, lr 1e-6). Precision on CUDA:
float32 master weights under bfloat16 autocast (what ``bf16: true`` gives both trainers); ``--precision bf16``
puts the weights themselves in bfloat16. On CPU: float32. ``--warmup`` steps, then ``--steps`` timed steps, each
on the next batch of the same data, in the same order for every system.

Measured per training configuration:

- response tokens per second: response tokens (EOS included; the tokens the loss scores) of the timed steps
  over their wall time (``torch.cuda.synchronize`` around each step);
- peak memory: ``torch.cuda.max_memory_allocated`` over the timed steps (reset after the warmup, whose steps
  have already allocated the optimizer state; reset again at each configuration's start): ``peak`` is the
  total (weights, gradients, AdamW state, activations, logits), ``act.`` the part above what was allocated when
  the timed steps began (activations, gradients, logits). Not measured on CPU (one process runs every
  configuration);
- MFU = model FLOPs per second / the GPU's peak dense bf16 FLOP/s (``--peak_tflops``, else looked up from
  ``torch.cuda.get_device_name()``: H100 / H200 SXM 989, H100 PCIe 756, A100 312, ...; unknown devices 989).
  Model FLOPs of a training step (forward + backward = 3 x forward, the 2 FLOPs of a multiply-add counted, no
  recomputation counted) over the tokens the policy NEEDS, i.e. each prompt once plus its responses:

      F = 6 * N * T  +  6 * d * V * T_resp  +  12 * L * d_attn * S

  with N the non-embedding parameters (the transformer blocks and the final norm), T = sum over groups of
  (P + sum_k R_k) the tokens the blocks must process, d the hidden size, V the vocabulary, T_resp = sum_k R_k the
  response tokens the LM head must score (its projection, counted separately because it runs on those positions
  only), L the layers, d_attn = heads x head_dim, and S = P(P+1)/2 + sum_k (R_k P + R_k(R_k+1)/2) the causal
  (query, key) pairs of a group (QK^T and AV: 2 x 2 FLOPs per pair and dimension). ``MFU`` uses these needed
  tokens for every system (so a layout that repeats the prompt per response does more work for the same MFU);
  ``MFU exec.`` counts the tokens the system actually runs (the prompt repeated per response in ``plain``,
  ``packed`` and TRL; padding never counted). The reference log-probs are precomputed by both systems (one
  no-grad forward over the data before training) and are NOT in the step's FLOPs or time: their wall time is
  the row's ``ref s`` (TRL: its precompute in the constructor, with its tokenisation).

Online UNA sampling (``<model>/generate/sampler``): the package's sampler (``generate_samples``: batched
``model.generate``, 16 prompts of 128-256 tokens, K = 4 samples each in one batch of 64, ``max_new_tokens``
256, temperature 1) on the model in bfloat16 (CUDA): samples per second and generated tokens per second (a
random model seldom samples EOS, so nearly every sample runs to ``max_new_tokens``).

Correctness checks, on the device and in the precision of the run (``<model>/check/...``):

- layouts: the summed response log-probs (and DRO's prompt log-probs) of every layout (and flex attention on
  the packed ones), and of ``plain`` itself, against the full-logits computation on the plain batch, on groups
  of K = 1..4 with different lengths; the error is the largest |difference| / tokens of a sequence (nats per
  token): within 1e-4 in float32 (on CUDA as on CPU), 3e-2 under bfloat16 autocast (CUDA). On CPU the flex
  checks need ``--cpu-flex`` (forward only, ~30 s of compilation each; rows padded to whole 128-token blocks,
  since torch 2.13's CPU flex kernel returns sporadic NaN on a partial last block, and ``flex`` with the dense
  mask aborts the process there: a ``crashed`` row);
- finite step: one bfloat16-autocast training step (packed_shared_prompt batch, AdamW) of every objective of
  the registry (dpo, ipo, simpo, spo, dro, drdo, una_score_mse, kto, rloo, ...): loss, gradients and updated
  weights all finite.

Every configuration runs in a ``try`` block: an out-of-memory error or any other failure becomes a row with
its reason, and the run goes on; so does a configuration skipped for lack of flex attention (no backward on
CPU), or past ``--time-budget`` (default 330 s on CUDA, so the whole run ends within ~7 minutes on an H200).
The flex configurations run last, in a child process: their compiled kernels can take a process down (torch
2.13's CPU flex kernel with the package's dense mask aborts with heap corruption), and a task during which the
child dies becomes a ``crashed`` row while a new child takes the rest (``--in-process`` to keep them here).
Output: ``benchmarks/results/gpu-<device>-<device name>-<date>.md`` and ``.json``, rewritten after every row
(marked partial until the run ends; ``dryrun-...`` for a dry run: not to be committed), with the device name,
torch / transformers / TRL versions and the date. ``--check-targets`` prints
the issue's targets as pass / fail lines: rewardalign >= 2x TRL's response tokens per second (DPO, same
batch), <= 0.7x its peak memory, and MFU >= 40% for the 1B model (prompts and responses of 256-512 tokens).

Every ``rewardalign`` name this script uses is imported in :func:`package` (one place to re-point).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fnmatch
import gc
import json
import math
import os
import platform
import random
import re
import shlex
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # _workloads.build_tokenizer

PEAK_BF16_TFLOPS = [  # dense (not sparse) bfloat16 tensor-core peaks; the first name contained in the device's wins
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200", 989.0), ("H100", 989.0), ("H800", 989.0),
    ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
    ("A10G", 125.0), ("A10", 125.0), ("L4", 121.0), ("RTX 4090", 165.0),
]
DEFAULT_PEAK_TFLOPS = 989.0

MODELS = {
    "qwen2.5-0.5b": dict(arch="qwen2", hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864,
                         vocab=151_936, rope_theta=1_000_000.0, rms_norm_eps=1e-6),
    "llama-3.2-1b": dict(arch="llama", hidden=2048, layers=16, heads=32, kv_heads=8, intermediate=8192,
                         vocab=128_256, rope_theta=500_000.0, rms_norm_eps=1e-5),
}
DRY_SHAPES = {
    "qwen2.5-0.5b": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=160),
    "llama-3.2-1b": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=192),
}
PAD, BOS, EOS, FIRST_WORD = 0, 1, 2, 4  # the word-level tokenizer of _workloads: <pad> <s> </s> <unk> w0 w1 ...
LAYOUTS = ("plain", "shared_prompt", "packed", "packed_shared_prompt")
PACKED = ("packed", "packed_shared_prompt")


def package() -> SimpleNamespace:
    """Every rewardalign name this script uses, imported here only."""
    try:
        import rewardalign  # noqa: F401
    except ImportError:  # run from a checkout without installing the package
        sys.path.insert(0, str(ROOT / "src"))
    from rewardalign.data.collate import collate_groups
    from rewardalign.data.tokenize import TokenizedGroup
    from rewardalign.modeling.generation import SamplingConfig, generate_samples
    from rewardalign.modeling.logprobs import batch_logps
    from rewardalign.objectives import OBJECTIVES, ObjectiveInputs, compute_objective, get_objective

    return SimpleNamespace(collate_groups=collate_groups, TokenizedGroup=TokenizedGroup, batch_logps=batch_logps,
                           OBJECTIVES=OBJECTIVES, ObjectiveInputs=ObjectiveInputs,
                           compute_objective=compute_objective, get_objective=get_objective,
                           SamplingConfig=SamplingConfig, generate_samples=generate_samples)


# ---------------------------------------------------------------------------------------------------- setup


@dataclass
class Workload:
    name: str
    objective: str
    k: int
    batch_size: int  # groups per step
    prompt: tuple[int, int]  # token length ranges (inclusive)
    response: tuple[int, int]  # before EOS
    n_samples: int = 0  # generation: samples per prompt
    max_new_tokens: int = 0


def workloads(dry: bool) -> dict[str, Workload]:
    if dry:
        return {"dpo": Workload("dpo", "dpo", 2, 2, (16, 48), (8, 32)),
                "spo": Workload("spo", "spo", 4, 2, (16, 48), (8, 32)),
                "generate": Workload("generate", "una_score_mse", 2, 2, (8, 16), (0, 0), 2, 8),
                "check": Workload("check", "", 4, 4, (4, 24), (1, 16))}
    return {"dpo": Workload("dpo", "dpo", 2, 8, (256, 512), (256, 512)),
            "spo": Workload("spo", "spo", 4, 4, (256, 512), (256, 512)),
            "generate": Workload("generate", "una_score_mse", 4, 16, (128, 256), (0, 0), 4, 256),
            "check": Workload("check", "", 4, 4, (32, 256), (1, 256))}


def model_config(name: str, dry: bool, dry_vocab: int | None):
    from transformers import LlamaConfig, Qwen2Config

    shape = dict(MODELS[name])
    if dry:
        shape.update(DRY_SHAPES[name])
        if dry_vocab:
            shape["vocab"] = dry_vocab
    common = dict(vocab_size=shape["vocab"], hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                  num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
                  intermediate_size=shape["intermediate"], max_position_embeddings=4096,
                  rms_norm_eps=shape["rms_norm_eps"], rope_theta=shape["rope_theta"], tie_word_embeddings=True,
                  pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, attention_dropout=0.0, use_cache=False)
    return (Qwen2Config if shape["arch"] == "qwen2" else LlamaConfig)(**common)


def build_model(cfg, device: str, attn: str = "sdpa", seed: int = 0):
    """The model of ``cfg`` with random weights (seeded: the same weights for every configuration), on device."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn, dtype=torch.float32)
    model.to(device)
    model.train()
    return model


def param_counts(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())  # tied: the head's weight is the embedding's
    embedding = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight
    untied_head = 0 if head is model.get_input_embeddings().weight else head.numel()
    return {"total": total, "non_embedding": total - embedding - untied_head}


def make_groups(ra, w: Workload, vocab: int, seed: int, n_groups: int, ks: list[int] | None = None) -> list:
    """``n_groups`` random groups of ``w``'s lengths (K = ``w.k``, or ``ks`` cycled), with rewards, scores in
    [0, 1] and labels of both kinds; response ids end with EOS."""
    rng = random.Random(seed)
    groups = []
    for i in range(n_groups):
        k = ks[i % len(ks)] if ks else w.k
        ids = lambda n: [rng.randrange(FIRST_WORD, vocab) for _ in range(n)]  # noqa: E731
        prompt = ids(rng.randint(*w.prompt))
        responses = [ids(rng.randint(*w.response)) + [EOS] for _ in range(k)]
        labels = [j % 2 for j in range(k)]
        rng.shuffle(labels)
        groups.append(ra.TokenizedGroup(prompt, responses, rewards=[round(rng.gauss(0, 1), 3) for _ in range(k)],
                                        scores=[round(rng.random(), 3) for _ in range(k)], labels=labels, index=i))
    return groups


def as_words(ids: list[int]) -> str:
    return " ".join(f"w{t - FIRST_WORD}" for t in ids)


# ---------------------------------------------------------------------------------------------------- FLOPs


def group_work(prompt: int, responses: list[int], shared: bool) -> tuple[int, int]:
    """(tokens through the blocks, causal attention pairs) of one group: the prompt once (``shared``) or once
    per response."""
    if shared:
        pairs = prompt * (prompt + 1) // 2 + sum(r * prompt + r * (r + 1) // 2 for r in responses)
        return prompt + sum(responses), pairs
    return sum(prompt + r for r in responses), sum((prompt + r) * (prompt + r + 1) // 2 for r in responses)


def step_flops(cfg, counts: dict, groups: list, shared: bool) -> float:
    """Model FLOPs of one training step on ``groups`` (the module docstring's formula)."""
    tokens = pairs = targets = 0
    for g in groups:
        lengths = [len(r) for r in g.response_ids]
        t, s = group_work(len(g.prompt_ids), lengths, shared)
        tokens, pairs, targets = tokens + t, pairs + s, targets + sum(lengths)
    d_attn = cfg.num_attention_heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    return (6 * counts["non_embedding"] * tokens + 6 * cfg.hidden_size * cfg.vocab_size * targets
            + 12 * cfg.num_hidden_layers * d_attn * pairs)


# ---------------------------------------------------------------------------------------------------- helpers


class Skip(Exception):
    """A configuration that cannot run here, with the reason."""


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def cleanup(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def to_device(batch: dict, device: str) -> dict:
    import torch

    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def autocast(run) -> contextlib.AbstractContextManager:
    import torch

    if run.device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model, device: str):
    import torch

    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6,
                             fused=device == "cuda")


def flex_support(model_cls, device: str) -> str | None:
    """None if flex attention can train this model class on ``device``, else why not."""
    import torch

    try:
        from torch.nn.attention.flex_attention import create_block_mask  # noqa: F401
    except ImportError as e:
        return f"torch {torch.__version__} has no flex_attention ({e})"
    if not getattr(model_cls, "_supports_flex_attn", False):
        return f"transformers offers no flex_attention for {model_cls.__name__}"
    if device != "cuda":
        return (f"flex_attention has no backward on CPU (torch {torch.__version__}: 'FlexAttention does not support "
                "backward on CPU'), so it cannot train there")
    return None


@contextlib.contextmanager
def flex_block_masks(ra):
    """PROTOTYPE: while active, the package's segment layouts reach a flex_attention model as a flex ``BlockMask``
    built from ``segment_ids`` / ``branch_ids`` (the rule of ``block_attention_mask``: causal, same segment, key on
    the prompt's branch or the query's own), instead of the dense 4D mask transformers turns into a ``score_mod``.
    Patches the name ``segment_attention_mask`` in the globals of the module that defines ``batch_logps``."""
    import torch
    from torch.nn.attention.flex_attention import create_block_mask

    namespace = ra.batch_logps.__globals__
    original = namespace["segment_attention_mask"]

    def segment_attention_mask(model, batch):
        inner = model
        while not hasattr(inner, "config") and hasattr(inner, "module"):
            inner = inner.module
        if getattr(inner.config, "_attn_implementation", None) != "flex_attention":
            return original(model, batch)
        # The kernels evaluate mask_mod on whole 128-wide blocks, indices past the row's end included: pad the
        # ids to whole blocks (segment -2 matches no real token) so every read is in bounds.
        rows, cols = batch["segment_ids"].shape
        pad = -cols % 128
        seg = torch.nn.functional.pad(batch["segment_ids"], (0, pad), value=-2)
        branch = torch.nn.functional.pad(batch["branch_ids"], (0, pad), value=0)

        def mask_mod(b, h, q, kv):
            same_branch = (branch[b, kv] == 0) | (branch[b, q] == branch[b, kv])
            return (q >= kv) & (seg[b, q] == seg[b, kv]) & same_branch

        return create_block_mask(mask_mod, B=rows, H=None, Q_LEN=cols, KV_LEN=cols, device=seg.device)

    namespace["segment_attention_mask"] = segment_attention_mask
    try:
        yield
    finally:
        namespace["segment_attention_mask"] = original


def collate(run, groups: list, layout: str, attn: str = "sdpa") -> dict:
    """The package's batch of ``groups`` in ``layout``; for flex attention with ``--flex-block-pad`` (always in
    the CPU checks), segment rows padded to whole 128-token blocks: torch 2.13's CPU flex kernel returns
    sporadic NaN on a partial last block."""
    import torch

    batch = run.ra.collate_groups(groups, PAD, layout)
    if attn.startswith("flex") and "segment_ids" in batch and (run.args.flex_block_pad or run.device == "cpu"):
        pad = -batch["input_ids"].shape[1] % 128
        for key, value in (("input_ids", PAD), ("position_ids", 0), ("segment_ids", -1), ("branch_ids", 0)):
            batch[key] = torch.nn.functional.pad(batch[key], (0, pad), value=value)
    return batch


def set_attention(model, attn: str, ra) -> contextlib.AbstractContextManager:
    """Switch ``model`` to ``attn`` (``flex+blockmask``: flex_attention with the prototype's block masks); returns
    the context to run its forwards in."""
    model.set_attn_implementation("flex_attention" if attn.startswith("flex") else attn)
    return flex_block_masks(ra) if attn == "flex+blockmask" else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------------- runs


@dataclass
class Run:
    args: argparse.Namespace
    device: str
    dry: bool
    ra: SimpleNamespace
    loads: dict[str, Workload]
    peak_tflops: float | None
    started: float = field(default_factory=time.perf_counter)
    peak_source: str = ""
    command: str = ""
    date: str = ""
    configs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    tokenizers: dict = field(default_factory=dict)

    def config(self, model_name: str):
        if model_name not in self.configs:
            self.configs[model_name] = model_config(model_name, self.dry, self.args.dry_vocab)
        return self.configs[model_name]

    def model(self, model_name: str, attn: str = "sdpa", cast: bool = True):
        """A fresh model (bf16 weights with ``--precision bf16`` on CUDA unless ``cast`` is False)."""
        model = build_model(self.config(model_name), self.device, attn)
        if cast and self.args.precision == "bf16" and self.device == "cuda":
            import torch

            model.to(torch.bfloat16)
        self.params.setdefault(model_name, param_counts(model))
        return model

    def tokenizer(self, model_name: str):
        from _workloads import build_tokenizer

        vocab = self.config(model_name).vocab_size
        if vocab not in self.tokenizers:
            self.tokenizers[vocab] = build_tokenizer(vocab)
        return self.tokenizers[vocab]

    def data(self, model_name: str, w: Workload) -> list:
        n = w.batch_size * (self.args.warmup + self.args.steps)
        return make_groups(self.ra, w, self.config(model_name).vocab_size, seed=1, n_groups=n)


def rewardalign_step_fn(run: Run, model, objective: str, layout: str, attn: str):
    """One training step of the package on a list of groups (collate, to device, loss, backward, AdamW); returns
    a function of the groups giving the response tokens it trained on."""
    ra = run.ra
    needs = ra.get_objective(objective).requirements({})
    optimizer = make_optimizer(model, run.device)

    def step(groups) -> tuple[int, float]:
        batch = to_device(collate(run, groups, layout, attn), run.device)
        with autocast(run):
            policy = ra.batch_logps(model, batch, 1024, with_prompt=needs.prompt_logps)
            inputs = ra.ObjectiveInputs(
                policy_logps=policy.logps, mask=batch["mask"], n_tokens=policy.n_tokens,
                ref_logps=batch["ref_logps"].to(policy.logps.dtype) if needs.reference else None,
                rewards=batch.get("rewards"), scores=batch.get("scores"), labels=batch.get("binary_labels"),
                prompt_policy_logps=policy.prompt_logps, prompt_ref_logps=batch.get("prompt_ref_logps"),
                group_ids=batch.get("group_ids"))
            loss, metrics = ra.compute_objective(objective, inputs, beta=0.1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for value in metrics.values():  # AlignTrainer logs every metric: float() of each (a device sync each)
            float(value)
        return int(inputs.n_tokens[inputs.mask].sum()), float(loss)

    return step, optimizer


def precompute_reference(run: Run, model, groups: list, w: Workload, layout: str, attn: str) -> None:
    """The reference log-probs of every group (the initial policy, no grad), stored as the package's precompute
    stores them (``extra['ref_logps']`` [K], ``extra['prompt_ref_logps']``)."""
    import torch

    ra = run.ra
    needs = ra.get_objective(w.objective).requirements({})
    with torch.no_grad():
        for start in range(0, len(groups), w.batch_size):
            chunk = groups[start: start + w.batch_size]
            batch = to_device(collate(run, chunk, layout, attn), run.device)
            with autocast(run):
                out = ra.batch_logps(model, batch, 1024, with_prompt=needs.prompt_logps)
            for b, g in enumerate(chunk):
                g.extra["ref_logps"] = out.logps[b, : g.k].float().tolist()
                if needs.prompt_logps:
                    g.extra["prompt_ref_logps"] = float(out.prompt_logps[b])


def timed_steps(run: Run, step, batches: list) -> dict:
    """Warmup, then the timed steps, with CUDA memory and per-step wall time."""
    import torch

    cuda = run.device == "cuda"
    warm, timed = batches[: run.args.warmup], batches[run.args.warmup:]
    losses = []
    for groups in warm:
        losses.append(step(groups)[1])
    sync(run.device)
    setup_peak = torch.cuda.max_memory_allocated() if cuda else None
    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if cuda else None
    seconds, tokens = [], 0
    for groups in timed:
        sync(run.device)
        start = time.perf_counter()
        n, loss = step(groups)
        sync(run.device)
        seconds.append(time.perf_counter() - start)
        tokens += n
        losses.append(loss)
    out = {"steps": len(timed), "seconds": sum(seconds), "step_ms": 1e3 * statistics.median(seconds),
           "response_tokens": tokens, "tok_s": tokens / sum(seconds), "losses": losses}
    if not all(math.isfinite(x) for x in losses):
        out.update(status="failed", reason=f"non-finite loss: {losses}")
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        out.update(peak_mib=peak / 2**20, act_peak_mib=(peak - base) / 2**20,
                   setup_peak_mib=setup_peak / 2**20)
    return out


def with_mfu(run: Run, row: dict, model_name: str, timed_groups: list, exec_shared: bool) -> dict:
    cfg, counts = run.config(model_name), run.params[model_name]
    useful = sum(step_flops(cfg, counts, [g], shared=True) for g in timed_groups)
    executed = sum(step_flops(cfg, counts, [g], shared=exec_shared) for g in timed_groups)
    row["tflop_per_step"] = useful / row["steps"] / 1e12
    if run.peak_tflops:
        row["mfu"] = useful / row["seconds"] / (run.peak_tflops * 1e12)
        row["mfu_exec"] = executed / row["seconds"] / (run.peak_tflops * 1e12)
    return row


def train_rewardalign(run: Run, model_name: str, w: Workload, layout: str, attn: str) -> dict:
    groups = run.data(model_name, w)
    model = run.model(model_name)
    with set_attention(model, attn, run.ra):
        start = time.perf_counter()
        precompute_reference(run, model, groups, w, layout, attn)
        sync(run.device)
        ref_s = time.perf_counter() - start
        step, optimizer = rewardalign_step_fn(run, model, w.objective, layout, attn)
        size = w.batch_size
        batches = [groups[i: i + size] for i in range(0, len(groups), size)]
        row = timed_steps(run, step, batches)
    row["ref_s"] = ref_s
    timed_groups = [g for b in batches[run.args.warmup:] for g in b]
    padded = [collate(run, b, layout, attn) for b in batches[run.args.warmup:]]
    real = sum(int((b["segment_ids"] >= 0).sum()) if "segment_ids" in b else int(b["attention_mask"].sum())
               for b in padded)
    row["pad_frac"] = 1 - real / sum(b["input_ids"].numel() for b in padded)
    del model, optimizer, step
    return with_mfu(run, row, model_name, timed_groups, exec_shared=layout.endswith("shared_prompt"))


def train_trl(run: Run, model_name: str, w: Workload) -> dict:
    from datasets import Dataset

    try:
        import trl
        from trl import DPOConfig, DPOTrainer
        from trl.trainer import dpo_trainer
    except ImportError as e:
        raise Skip(f"TRL is not installed ({e}): pip install 'trl>=1.16'") from e
    groups = run.data(model_name, w)
    rows = [{"prompt": as_words(g.prompt_ids), "chosen": " " + as_words(g.response_ids[0][:-1]),
             "rejected": " " + as_words(g.response_ids[1][:-1])} for g in groups]
    model = run.model(model_name)
    cuda = run.device == "cuda"
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(
            output_dir=tmp, per_device_train_batch_size=w.batch_size, precompute_ref_log_probs=True,
            precompute_ref_batch_size=w.batch_size, padding_free=True, max_length=None, bf16=cuda,
            use_cpu=not cuda, gradient_checkpointing=False, disable_dropout=True, beta=0.1,
            loss_type=["sigmoid"], learning_rate=1e-6, report_to="none", save_strategy="no", seed=0,
            disable_tqdm=True, logging_steps=10**6,
        )
        # TRL names its reference-log-prob cache file by a SHA-256 of every weight (seconds of a GPU->CPU copy
        # for a 1B model): setup, not training; a fresh random name never reuses a cache and skips it.
        original_hash = dpo_trainer.hash_module
        dpo_trainer.hash_module = lambda module: uuid.uuid4().hex
        try:
            start = time.perf_counter()
            trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                 processing_class=run.tokenizer(model_name))
            sync(run.device)
            ref_s = time.perf_counter() - start
        finally:
            dpo_trainer.hash_module = original_hash
        if not getattr(trainer, "padding_free", False):
            notes.append(f"padding_free=True requested; TRL {trl.__version__} turned it off")
        if not cuda:
            notes.append("CPU: TRL's fused head scores every position (no Triton)")
        columns = ["prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps"]
        data = trainer.train_dataset.select_columns(columns)
        policy = trainer.model
        policy.train()
        optimizer = make_optimizer(policy, run.device)
        expected = iter([sum(len(r) for g in groups[i: i + w.batch_size] for r in g.response_ids)
                         for i in range(0, len(groups), w.batch_size)])

        shapes = []

        def step(indices) -> tuple[int, float]:
            batch = trainer.data_collator([data[i] for i in indices])
            shapes.append((int(batch["attention_mask"].sum()), batch["input_ids"].numel()))
            batch = to_device(batch, run.device)
            with autocast(run):
                loss = trainer.compute_loss(policy, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens = int(batch["completion_mask"].sum())
            if tokens != next(expected):
                raise RuntimeError(f"TRL trained on {tokens} response tokens, the groups have a different count")
            return tokens, float(loss)

        batches = [list(range(i, min(i + w.batch_size, len(groups)))) for i in range(0, len(groups), w.batch_size)]
        row = timed_steps(run, step, batches)
    timed_shapes = shapes[run.args.warmup:]
    row["pad_frac"] = 1 - sum(real for real, _ in timed_shapes) / sum(total for _, total in timed_shapes)
    row["ref_s"] = ref_s
    row["note"] = "; ".join(notes)
    timed_groups = groups[run.args.warmup * w.batch_size:]
    return with_mfu(run, row, model_name, timed_groups, exec_shared=False)


def generate(run: Run, model_name: str, w: Workload) -> dict:
    import torch

    ra = run.ra
    model = run.model(model_name)
    if run.device == "cuda":
        model.to(torch.bfloat16)
    model.eval()
    tokenizer = run.tokenizer(model_name)
    rng = random.Random(2)
    vocab = run.config(model_name).vocab_size
    prompts = [as_words([rng.randrange(FIRST_WORD, vocab) for _ in range(rng.randint(*w.prompt))])
               for _ in range(w.batch_size)]
    cfg = ra.SamplingConfig(n_samples=w.n_samples, max_new_tokens=w.max_new_tokens, temperature=1.0,
                            batch_size=w.batch_size * w.n_samples, seed=0)
    ra.generate_samples(model, tokenizer, prompts[:1], ra.SamplingConfig(n_samples=2, max_new_tokens=4))  # warm
    sync(run.device)
    if run.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    samples = ra.generate_samples(model, tokenizer, prompts, cfg)
    sync(run.device)
    seconds = time.perf_counter() - start
    n = sum(len(row) for row in samples.response_ids)
    tokens = sum(len(r) for row in samples.response_ids for r in row)
    row = {"samples": n, "seconds": seconds, "samples_s": n / seconds, "gen_tok_s": tokens / seconds,
           "mean_new_tokens": tokens / n, "prompts": len(prompts), "k": w.n_samples,
           "max_new_tokens": w.max_new_tokens}
    if run.device == "cuda":
        row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    del model
    return row


# ---------------------------------------------------------------------------------------------------- checks


def full_logits_reference(model, batch: dict) -> tuple[Any, Any]:
    """Summed response log-probs per plain sequence [N] and the first sequence's prompt log-probs per group [B],
    from the model's full logits (float32 log-softmax): the straightforward computation."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    response = batch["response_mask"][:, 1:]
    seqs = (logp * response).sum(-1)
    first = batch["first_seq"]
    positions = torch.arange(1, batch["input_ids"].shape[1], device=logp.device)
    in_prompt = positions[None, :] < batch["prompt_lengths"][first, None]
    return seqs, (logp[first] * in_prompt).sum(-1)


def check_layouts(run: Run, model_name: str, model, precision: str, attn: str, layout: str) -> dict:
    import torch

    ra = run.ra
    w = run.loads["check"]
    groups = make_groups(ra, w, run.config(model_name).vocab_size, seed=3, n_groups=w.batch_size, ks=[3, 2, 1, 4])
    plain = to_device(ra.collate_groups(groups, PAD, "plain"), run.device)
    ctx = autocast(run) if precision == "bfloat16" else contextlib.nullcontext()
    model.eval()
    with torch.no_grad():
        model.set_attn_implementation("sdpa")
        with ctx:
            seqs, prompt = full_logits_reference(model, plain)
        with set_attention(model, attn, ra), ctx:
            out = ra.batch_logps(model, to_device(collate(run, groups, layout, attn), run.device), 1024,
                                 with_prompt=True)
    model.set_attn_implementation("sdpa")
    model.train()
    got = out.logps[plain["seq_group"], plain["seq_slot"]]
    n = out.n_tokens[plain["seq_group"], plain["seq_slot"]]
    expected_n = plain["response_mask"][:, 1:].sum(-1).to(n.dtype)
    if not torch.equal(n, expected_n):
        raise RuntimeError(f"token counts differ from plain: {n.tolist()} != {expected_n.tolist()}")
    err = ((got.float() - seqs.float()).abs() / n.clamp(min=1)).max().item()
    prompt_n = (plain["prompt_lengths"][plain["first_seq"]] - 1).clamp(min=1)
    prompt_err = ((out.prompt_logps.float() - prompt.float()).abs() / prompt_n).max().item()
    tol = 1e-4 if precision == "float32" else 3e-2
    worst = max(err, prompt_err)
    return {"max_err": worst, "response_err": err, "prompt_err": prompt_err, "tol": tol,
            "passed": bool(math.isfinite(worst) and worst <= tol), "sequences": int(n.numel()),
            "response_tokens": int(n.sum())}


def check_finite_step(run: Run, model_name: str, model, objective: str) -> dict:
    import torch

    ra = run.ra
    w = run.loads["check"]
    groups = make_groups(ra, w, run.config(model_name).vocab_size, seed=4, n_groups=3, ks=[4, 2, 3])
    needs = ra.get_objective(objective).requirements({})
    model.train()
    with torch.no_grad(), torch.autocast(run.device, dtype=torch.bfloat16):
        batch = to_device(ra.collate_groups(groups, PAD, "packed_shared_prompt"), run.device)
        ref = ra.batch_logps(model, batch, 1024, with_prompt=True)
    optimizer = make_optimizer(model, run.device)
    with torch.autocast(run.device, dtype=torch.bfloat16):
        policy = ra.batch_logps(model, batch, 1024, with_prompt=needs.prompt_logps)
        inputs = ra.ObjectiveInputs(
            policy_logps=policy.logps, mask=batch["mask"], n_tokens=policy.n_tokens,
            ref_logps=ref.logps if needs.reference else None, rewards=batch.get("rewards"),
            scores=batch.get("scores"), labels=batch.get("binary_labels"),
            prompt_policy_logps=policy.prompt_logps, prompt_ref_logps=ref.prompt_logps,
            group_ids=batch.get("group_ids"))
        loss, _ = ra.compute_objective(objective, inputs)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    grads_finite = bool(torch.stack([g.float().isfinite().all() for g in grads]).all()) if grads else False
    grad_norm = float(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads]))) if grads else 0.0
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    weights_finite = bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all())
    del optimizer
    loss_value = float(loss)
    ok = math.isfinite(loss_value) and grads_finite and weights_finite
    return {"loss": loss_value, "grad_norm": grad_norm, "grads_finite": grads_finite,
            "weights_finite": weights_finite, "passed": ok, "precision": "bfloat16 autocast"}


# ---------------------------------------------------------------------------------------------------- plan


@dataclass
class Task:
    name: str
    kind: str  # check | train | generate
    model: str
    fn: Any
    slow: bool = False  # flex: compiled; runs last
    info: dict = field(default_factory=dict)


def plan(run: Run, select: bool = True) -> list[Task]:
    tasks: list[Task] = []
    flex_attns = ("flex", "flex+blockmask")
    for m in run.args.models:
        precisions = ["float32", "bfloat16"] if run.device == "cuda" else ["float32"]
        for precision in precisions:
            for layout in LAYOUTS:
                tasks.append(Task(f"{m}/check/layout:{layout}:sdpa:{precision}", "check", m,
                                  ("layout", layout, "sdpa", precision), info=dict(layout=layout, attn="sdpa")))
            for layout in PACKED:
                for attn in flex_attns:
                    tasks.append(Task(f"{m}/check/layout:{layout}:{attn}:{precision}", "check", m,
                                      ("layout", layout, attn, precision), slow=True,
                                      info=dict(layout=layout, attn=attn)))
        tasks.append(Task(f"{m}/check/finite-step", "check", m, ("finite",)))
    for m in run.args.models:
        for wname in ("dpo", "spo"):
            w = run.loads[wname]
            for layout in LAYOUTS:
                tasks.append(Task(f"{m}/{wname}/rewardalign:{layout}:sdpa", "train", m, ("ra", w, layout, "sdpa"),
                                  info=dict(workload=wname, system="rewardalign", layout=layout, attn="sdpa")))
            if wname == "dpo":
                tasks.append(Task(f"{m}/dpo/trl", "train", m, ("trl", w),
                                  info=dict(workload=wname, system="trl", layout="padded", attn="sdpa")))
            for layout in PACKED:
                for attn in flex_attns:
                    tasks.append(Task(f"{m}/{wname}/rewardalign:{layout}:{attn}", "train", m,
                                      ("ra", w, layout, attn), slow=True,
                                      info=dict(workload=wname, system="rewardalign", layout=layout, attn=attn)))
        tasks.append(Task(f"{m}/generate/sampler", "generate", m, ("generate", run.loads["generate"]),
                          info=dict(workload="generate", system="rewardalign-sampler")))

    def chosen(name: str) -> bool:
        def hit(patterns):
            return any(fnmatch.fnmatch(name, p) or p in name for p in patterns)

        return (not run.args.only or hit(run.args.only)) and not (run.args.skip and hit(run.args.skip))

    tasks = [t for t in tasks if not select or chosen(t.name)]
    return [t for t in tasks if not t.slow] + [t for t in tasks if t.slow]


def cannot_run(run: Run, task: Task) -> str | None:
    """Why ``task`` cannot run on this machine (flex attention), before anything is built; None if it can."""
    if task.info.get("attn", "sdpa") == "sdpa":
        return None
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    model_cls = Qwen2ForCausalLM if MODELS[task.model]["arch"] == "qwen2" else LlamaForCausalLM
    reason = flex_support(model_cls, run.device)
    if reason and task.kind == "check" and run.device == "cpu" and run.args.cpu_flex:
        return None  # the layout checks need no backward
    return reason


def execute(run: Run, task: Task, check_models: dict) -> list[dict]:
    """Run one task; every failure becomes a row with its reason."""
    import torch

    base = {"name": task.name, "kind": task.kind, "model": task.model, **task.info}
    reason = cannot_run(run, task)
    if reason:
        return [base | {"status": "skipped", "reason": reason}]
    budget = run.args.budget
    elapsed = time.perf_counter() - run.started
    if budget and elapsed > budget:
        return [base | {"status": "skipped", "reason": f"time budget: {elapsed:.0f} s > --time-budget {budget:.0f}"}]
    cleanup(run.device)
    start = time.perf_counter()
    rows = []
    try:
        kind = task.fn[0]
        if kind in ("layout", "finite"):
            if task.model not in check_models:
                check_models.clear()
                cleanup(run.device)
                check_models[task.model] = run.model(task.model, cast=False)  # float32
            model = check_models[task.model]
            if kind == "layout":
                _, layout, attn, precision = task.fn
                rows.append(base | {"precision": precision, **check_layouts(run, task.model, model, precision, attn,
                                                                          layout)})
            else:
                for objective in run.args.objectives or run.ra.OBJECTIVES:
                    name = f"{task.name}:{objective}"
                    try:
                        rows.append(base | {"name": name, "objective": objective,
                                            **check_finite_step(run, task.model, model, objective)})
                    except Exception as e:  # noqa: BLE001  (recorded, the run goes on)
                        rows.append(base | {"name": name, "objective": objective, "passed": False,
                                            "status": "error", "reason": f"{type(e).__name__}: {e}"[:400]})
        elif kind == "ra":
            _, w, layout, attn = task.fn
            rows.append(base | train_rewardalign(run, task.model, w, layout, attn))
        elif kind == "trl":
            rows.append(base | train_trl(run, task.model, task.fn[1]))
        elif kind == "generate":
            rows.append(base | generate(run, task.model, task.fn[1]))
        for row in rows:
            row.setdefault("status", "ok" if row.get("passed", True) else "failed")
    except Skip as e:
        rows = [base | {"status": "skipped", "reason": str(e)}]
    except torch.cuda.OutOfMemoryError as e:
        rows = [base | {"status": "oom", "reason": f"CUDA out of memory: {str(e).splitlines()[0][:300]}"}]
    except Exception as e:  # noqa: BLE001  (recorded, the run goes on)
        if run.args.verbose:
            traceback.print_exc()
        rows = [base | {"status": "error", "reason": f"{type(e).__name__}: {e}"[:400]}]
    for row in rows:
        row["wall_s"] = time.perf_counter() - start
    if task.kind != "check":
        cleanup(run.device)
    return rows


# ---------------------------------------------------------------------------------------------------- report


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def peak_tflops(args, device: str) -> tuple[float | None, str]:
    if args.peak_tflops:
        return args.peak_tflops, "--peak_tflops"
    if device != "cuda":
        return None, "none on CPU (pass --peak_tflops to compute MFU)"
    name = device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value, f"lookup: {key}"
    return DEFAULT_PEAK_TFLOPS, f"default (unknown device {name!r})"


def add_ratios(rows: list[dict]) -> None:
    """speed_x and memory_x of every training row against TRL on the same model and workload."""
    for row in rows:
        if row["kind"] != "train" or row.get("status") != "ok":
            continue
        trl = next((r for r in rows if r["kind"] == "train" and r["model"] == row["model"]
                    and r.get("workload") == row.get("workload") and r.get("system") == "trl"
                    and r.get("status") == "ok"), None)
        if trl:
            row["speed_x"] = row["tok_s"] / trl["tok_s"]
            if row.get("peak_mib") and trl.get("peak_mib"):
                row["memory_x"] = row["peak_mib"] / trl["peak_mib"]
                row["act_memory_x"] = row["act_peak_mib"] / trl["act_peak_mib"]


def targets(rows: list[dict], dry: bool) -> list[str]:
    """The issue's targets, as measured in this run (pass / fail lines)."""
    out = []
    ok = [r for r in rows if r["kind"] == "train" and r.get("status") == "ok"]
    for model in dict.fromkeys(r["model"] for r in rows):
        trl = next((r for r in ok if r["model"] == model and r.get("workload") == "dpo" and r["system"] == "trl"),
                   None)
        ours = [r for r in ok if r["model"] == model and r.get("workload") == "dpo" and r["system"] == "rewardalign"]
        if not (trl and ours):
            if any(r["model"] == model and r["kind"] == "train" for r in rows):
                out.append(f"- {model} dpo: rewardalign vs TRL: NOT MEASURED (a row failed or was not selected)")
            continue
        best = max(ours, key=lambda r: r["tok_s"])
        x = best["tok_s"] / trl["tok_s"]
        out.append(f"- {model} dpo: rewardalign ({best['layout']}, {best['attn']}) / TRL response tokens per second "
                   f"= {x:.2f} (target >= 2): {'PASS' if x >= 2 else 'FAIL'}")
        with_mem = [r for r in ours if r.get("peak_mib")]
        if with_mem and trl.get("peak_mib"):
            lean = min(with_mem, key=lambda r: r["peak_mib"])
            m = lean["peak_mib"] / trl["peak_mib"]
            out.append(f"- {model} dpo: rewardalign ({lean['layout']}, {lean['attn']}) / TRL peak memory = {m:.2f} "
                       f"(target <= 0.7): {'PASS' if m <= 0.7 else 'FAIL'}; above the weights and optimizer "
                       f"state: {lean['act_peak_mib'] / trl['act_peak_mib']:.2f}; the fastest layout's "
                       f"({best['layout']}, {best['attn']}): {best['peak_mib'] / trl['peak_mib']:.2f}")
        else:
            out.append(f"- {model} dpo: peak memory: NOT MEASURED (CUDA only)")
    mfu = [r for r in ok if r["model"] == "llama-3.2-1b" and r["system"] == "rewardalign" and "mfu" in r
           and r.get("workload") == "dpo"]
    if mfu:
        best = max(mfu, key=lambda r: r["mfu"])
        out.append(f"- llama-3.2-1b dpo (prompts and responses 256-512 tokens): best MFU {100 * best['mfu']:.1f}% "
                   f"({best['layout']}, {best['attn']}; {100 * best['mfu_exec']:.1f}% counting the tokens it runs) "
                   f"(target >= 40%): {'PASS' if best['mfu'] >= 0.4 else 'FAIL'}")
    else:
        out.append("- llama-3.2-1b MFU: NOT MEASURED (needs CUDA or --peak_tflops, and the llama dpo rows)")
    if dry:
        out = [line + " [dry run: toy sizes, not meaningful]" for line in out]
    return out


def fmt(value, spec: str = ".0f", missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def markdown(meta: dict, rows: list[dict], target_lines: list[str] | None) -> str:
    lines = [f"# rewardalign GPU benchmark: {meta['device_name']}", "",
             f"`{meta['command']}`", "",
             f"{meta['date']}; device {meta['device']} ({meta['device_name']}); torch {meta['torch']}, "
             f"transformers {meta['transformers']}, trl {meta['trl']}, python {meta['python']}; precision "
             f"{meta['precision']}; {meta['warmup']} warmup + {meta['steps']} timed steps per configuration; "
             f"peak {fmt(meta['peak_tflops'], '.0f')} TFLOP/s ({meta['peak_tflops_source']}); "
             f"{meta['wall_s']:.0f} s in all." + (" DRY RUN: toy sizes." if meta["dry_run"] else ""), ""]
    for name, m in meta["models"].items():
        lines.append(f"- **{name}**: {m['config']}; {m['params'].get('total', 0) / 1e6:.1f}M parameters, "
                     f"{m['params'].get('non_embedding', 0) / 1e6:.1f}M non-embedding")
    for name, w in meta["workloads"].items():
        lines.append(f"- workload **{name}**: {w}")
    train = [r for r in rows if r["kind"] == "train"]
    if train:
        lines += ["", "## Training steps", "",
                  "| model | workload | system | layout | attention | response tok/s | x TRL | step ms | peak MiB "
                  "| x TRL | act. MiB | x TRL | MFU | MFU exec. | pad | ref s | status |",
                  "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in train:
            status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('reason', '')}"
            if r.get("note"):
                status += f" ({r['note']})"
            lines.append(
                f"| {r['model']} | {r['workload']} | {r['system']} | {r['layout']} | {r['attn']} | "
                f"{fmt(r.get('tok_s'))} | {fmt(r.get('speed_x'), '.2f')} | {fmt(r.get('step_ms'))} | "
                f"{fmt(r.get('peak_mib'))} | {fmt(r.get('memory_x'), '.2f')} | {fmt(r.get('act_peak_mib'))} | "
                f"{fmt(r.get('act_memory_x'), '.2f')} | "
                f"{fmt(100 * r['mfu'] if 'mfu' in r else None, '.1f')}{'%' if 'mfu' in r else ''} | "
                f"{fmt(100 * r['mfu_exec'] if 'mfu_exec' in r else None, '.1f')}{'%' if 'mfu_exec' in r else ''} | "
                f"{fmt(100 * r['pad_frac'] if 'pad_frac' in r else None, '.0f')}{'%' if 'pad_frac' in r else ''} | "
                f"{fmt(r.get('ref_s'), '.1f')} | {status} |")
    gen = [r for r in rows if r["kind"] == "generate"]
    if gen:
        lines += ["", "## Online sampling (the package's sampler, batched model.generate)", "",
                  "| model | prompts x K | max new tokens | samples/s | generated tok/s | mean new tokens | "
                  "peak MiB | status |", "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in gen:
            status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('reason', '')}"
            lines.append(f"| {r['model']} | {r.get('prompts', '-')} x {r.get('k', '-')} | "
                         f"{r.get('max_new_tokens', '-')} | {fmt(r.get('samples_s'), '.1f')} | "
                         f"{fmt(r.get('gen_tok_s'))} | {fmt(r.get('mean_new_tokens'), '.0f')} | "
                         f"{fmt(r.get('peak_mib'))} | {status} |")
    checks = [r for r in rows if r["kind"] == "check"]
    if checks:
        lines += ["", "## Correctness checks", "", "| check | result | detail |", "|---|---|---|"]
        for r in checks:
            if "max_err" in r:
                detail = (f"max error {r['max_err']:.2e} nats/token (tolerance {r['tol']:.0e}) over "
                          f"{r['sequences']} sequences")
            elif "loss" in r:
                detail = f"loss {r['loss']:.4f}, gradient norm {r['grad_norm']:.3g}, {r['precision']}"
            else:
                detail = r.get("reason", "")
            result = {"ok": "pass"}.get(r["status"], r["status"].upper())
            lines.append(f"| {r['name']} | {result} | {detail} |")
    if target_lines:
        lines += ["", "## Targets", ""] + target_lines
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- main


def progress(run: Run, label: str, r: dict) -> None:
    what = (f"{r['tok_s']:9.0f} response tok/s" if "tok_s" in r else
            f"{r['samples_s']:9.1f} samples/s" if "samples_s" in r else
            f"err {r['max_err']:.1e} <= {r['tol']:.0e}" if "max_err" in r else
            f"loss {r['loss']:.4f}" if "loss" in r else "")
    if r.get("peak_mib"):
        what += f" {r['peak_mib']:8.0f} MiB"
    if "mfu" in r:
        what += f" MFU {100 * r['mfu']:5.1f}%"
    tail = "" if r["status"] == "ok" else f" {r['status'].upper()}: {r.get('reason', '')}"
    print(f"[{label} {time.perf_counter() - run.started:6.0f}s] {r['name']:<58} {what}{tail}", file=sys.stderr,
          flush=True)


def run_in_process(run: Run, tasks: list[Task], on_start, on_row, on_done, first: int = 0, total: int = 0) -> None:
    check_models: dict = {}
    for i, task in enumerate(tasks):
        if task.kind != "check":
            check_models.clear()
        on_start(task)
        for row in execute(run, task, check_models):
            on_row(row)
            progress(run, f"{first + i + 1:>3}/{total or len(tasks)}", row)
        on_done(task)
    check_models.clear()


def child_command(run: Run, names_file: Path, out_file: Path, first: int, total: int) -> list[str]:
    a = run.args
    cmd = [sys.executable, str(Path(__file__).resolve()), "--device", a.device, "--models", *a.models,
           "--warmup", str(a.warmup), "--steps", str(a.steps), "--precision", a.precision, "--threads",
           str(a.threads), "--dry-vocab", str(a.dry_vocab), "--child-tasks", str(names_file), "--child-out",
           str(out_file), "--child-position", str(first), str(total)]
    if a.objectives:
        cmd += ["--objectives", *a.objectives]
    if a.budget:
        cmd += ["--time-budget", str(max(1.0, a.budget - (time.perf_counter() - run.started)))]
    else:
        cmd += ["--time-budget", "0"]
    if run.peak_tflops:
        cmd += ["--peak_tflops", str(run.peak_tflops)]
    for flag, on in (("--dry-run", a.dry_run), ("--cpu-flex", a.cpu_flex), ("--verbose", a.verbose),
                     ("--flex-block-pad", a.flex_block_pad)):
        if on:
            cmd.append(flag)
    return cmd


def run_isolated(run: Run, tasks: list[Task], on_row, first: int, total: int) -> None:
    """Run ``tasks`` in child processes (flex attention: compiled kernels can take the process down, e.g. torch
    2.13's CPU flex kernel with a dense score mask corrupts the heap): a task during which the child dies
    becomes a ``crashed`` row, and a new child takes the remaining tasks."""
    import signal
    import subprocess
    import threading
    from collections import deque

    remaining = list(tasks)
    with tempfile.TemporaryDirectory() as tmp:
        attempt = 0
        while remaining:
            elapsed = time.perf_counter() - run.started
            if run.args.budget and elapsed > run.args.budget:
                for t in remaining:
                    on_row({"name": t.name, "kind": t.kind, "model": t.model, **t.info, "status": "skipped",
                            "reason": f"time budget: {elapsed:.0f} s > --time-budget {run.args.budget:.0f}"})
                break
            attempt += 1
            names, out = Path(tmp) / f"tasks-{attempt}.json", Path(tmp) / f"rows-{attempt}.jsonl"
            names.write_text(json.dumps([t.name for t in remaining]))
            out.touch()
            position = first + len(tasks) - len(remaining)
            proc = subprocess.Popen(child_command(run, names, out, position, total), stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
            killed = []
            timer = None
            if run.args.budget:
                left = run.args.budget - (time.perf_counter() - run.started) + 60

                def kill(proc=proc, killed=killed):
                    killed.append(True)
                    os.killpg(proc.pid, signal.SIGKILL)

                timer = threading.Timer(max(left, 30), kill)
                timer.start()
            tail: deque[str] = deque(maxlen=8)
            for line in proc.stderr:
                sys.stderr.write(line)
                sys.stderr.flush()
                if line.strip():
                    tail.append(line.strip())
            code = proc.wait()
            if timer:
                timer.cancel()
            started = done = None
            finished: set[str] = set()
            for line in out.read_text().splitlines():
                record = json.loads(line)
                if "start" in record:
                    started = record["start"]
                elif "done" in record:
                    finished.add(record["done"])
                    done = record["done"]
                elif "params" in record:
                    run.params.update(record["params"])
                else:
                    on_row(record)
            by_name = {t.name: t for t in remaining}
            crashed = started if started and started != done and started not in finished else None
            if crashed:
                task = by_name[crashed]
                how = ("killed: past the time budget" if killed else
                       f"the process died (exit {code}{', ' + signal.Signals(-code).name if code < 0 else ''})")
                reason = f"{how}; last output: {' | '.join(list(tail)[-3:])}"[:500]
                row = {"name": task.name, "kind": task.kind, "model": task.model, **task.info,
                       "status": "crashed", "reason": reason}
                on_row(row)
                progress(run, "  crash", row)
                finished.add(crashed)
            left_over = [t for t in remaining if t.name not in finished]
            if left_over and (killed or not crashed):  # the child ended before these: give up on them
                status, reason = (("killed", "not run: the child process was killed past the time budget") if killed
                                  else ("error", f"not run: the child process exited ({code}) before it"))
                for t in left_over:
                    on_row({"name": t.name, "kind": t.kind, "model": t.model, **t.info, "status": status,
                            "reason": reason})
                left_over = []
            remaining = left_over


def child_main(run: Run, names_file: str, out_file: str, position: list[int]) -> int:
    wanted = json.loads(Path(names_file).read_text())
    tasks = [t for t in plan(run, select=False) if t.name in wanted]
    with open(out_file, "a") as out:
        def write(record):
            out.write(json.dumps(record, default=str) + "\n")
            out.flush()

        run_in_process(run, tasks, lambda t: write({"start": t.name}), write,
                       lambda t: (write({"params": run.params}), write({"done": t.name})), *position)
    return 0


def write_results(run: Run, rows: list[dict], stem: str, partial: bool) -> str:
    import torch
    import transformers

    args = run.args
    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = "not installed"
    meta = {
        "command": run.command, "date": run.date, "device": args.device, "device_name": device_name(args.device),
        "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl_version,
        "python": platform.python_version(), "dry_run": args.dry_run, "partial": partial,
        "precision": ("float32 weights, bf16 autocast" if args.precision == "autocast" else "bf16 weights")
        if args.device == "cuda" else "float32",
        "warmup": args.warmup, "steps": args.steps, "peak_tflops": run.peak_tflops,
        "peak_tflops_source": run.peak_source,
        "models": {m: {"config": dict(MODELS[m]) | (DRY_SHAPES[m] if args.dry_run else {})
                       | ({"vocab": args.dry_vocab} if args.dry_run and args.dry_vocab else {}),
                       "params": run.params.get(m, {})} for m in args.models},
        "workloads": {k: {kk: vv for kk, vv in w.__dict__.items() if vv} for k, w in run.loads.items()},
        "wall_s": time.perf_counter() - run.started,
    }
    rows = [dict(r) for r in rows]
    add_ratios(rows)
    target_lines = targets(rows, args.dry_run) if args.check_targets and not partial else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({**meta, "rows": rows, "targets": target_lines}, indent=1,
                                                 default=str))
    text = markdown(meta, rows, target_lines)
    if partial:
        text = "**PARTIAL: the run has not finished (or died); rows so far.**\n\n" + text
    (out / f"{stem}.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="toy models and lengths (for CPU)")
    parser.add_argument("--dry-vocab", type=int, default=8192,
                        help="vocabulary of the dry run's models (default 8192; 0: the real ones)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--only", nargs="*", help="run configurations whose name contains or matches (fnmatch) one")
    parser.add_argument("--skip", nargs="*", help="skip configurations whose name contains or matches one")
    parser.add_argument("--list", action="store_true", help="print the configuration names and exit")
    parser.add_argument("--warmup", type=int, help="untimed steps per configuration (default 2; dry run 1)")
    parser.add_argument("--steps", type=int, help="timed steps per configuration (default 6; dry run 2)")
    parser.add_argument("--precision", choices=["autocast", "bf16"], default="autocast",
                        help="CUDA: float32 weights under bf16 autocast, or bf16 weights")
    parser.add_argument("--peak_tflops", "--peak-tflops", type=float, dest="peak_tflops",
                        help="peak dense bf16 TFLOP/s of the device (default: looked up from its name)")
    parser.add_argument("--time-budget", type=float, dest="budget",
                        help="seconds: configurations that would start later are skipped, and a child process still "
                             "running a minute past it is killed (default 330 on CUDA, 0 = none)")
    parser.add_argument("--objectives", nargs="+", help="objectives of the finite-step check (default: all)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")),
                        help="torch threads on CPU (default: OMP_NUM_THREADS, else 2)")
    parser.add_argument("--check-targets", action="store_true", help="print the issue's targets as pass / fail")
    parser.add_argument("--flex-block-pad", action="store_true",
                        help="flex attention: pad segment rows to whole 128-token blocks (always in the CPU checks)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the flex-attention configurations in this process too (default: a child process)")
    parser.add_argument("--cpu-flex", action="store_true",
                        help="CPU: also run the flex-attention layout checks (forward only; ~30 s of compilation each)")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder of the .md and .json")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failing configurations")
    parser.add_argument("--child-tasks", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--child-position", nargs=2, type=int, default=[0, 0], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.dry_run else 2)
    args.steps = args.steps if args.steps is not None else (2 if args.dry_run else 6)
    if args.budget is None:
        args.budget = 330.0 if args.device == "cuda" and not args.dry_run else 0.0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Idle OpenMP threads sleep instead of spinning (a spinning run on a shared machine is many times slower).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device (use --device cpu --dry-run on CPU)")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    for name in ("recompile_limit", "cache_size_limit"):  # flex: shapes and models change between configurations
        with contextlib.suppress(AttributeError, ImportError):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 64))
    peak, peak_source = peak_tflops(args, args.device)
    run = Run(args=args, device=args.device, dry=args.dry_run, ra=package(), loads=workloads(args.dry_run),
              peak_tflops=peak)
    run.peak_source = peak_source
    if args.child_tasks:
        return child_main(run, args.child_tasks, args.child_out, args.child_position)
    run.command = "python benchmarks/gpu.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    now = datetime.datetime.now(datetime.timezone.utc)
    run.date = now.strftime("%Y-%m-%d %H:%M UTC")
    tasks = plan(run)
    if args.list:
        print("\n".join(t.name for t in tasks))
        return 0
    stem = (f"{'dryrun' if args.dry_run else 'gpu'}-{args.device}-{slug(device_name(args.device))}-"
            f"{now.strftime('%Y%m%d-%H%M%S')}")
    print(f"{len(tasks)} configurations on {device_name(args.device)}; results: {Path(args.out) / stem}.md/.json",
          file=sys.stderr, flush=True)
    rows: list[dict] = []

    def on_row(row: dict) -> None:
        rows.append(row)
        write_results(run, rows, stem, partial=True)

    fast = [t for t in tasks if not t.slow or cannot_run(run, t)]  # a skip is immediate
    slow = [t for t in tasks if t.slow and not cannot_run(run, t)]
    run_in_process(run, fast, lambda t: None, on_row, lambda t: None, 0, len(tasks))
    if slow and not args.in_process:
        run_isolated(run, slow, on_row, len(fast), len(tasks))
    elif slow:
        run_in_process(run, slow, lambda t: None, on_row, lambda t: None, len(fast), len(tasks))
    text = write_results(run, rows, stem, partial=False)
    print(text)
    print(f"wrote {Path(args.out) / stem}.md and .json", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
