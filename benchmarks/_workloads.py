"""Workloads of the throughput benchmark: a causal LM built from a config and synthetic groups, written once
to disk so every system and every repeat loads the very same weights and data.

The tokenizer is word-level (token ``w{i}`` is word ``w{i}``): a prompt of P words is exactly P tokens and a
response of R words exactly R tokens (plus EOS) whoever tokenises it, so TRL and rewardalign train on identical
token ids and the vocabulary size is whatever the workload asks for (4k for speed, 150k for memory).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Workload:
    name: str
    what: str
    objective: str = "dpo"
    k: int = 2
    vocab: int = 4096
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int | None = None
    intermediate: int | None = None
    batch_size: int = 8
    steps: int = 8
    prompt_words: tuple[int, int] = (16, 192)
    response_words: tuple[int, int] = (8, 64)
    prompt_times_response: float | None = None  # prompt length = this x the group's mean response length
    systems: list[str] = field(default_factory=list)
    baseline: str = "trl"
    attention_bias: bool = False  # biases on the attention projections (Qwen2 has them on q, k, v)
    optional: bool = False  # run only when named in --only

    @property
    def n_groups(self) -> int:
        # Exactly one epoch: every system trains on every group once, so the token totals are identical.
        return self.batch_size * self.steps


def cpu_workloads(quick: bool) -> list[Workload]:
    steps = 3 if quick else 6
    layouts = ["plain", "packed", "packed_shared_prompt"]
    return [
        Workload("dpo", "pairs (K = 2), tiny Llama (2 layers, hidden 128), 4k vocabulary, prompts 16-192 / "
                 "responses 8-64 tokens", steps=steps,
                 systems=["trl", "trl:gpu-path"] + [f"rewardalign:{x}" for x in layouts]),
        Workload("dpo-150k", "pairs (K = 2), tiny Llama (2 layers, hidden 64), 150k vocabulary, prompts 16-96 / "
                 "responses 8-48 tokens", vocab=150_000, hidden=64, batch_size=4, steps=max(2, steps // 2),
                 prompt_words=(16, 96), response_words=(8, 48),
                 systems=["trl", "rewardalign:plain", "rewardalign:packed_shared_prompt"]),
        Workload("logprobs-150k", "the log-prob computation alone (forward + backward, plain layout, no optimizer) "
                 "of the dpo-150k batches: full-vocabulary logits then log-softmax, against the lean chunked path",
                 vocab=150_000, hidden=64, batch_size=4, steps=max(2, steps // 2), prompt_words=(16, 96),
                 response_words=(8, 48), systems=["logprobs:full_logits", "logprobs:lean"],
                 baseline="logprobs:full_logits"),
        Workload("listwise-k4", "K = 4 groups (spo), responses 16-48 tokens, prompt 4x their mean length, tiny "
                 "Llama (2 layers, hidden 128), 4k vocabulary", objective="spo", k=4, steps=steps,
                 response_words=(16, 48), prompt_times_response=4.0,
                 systems=[f"rewardalign:{x}" for x in ("plain", "shared_prompt", "packed_shared_prompt")],
                 baseline="rewardalign:plain"),
        Workload("dpo-real-shape", "pairs (K = 2) at a real model's proportions: Qwen2-style (a Llama with "
                 "attention biases, 4 layers, hidden 512, GQA 8/2 heads, intermediate 2816, the 151936 vocabulary of "
                 "Qwen2.5, tied embeddings), prompts 150-250 / responses 150-250 tokens; TRL as it runs on CPU and, "
                 "as a PROXY of its GPU run, with its fused head forced onto its GPU path (completion positions "
                 "only)", attention_bias=True,
                 vocab=151_936, hidden=512, layers=4, heads=8, kv_heads=2, intermediate=2816, batch_size=4,
                 steps=max(2, steps // 2), prompt_words=(150, 250), response_words=(150, 250), optional=True,
                 systems=["trl", "trl:gpu-path"] + [f"rewardalign:{x}" for x in
                                                    ("plain", "shared_prompt", "packed_shared_prompt")]),
    ]


def cuda_workloads(quick: bool) -> list[Workload]:
    """A ~0.5B-parameter Llama (the shape of Qwen2.5-0.5B: 24 layers, hidden 896, GQA 14/2, vocab 151936)."""
    steps = 6 if quick else 20
    shape = dict(vocab=151_936, hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864)
    return [
        Workload("dpo-0.5b", "pairs (K = 2), 0.5B Llama, prompts 128-1024 / responses 64-512 tokens",
                 steps=steps, batch_size=8, prompt_words=(128, 1024), response_words=(64, 512), **shape,
                 systems=["trl", "rewardalign:plain", "rewardalign:packed_shared_prompt"]),
        Workload("listwise-k4-0.5b", "K = 4 groups (spo), prompt 4x the response length, 0.5B Llama",
                 objective="spo", k=4, steps=steps, batch_size=4, response_words=(64, 256),
                 prompt_times_response=4.0, **shape, baseline="rewardalign:plain",
                 systems=["rewardalign:plain", "rewardalign:shared_prompt", "rewardalign:packed_shared_prompt"]),
    ]


SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]


def build_tokenizer(vocab: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {token: i for i, token in enumerate(SPECIAL)}
    words.update({f"w{i}": i + len(SPECIAL) for i in range(vocab - len(SPECIAL))})
    tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", padding_side="right")


def build_model(w: Workload, tokenizer, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    # Always a Llama: transformers 5 pairs a saved ``qwen2`` model folder with Qwen2's own tokenizer class, which
    # cannot read this word-level tokenizer (it tokenises "w1 w2" to nothing), so Qwen2 shapes are Llamas with
    # attention biases.
    config = LlamaConfig(
        vocab_size=w.vocab, hidden_size=w.hidden, intermediate_size=w.intermediate or 4 * w.hidden,
        num_hidden_layers=w.layers, num_attention_heads=w.heads, num_key_value_heads=w.kv_heads or w.heads,
        max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True, attention_bias=w.attention_bias,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def make_groups(w: Workload, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    first = len(SPECIAL)

    def text(n: int) -> str:
        return " ".join(f"w{rng.randrange(w.vocab - first)}" for _ in range(n))

    rows = []
    for _ in range(w.n_groups):
        lengths = [rng.randint(*w.response_words) for _ in range(w.k)]
        if w.prompt_times_response:
            p = round(w.prompt_times_response * sum(lengths) / len(lengths))
        else:
            p = rng.randint(*w.prompt_words)
        rows.append({"prompt": text(p), "responses": [" " + text(n) for n in lengths],
                     "rewards": [round(rng.gauss(0, 1), 3) for _ in lengths]})
    return rows


def prepare(w: Workload, root: Path) -> dict:
    """Write the model, tokenizer and data of ``w`` under ``root``; returns their paths and token counts."""
    folder = root / w.name
    model_dir, data, info = folder / "model", folder / "groups.jsonl", folder / "info.json"
    if info.is_file():
        return json.loads(info.read_text())
    rows = make_groups(w)
    tokenizer = build_tokenizer(w.vocab)
    model = build_model(w, tokenizer)
    model_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(model_dir)
    model.save_pretrained(model_dir)
    with data.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    with (folder / "pairs.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps({"prompt": row["prompt"], "chosen": row["responses"][0],
                                "rejected": row["responses"][1]}) + "\n")
    words = lambda s: len(s.split())  # noqa: E731
    response_tokens = sum(words(r) + 1 for row in rows for r in row["responses"])  # + EOS
    prompt_tokens = [words(row["prompt"]) for row in rows]
    out = {
        "workload": asdict(w), "model": str(model_dir), "groups": str(data), "pairs": str(folder / "pairs.jsonl"),
        "response_tokens": response_tokens,
        # Tokens of the data with each prompt once (what the model must see at least), and with the prompt
        # repeated per response (the plain layout and TRL, before padding).
        "unique_tokens": response_tokens + sum(prompt_tokens),
        "plain_tokens": response_tokens + sum(p * len(row["responses"]) for p, row in zip(prompt_tokens, rows)),
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    info.write_text(json.dumps(out))
    return out
