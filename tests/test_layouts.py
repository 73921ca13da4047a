"""Batch layouts (plain, shared_prompt, packed, packed_shared_prompt) give the plain path's log-probs.

Every layout is checked against :func:`plain_batch_logps` on the plain batch (full logits, one padded row per
sequence) to 1e-5 in float32, on groups of different K and lengths (padded batches), with DRO's prompt
log-probs, through sdpa (boolean 4D mask) and eager (additive 4D mask) attention, and for gradients.
"""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from rewardalign.data.collate import (
    LAYOUTS,
    GroupCollator,
    block_attention_mask,
    collate_groups,
    row_length,
)
from rewardalign.data.schema import Group
from rewardalign.data.tokenize import TokenizeConfig, TokenizedGroup, tokenize_groups
from rewardalign.modeling import logprobs
from rewardalign.modeling.logprobs import (
    batch_logps,
    chunked_token_logps,
    plain_batch_logps,
    segment_attention_mask,
)

ATOL = 1e-5


def tokenized(tokenizer):
    """Groups of K = 3, 2, 1 and 4 with prompts and responses of different lengths."""
    groups = [
        Group("hello world", [" the answer is yes", " no", " what is the answer?"]),
        Group("add 3 and 4 =", [" 7", " the quick brown fox jumps over the lazy dog"]),
        Group("sort: d a c b ->", [" a b c d"]),
        Group("The quick brown fox jumps over the lazy dog. what is the answer?",
              [" yes", " no, it is not.", " 7", " hello"]),
    ]
    out, _ = tokenize_groups(groups, tokenizer, TokenizeConfig(max_length=64))
    return out


def assert_same(out, ref, with_prompt):
    assert torch.allclose(out.logps, ref.logps, atol=ATOL, rtol=ATOL), (out.logps - ref.logps).abs().max()
    assert torch.equal(out.n_tokens, ref.n_tokens)
    if with_prompt:
        assert torch.allclose(out.prompt_logps, ref.prompt_logps, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("with_prompt", [False, True])
def test_every_layout_gives_the_plain_log_probs(tokenizer, model, layout, attn, with_prompt):
    model.set_attn_implementation(attn)
    groups = tokenized(tokenizer)
    with torch.no_grad():
        ref = plain_batch_logps(model, collate_groups(groups, tokenizer.pad_token_id), with_prompt=with_prompt)
        for chunk_size in (0, 5):
            batch = collate_groups(groups, tokenizer.pad_token_id, layout)
            assert_same(batch_logps(model, batch, chunk_size, with_prompt), ref, with_prompt)
    assert ref.logps[2, 1:].eq(0).all() and ref.n_tokens[3].gt(0).all()  # padded slots, K up to 4


@pytest.mark.parametrize("layout", ["shared_prompt", "packed", "packed_shared_prompt"])
def test_layout_gradients_equal_plain_gradients(tokenizer, model, layout):
    groups = tokenized(tokenizer)
    plain = collate_groups(groups, tokenizer.pad_token_id)
    weights = torch.randn(plain["mask"].shape) * plain["mask"]
    out = plain_batch_logps(model, plain, with_prompt=True)
    ((out.logps * weights).sum() + out.prompt_logps.sum()).backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    out = batch_logps(model, collate_groups(groups, tokenizer.pad_token_id, layout), 4, with_prompt=True)
    ((out.logps * weights).sum() + out.prompt_logps.sum()).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(ref[name], p.grad, atol=ATOL), name


def test_empty_prompt_and_one_token_responses_match_plain(model):
    groups = [TokenizedGroup([], [[5, 6, 7], [8]], index=0), TokenizedGroup([9], [[10], [11, 12]], index=1)]
    with torch.no_grad():
        ref = plain_batch_logps(model, collate_groups(groups, 0), with_prompt=True)
        for layout in LAYOUTS:
            assert_same(batch_logps(model, collate_groups(groups, 0, layout), 2, True), ref, True)


def test_shared_prompt_row_positions_and_mask():
    """One row per group: [prompt, r1, r2]; positions restart after the prompt; r2 never sees r1."""
    batch = collate_groups([TokenizedGroup([1, 2, 3], [[4, 5], [6]], index=0)], pad_token_id=0,
                           layout="shared_prompt")
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 3]]
    assert batch["branch_ids"].tolist() == [[0, 0, 0, 1, 1, 2]]
    # Response 1 is predicted from positions 2 (last prompt token) and 3; response 2 from position 2.
    assert batch["target_src"].tolist() == [2, 3, 2] and batch["target_ids"].tolist() == [4, 5, 6]
    assert batch["target_seq"].tolist() == [0, 0, 1]
    assert batch["prompt_target_src"].tolist() == [0, 1] and batch["prompt_target_ids"].tolist() == [2, 3]
    mask = block_attention_mask(batch["segment_ids"], batch["branch_ids"])[0, 0].int().tolist()
    assert mask == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 0, 0, 1],
    ]


def test_packed_rows_hold_every_token_once_within_the_row_length():
    groups = [TokenizedGroup([1] * 6, [[2] * 4, [3]], index=0), TokenizedGroup([4] * 2, [[5] * 2], index=1),
              TokenizedGroup([6], [[7], [8] * 2, [9]], index=2)]
    plain = collate_groups(groups, 0)
    for layout in ("packed", "packed_shared_prompt"):
        batch = collate_groups(groups, 0, layout)
        real = int((batch["segment_ids"] >= 0).sum())
        expected = sum(row_length(g, layout) if layout.endswith("shared_prompt") else g.n_tokens for g in groups)
        assert real == expected
        longest = max(row_length(g, layout) for g in groups)
        assert batch["input_ids"].shape[1] == longest  # rows no longer than the longest segment
        assert batch["input_ids"].numel() < plain["input_ids"].numel()
    # A longer pack_length fills fewer, longer rows; pads see only pads, so no attention row is empty.
    wide = collate_groups(groups, 0, "packed", pack_length=100)
    assert wide["input_ids"].shape[0] == 1
    mask = block_attention_mask(wide["segment_ids"], wide["branch_ids"])
    assert mask.any(-1).all()


def test_flash_attention_packs_the_batch_in_one_row_and_refuses_shared_prompts(tokenizer, model):
    groups = tokenized(tokenizer)
    batch = GroupCollator(tokenizer.pad_token_id, "packed", attn_implementation="flash_attention_2")(groups)
    assert batch["input_ids"].shape[0] == 1 and batch["segment_ids"].min() >= 0  # one row, no padding
    model.config._attn_implementation = "flash_attention_2"
    assert segment_attention_mask(model, batch) is None  # position_ids carry the boundaries
    shared = collate_groups(groups, tokenizer.pad_token_id, "shared_prompt")
    with pytest.raises(ValueError, match="sdpa or eager"):
        segment_attention_mask(model, shared)
    with pytest.raises(ValueError, match="sdpa or eager"):
        GroupCollator(0, "shared_prompt", attn_implementation="flash_attention_2")
    with pytest.raises(ValueError, match="unknown layout"):
        GroupCollator(0, "zigzag")


def test_large_vocabulary_chunks_are_capped_in_bytes(monkeypatch):
    """Rows per chunk shrink with the vocabulary so one chunk's logits stay within the budget; same values."""
    torch.manual_seed(0)
    head = nn.Linear(8, 1000, bias=False)
    hidden, targets = torch.randn(50, 8), torch.randint(0, 1000, (50,))
    assert logprobs._chunk_rows(hidden, head, 1024) == 1024 and logprobs._chunk_rows(hidden, head, 0) == 50
    monkeypatch.setitem(logprobs.LOGITS_CHUNK_BYTES, "cpu", 7 * 1000 * 4)
    assert logprobs._chunk_rows(hidden, head, 1024) == 7 and logprobs._chunk_rows(hidden, head, 3) == 3
    full = chunked_token_logps(hidden, targets, head, None, chunk_size=0)
    assert torch.allclose(full, chunked_token_logps(hidden, targets, head, None, chunk_size=1024), atol=1e-6)


class Scaled:
    logit_scale = 0.7


@pytest.mark.parametrize("config", [None, Scaled()])
def test_fused_head_values_and_gradients_equal_autograd(config):
    """The fused log-prob node (recomputing each chunk's logits in its backward) against plain autograd."""
    torch.manual_seed(0)
    head = nn.Linear(16, 300, bias=True)
    hidden, targets = torch.randn(37, 16, requires_grad=True), torch.randint(0, 300, (37,))
    weights = torch.randn(37)
    ref = logprobs._token_logps(hidden, targets, head, config)
    (ref * weights).sum().backward()
    expected = [t.grad.clone() for t in (hidden, head.weight, head.bias)]
    hidden.grad = None
    head.zero_grad()
    out = chunked_token_logps(hidden, targets, head, config, chunk_size=5)
    (out * weights).sum().backward()
    assert torch.allclose(out, ref, atol=1e-6)
    for got, want in zip((hidden.grad, head.weight.grad, head.bias.grad), expected):
        assert torch.allclose(got, want, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from rewardalign.modeling.tiny import save_tiny

    groups = Path(__file__).resolve().parents[1] / "examples/tiny/data/groups.jsonl"
    texts = [json.loads(line)["prompt"] + " 12 34 5 6 7 8 9 0" for line in open(groups)]
    return str(save_tiny(texts, tmp_path_factory.mktemp("tiny") / "model", vocab_size=128, hidden_size=32,
                         num_layers=1, num_heads=2))


def test_align_first_step_is_the_same_in_every_layout(tiny_model_dir, tmp_path):
    from rewardalign.config import ConfigError
    from rewardalign.train.align import run_align

    data = Path(__file__).resolve().parents[1] / "examples/tiny/data/groups.jsonl"
    base = {"model": tiny_model_dir, "data": str(data), "format": "group", "objective": "dro", "max_length": 24,
            "cache_dir": str(tmp_path / "cache"), "max_steps": 1, "per_device_train_batch_size": 4,
            "learning_rate": 1e-3, "logging_steps": 1, "seed": 0, "disable_tqdm": True}
    firsts = {}
    for layout in ("plain", "shared_prompt", "packed_shared_prompt"):
        run_align(base | {"layout": layout, "output_dir": str(tmp_path / layout)})
        firsts[layout] = json.loads((tmp_path / layout / "metrics.jsonl").read_text().splitlines()[0])
    for layout, row in firsts.items():
        for key, value in firsts["plain"].items():
            if key.startswith(("loss", "rewards/", "logps/")):
                assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (layout, key)
    with pytest.raises(ConfigError, match="layout must be one of"):
        run_align(base | {"layout": "zigzag", "output_dir": str(tmp_path / "bad")})
