import pytest
import torch

from rewardalign.data.collate import collate_groups
from rewardalign.data.schema import Group
from rewardalign.data.tokenize import TokenizeConfig, tokenize_groups
from rewardalign.modeling.logprobs import batch_logps, plain_batch_logps


def padded_batch(tokenizer):
    """Groups of different K and lengths, so the batch has padded sequences and padded [B, K] slots."""
    groups = [
        Group("hello world", [" the answer is yes", " no", " what is the answer?"]),
        Group("add 3 and 4 =", [" 7", " the quick brown fox jumps over the lazy dog"]),
        Group("sort: d a c b ->", [" a b c d"]),
    ]
    tokenized, _ = tokenize_groups(groups, tokenizer, TokenizeConfig(max_length=64))
    return collate_groups(tokenized, tokenizer.pad_token_id)


@pytest.mark.parametrize("chunk_size", [0, 1, 3, 1024])
def test_chunked_logps_equal_plain_computation(tokenizer, model, chunk_size):
    batch = padded_batch(tokenizer)
    lean = batch_logps(model, batch, chunk_size=chunk_size, with_prompt=True)
    plain = plain_batch_logps(model, batch, with_prompt=True)
    assert torch.allclose(lean.logps, plain.logps, atol=1e-5, rtol=1e-5)
    assert torch.allclose(lean.prompt_logps, plain.prompt_logps, atol=1e-5, rtol=1e-5)
    assert torch.equal(lean.n_tokens, plain.n_tokens)
    assert lean.logps[0, 2] != 0 and lean.logps[2, 1] == 0 and lean.n_tokens[2, 1] == 0


def test_logps_match_a_per_sequence_loop(tokenizer, model):
    """Each group's sequence scored alone, unpadded, gives the same sums as the batch."""
    batch = padded_batch(tokenizer)
    lean = batch_logps(model, batch, chunk_size=2)
    for i in range(batch["input_ids"].shape[0]):
        length = int(batch["attention_mask"][i].sum())
        ids = batch["input_ids"][i, :length]
        p = int(batch["prompt_lengths"][i])
        with torch.no_grad():
            logp = model(input_ids=ids[None]).logits[0].log_softmax(-1)
        expected = sum(float(logp[t - 1, ids[t]]) for t in range(p, length))
        b, k = int(batch["seq_group"][i]), int(batch["seq_slot"][i])
        assert abs(float(lean.logps[b, k].detach()) - expected) < 1e-4
        assert lean.n_tokens[b, k] == length - p


def test_chunked_gradients_equal_plain_gradients(tokenizer, model):
    batch = padded_batch(tokenizer)
    weights = torch.randn(batch["mask"].shape) * batch["mask"]
    (batch_logps(model, batch, chunk_size=2, with_prompt=True).logps * weights).sum().backward()
    lean = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    (plain_batch_logps(model, batch).logps * weights).sum().backward()
    for name, p in model.named_parameters():
        assert torch.allclose(lean[name], p.grad, atol=1e-5), name
