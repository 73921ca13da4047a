"""Sequence log-probs of a batch of groups, without full-vocabulary float32 logits for the whole batch.

The model runs once over the batch with ``logits_to_keep=1`` (so it builds logits for one position only) and
returns its final hidden states. Only the positions that predict a target token (response tokens, and for DRO
the prompt's tokens after the first) are gathered, and the output projection, log-softmax and gather run on
``chunk_size`` of them at a time, as one autograd node (:class:`_LinearLogProbs`) that keeps only each
row's log-normaliser and recomputes a chunk's [chunk, V] logits in the backward pass, turning them in place
into the logits' gradient; so peak memory holds one chunk's logits, not the batch's, and the backward makes
no autograd copies of them. (A head that is not a plain ``nn.Linear``, e.g. with an adapter, or soft-capped
logits, takes the generic path: each chunk checkpointed under autograd.) The forward goes through the
model's own ``forward`` so DDP / FSDP / PEFT wrappers see it; the head's weight is read after it, which under
FSDP2 as accelerate shards a model (the LM head in a unit kept unsharded from the forward to the backward)
is the full weight (tests/test_fsdp.py).

A chunk holds at most ``chunk_size`` rows and at most :data:`LOGITS_CHUNK_BYTES` of float32 logits (64 MiB on
CPU), so a large vocabulary (150k) gets proportionally fewer rows per chunk and the peak stays bounded.

Batches of every layout of :mod:`rewardalign.data.collate` are accepted: ``plain`` (one padded row per
sequence), and the segment layouts (``shared_prompt``, ``packed``, ``packed_shared_prompt``), whose 4D block
mask is built here from ``segment_ids`` / ``branch_ids`` in the form the model's attention implementation
takes (boolean for sdpa, additive for eager, none for flash-attention, which reads ``position_ids``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..data.collate import FLASH_ATTENTION, block_attention_mask

try:
    from torch.distributed.fsdp import FSDPModule as _FSDPModule
except ImportError:  # a torch built without distributed support
    _FSDPModule = None

LOGITS_CHUNK_BYTES = {"cpu": 64 * 2**20, "default": 1024 * 2**20}
"""Upper bound on one chunk's float32 logits (rows x vocabulary x 4 bytes) by device type; ``chunk_size`` bounds
the rows. Small on CPU, where memory is what runs out; large on accelerators, where each chunk re-reads the
output projection's weights and too small a chunk is bound by memory bandwidth."""


@dataclass
class GroupLogps:
    """Log-probs laid out for the objectives: [B, K] responses, [B] prompts (None unless asked for)."""

    logps: torch.Tensor
    n_tokens: torch.Tensor
    prompt_logps: torch.Tensor | None = None


def _unwrap(model: nn.Module) -> nn.Module:
    """The module that owns ``get_output_embeddings`` and ``config`` (through DDP / PEFT wrappers)."""
    while not hasattr(model, "get_output_embeddings") and hasattr(model, "module"):
        model = model.module
    return model


def _token_logps(hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module, config) -> torch.Tensor:
    """log p(target) for rows of ``hidden`` [M, H]: head, optional logit scale / soft-cap, log-softmax, gather."""
    if _plain_linear(head):
        logits = nn.functional.linear(hidden, head.weight, head.bias).float()
    else:
        logits = head(hidden).float()
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, (int, float)):
        logits = logits * scale
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def _chunk_rows(hidden: torch.Tensor, head: nn.Module, chunk_size: int) -> int:
    """Rows per chunk: ``chunk_size`` (all rows when <= 0), capped by :data:`LOGITS_CHUNK_BYTES`."""
    if chunk_size <= 0:
        return max(1, hidden.shape[0])
    vocab = getattr(head, "out_features", None) or head.weight.shape[0]
    budget = LOGITS_CHUNK_BYTES.get(hidden.device.type, LOGITS_CHUNK_BYTES["default"])
    return max(1, min(chunk_size, budget // (4 * vocab)))


class _LinearLogProbs(torch.autograd.Function):
    """log softmax(scale * (hidden @ W^T + b))[target] per row, ``rows`` rows at a time, in one autograd node.

    The forward keeps only each row's log-normaliser; the backward recomputes a chunk's logits, turns them in
    place into ``grad * (onehot(target) - softmax)`` and multiplies out the gradients of the hidden states, the
    weight and the bias, so at most one [rows, V] float32 buffer is alive at any time, in either pass.
    Under autocast the projections run in the autocast dtype, the softmax in float32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, scale, rows):
        dtype = _autocast_dtype(hidden.device.type) or hidden.dtype
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
            lse = torch.empty_like(out)
            for start in range(0, hidden.shape[0], rows):
                end = min(start + rows, hidden.shape[0])
                logits = nn.functional.linear(hidden[start:end].to(dtype), w, b).float()
                if scale != 1.0:
                    logits.mul_(scale)
                picked = logits.gather(-1, targets[start:end, None]).squeeze(-1)
                # log-sum-exp in place: no second [rows, V] buffer
                top = logits.amax(-1, keepdim=True)
                lse[start:end] = logits.sub_(top).exp_().sum(-1).log_().add_(top.squeeze(-1))
                out[start:end] = picked - lse[start:end]
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.scale, ctx.rows, ctx.dtype = scale, rows, dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        scale, rows, dtype = ctx.scale, ctx.rows, ctx.dtype
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            grad_h = torch.empty_like(hidden) if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
            grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
            for start in range(0, hidden.shape[0], rows):
                end = min(start + rows, hidden.shape[0])
                h = hidden[start:end].to(dtype)
                g = grad[start:end].float()
                logits = nn.functional.linear(h, w, b).float()
                if scale != 1.0:
                    logits.mul_(scale)
                # d(logit_t - lse)/dlogits = onehot(t) - softmax; times the incoming gradient (and the scale).
                dlogits = logits.sub_(lse[start:end, None]).exp_().mul_(-g[:, None])
                dlogits.scatter_add_(-1, targets[start:end, None], g[:, None])
                if scale != 1.0:
                    dlogits.mul_(scale)
                d = dlogits.to(dtype)
                if need_h:
                    grad_h[start:end] = (d @ w).to(hidden.dtype)
                if need_w:
                    _addmm_float32(grad_w, d.t(), h)
                if need_b:
                    grad_b.add_(dlogits.sum(0))
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype in force for ``device_type``, None outside autocast."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
        return None
    except (TypeError, AttributeError):  # torch < 2.4: per-device functions
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        return None


def _addmm_float32(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``acc += a @ b`` into a float32 ``acc``; a half-precision product is accumulated in float32 without
    being rounded first where torch can (``out_dtype``), else rounded once per chunk."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
        return
    if acc.is_cuda:
        with contextlib.suppress(TypeError, RuntimeError):  # torch without addmm(out_dtype=) for these dtypes
            torch.addmm(acc, a, b, out_dtype=torch.float32, out=acc)
            return
    acc.add_(a @ b)


def _plain_linear(head: nn.Module) -> bool:
    """``head`` is an ``nn.Linear`` and nothing more, so its weight and bias can be applied here. FSDP2's
    ``fully_shard`` turns it into ``FSDPLinear(FSDPModule, nn.Linear)``: still plain, and its module must not be
    called a second time after the model's forward (accelerate makes the LM head a unit of its own, kept
    unsharded from the forward to the backward; a second call crashes the backward)."""
    cls = type(head)
    if _FSDPModule is not None and isinstance(head, _FSDPModule):
        cls = next(base for base in cls.__bases__ if base is not _FSDPModule)
    return cls is nn.Linear


def _fusable(head: nn.Module, config) -> bool:
    """A plain linear head without logit soft-capping (the fused path); anything else takes the generic one."""
    return _plain_linear(head) and not getattr(config, "final_logit_softcapping", None)


def chunked_token_logps(
    hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module, config, chunk_size: int
) -> torch.Tensor:
    """Per-token log-probs [M], ``chunk_size`` rows at a time (<= 0: one chunk), rows further capped so one
    chunk's logits stay within :data:`LOGITS_CHUNK_BYTES`. A plain linear head takes the fused path
    (:class:`_LinearLogProbs`); other heads (adapters on the head, soft-capped logits) are checkpointed per
    chunk under autograd."""
    rows = _chunk_rows(hidden, head, chunk_size)
    if _fusable(head, config):
        scale = getattr(config, "logit_scale", None)
        scale = float(scale) if isinstance(scale, (int, float)) else 1.0
        return _LinearLogProbs.apply(hidden, head.weight, head.bias, targets, scale, rows)
    chunks = list(zip(hidden.split(rows), targets.split(rows)))
    out = []
    for h, t in chunks:
        if torch.is_grad_enabled() and h.requires_grad and len(chunks) > 1:
            out.append(checkpoint(_token_logps, h, t, head, config, use_reentrant=False))
        else:
            out.append(_token_logps(h, t, head, config))
    return torch.cat(out)


def batch_logps(
    model: nn.Module, batch: dict[str, torch.Tensor], chunk_size: int = 1024, with_prompt: bool = False
) -> GroupLogps:
    """Summed response log-probs [B, K] and token counts [B, K] for a collated batch of groups.

    With ``with_prompt``, also the log-prob [B] of each group's prompt tokens after the first (DRO's prompt
    term), read off the group's first sequence. Padded slots of the [B, K] layout hold 0. ``batch`` is in any
    layout of :func:`rewardalign.data.collate.collate_groups`.
    """
    if "segment_ids" in batch:
        return _segment_batch_logps(model, batch, chunk_size, with_prompt)
    input_ids, response_mask = batch["input_ids"], batch["response_mask"]
    target_mask = response_mask.clone()
    if with_prompt:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        first = batch["first_seq"]
        prompt_mask = (positions[None, :] >= 1) & (positions[None, :] < batch["prompt_lengths"][first, None])
        target_mask[first] |= prompt_mask
    out = model(
        input_ids=input_ids,
        attention_mask=batch["attention_mask"],
        output_hidden_states=True,
        logits_to_keep=1,
        use_cache=False,
    )
    hidden = out.hidden_states[-1]
    # Position t-1 predicts token t.
    select = target_mask[:, 1:]
    inner = _unwrap(model)
    token_logps = chunked_token_logps(
        hidden[:, :-1][select], input_ids[:, 1:][select], inner.get_output_embeddings(), inner.config, chunk_size
    )
    per_position = torch.zeros(select.shape, dtype=token_logps.dtype, device=token_logps.device)
    per_position = per_position.masked_scatter(select, token_logps)
    is_response = response_mask[:, 1:]
    seq_logps = (per_position * is_response).sum(-1)
    seq_tokens = is_response.sum(-1)

    b, k = batch["mask"].shape
    logps = torch.zeros(b, k, dtype=seq_logps.dtype, device=seq_logps.device)
    logps = logps.index_put((batch["seq_group"], batch["seq_slot"]), seq_logps)
    n_tokens = torch.zeros(b, k, dtype=seq_logps.dtype, device=seq_logps.device)
    n_tokens = n_tokens.index_put((batch["seq_group"], batch["seq_slot"]), seq_tokens.to(seq_logps.dtype))
    prompt_logps = None
    if with_prompt:
        first = batch["first_seq"]
        prompt_logps = (per_position[first] * ~is_response[first]).sum(-1)
    return GroupLogps(logps=logps, n_tokens=n_tokens, prompt_logps=prompt_logps)


def segment_attention_mask(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The 4D attention mask of a segment-layout batch in the form ``model``'s attention implementation takes:
    boolean (sdpa), additive float (eager and others that add the mask to the scores), or None for
    flash-attention, whose varlen kernel finds the packed sequences from ``position_ids`` (one row, no
    shared-prompt branches)."""
    inner = _unwrap(model)
    impl = getattr(inner.config, "_attn_implementation", None) or "sdpa"
    if impl in FLASH_ATTENTION:
        if batch["input_ids"].shape[0] != 1 or bool((batch["branch_ids"] != 0).any()):
            raise ValueError(f"{impl} takes the packed layout in one row only (GroupCollator with "
                             f"attn_implementation={impl!r}); shared-prompt layouts need sdpa or eager")
        return None
    allowed = block_attention_mask(batch["segment_ids"], batch["branch_ids"])
    if impl == "sdpa":
        return allowed
    dtype = next(inner.parameters()).dtype
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)


def _segment_batch_logps(
    model: nn.Module, batch: dict[str, torch.Tensor], chunk_size: int, with_prompt: bool
) -> GroupLogps:
    """:func:`batch_logps` for the segment layouts: targets are listed by (row, predicting position, id)."""
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=segment_attention_mask(model, batch),
        position_ids=batch["position_ids"],
        output_hidden_states=True,
        logits_to_keep=1,
        use_cache=False,
    )
    hidden = out.hidden_states[-1]
    rows, src, ids = batch["target_row"], batch["target_src"], batch["target_ids"]
    n_resp = rows.shape[0]
    if with_prompt:
        rows = torch.cat([rows, batch["prompt_target_row"]])
        src = torch.cat([src, batch["prompt_target_src"]])
        ids = torch.cat([ids, batch["prompt_target_ids"]])
    inner = _unwrap(model)
    token_logps = chunked_token_logps(hidden[rows, src], ids, inner.get_output_embeddings(), inner.config,
                                      chunk_size)
    n_seq = batch["seq_group"].shape[0]
    seq = batch["target_seq"]
    seq_logps = token_logps.new_zeros(n_seq).index_add(0, seq, token_logps[:n_resp])
    seq_tokens = torch.zeros(n_seq, dtype=token_logps.dtype, device=seq.device).index_add(
        0, seq, torch.ones_like(seq, dtype=token_logps.dtype))

    b, k = batch["mask"].shape
    where = (batch["seq_group"], batch["seq_slot"])
    logps = token_logps.new_zeros(b, k).index_put(where, seq_logps)
    n_tokens = token_logps.new_zeros(b, k).index_put(where, seq_tokens)
    prompt_logps = None
    if with_prompt:
        prompt_logps = token_logps.new_zeros(b).index_add(0, batch["prompt_target_group"], token_logps[n_resp:])
    return GroupLogps(logps=logps, n_tokens=n_tokens, prompt_logps=prompt_logps)


def plain_batch_logps(model: nn.Module, batch: dict[str, torch.Tensor], with_prompt: bool = False) -> GroupLogps:
    """The straightforward computation (full logits, log-softmax over the whole batch) on a ``plain`` batch: the
    reference that :func:`batch_logps` is tested against in every layout."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    logp = logits[:, :-1].log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    is_response = batch["response_mask"][:, 1:]
    seq = (logp * is_response).sum(-1)
    b, k = batch["mask"].shape
    logps = torch.zeros(b, k).index_put((batch["seq_group"], batch["seq_slot"]), seq)
    n_tokens = torch.zeros(b, k).index_put((batch["seq_group"], batch["seq_slot"]), is_response.sum(-1).float())
    prompt_logps = None
    if with_prompt:
        first = batch["first_seq"]
        positions = torch.arange(1, batch["input_ids"].shape[1])
        in_prompt = positions[None, :] < batch["prompt_lengths"][first, None]
        prompt_logps = (logp[first] * in_prompt).sum(-1)
    return GroupLogps(logps=logps, n_tokens=n_tokens, prompt_logps=prompt_logps)
