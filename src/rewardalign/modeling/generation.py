"""Batched, seeded sampling of n responses per prompt, with prompts rendered exactly as training renders them.

Prompt ids: a plain string prompt is tokenised with the tokenizer's default special tokens (BOS), a chat
message list is rendered by the chat template with the generation prompt and tokenised without adding any
(the template writes its own), which is what :func:`rewardalign.data.tokenize.tokenize_group` does, so the
policy sees at evaluation the prompt ids it was trained on. A prompt longer than ``max_prompt_length`` keeps
its end, like training's truncation.

Sampling. Each prompt is repeated ``n_samples`` times; the copies are cut into batches of ``batch_size``
sequences, left-padded (generation continues from the last column) and passed to ``model.generate``. The
torch generator is seeded with ``seed`` once, inside a forked RNG state (the caller's global RNG is left as
it was), so the samples are a deterministic function of (model, prompts, sampling settings, batch_size).
``temperature: 0`` is greedy decoding.

The samples come from the model's distribution pi itself (at the given temperature and top_p): the knobs of a
model's ``generation_config`` that would distort it are set to their neutral values (top_k 0 instead of
transformers' default 50, typical_p 1, repetition_penalty 1, no_repeat_ngram_size 0). This matters for the
KL estimate, which is only unbiased on samples of pi.

A response ends at its first stop token (the tokenizer's EOS, and any other EOS id of the model's
generation config); its token ids keep that stop token (pi's probability of stopping is part of
pi(y | x), as training's response ids end with EOS) and its text is decoded without special tokens. A
response that reaches ``max_new_tokens`` first is kept as it is and marked unfinished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import GenerationConfig

from ..data.schema import Text
from ..data.tokenize import render


@dataclass
class SamplingConfig:
    """How samples are drawn. ``batch_size`` counts sequences per ``generate`` call (prompt copies)."""

    n_samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        checks = [
            (self.n_samples >= 1, "n_samples must be >= 1"),
            (self.temperature >= 0, "temperature must be >= 0 (0 is greedy decoding)"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.top_k >= 0, "top_k must be >= 0 (0 keeps the whole vocabulary)"),
            (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{message}, got {self}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def exact(self) -> bool:
        """True when samples come from pi unchanged (temperature 1, no top-p / top-k cut)."""
        return self.temperature == 1 and self.top_p == 1 and self.top_k == 0


@dataclass
class Samples:
    """n responses for each of P prompts; the nested lists are [P][n]."""

    prompts: list[Text]
    prompt_ids: list[list[int]]
    response_ids: list[list[list[int]]] = field(default_factory=list)
    texts: list[list[str]] = field(default_factory=list)
    finished: list[list[bool]] = field(default_factory=list)

    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @property
    def n_samples(self) -> int:
        return len(self.texts[0]) if self.texts else 0

    def lengths(self, stop_ids: Sequence[int] = ()) -> list[list[int]]:
        """Response lengths in tokens, without the closing stop token."""
        stop = set(stop_ids)
        return [[len(r) - (1 if r and r[-1] in stop else 0) for r in row] for row in self.response_ids]


def encode_prompt(tokenizer: Any, prompt: Text, chat_template: str = "auto",
                  max_prompt_length: int | None = None) -> list[int]:
    """The prompt's token ids as training builds them (see the module docstring)."""
    text, _, chat = render(tokenizer, prompt, None, chat_template)
    ids = tokenizer(text, add_special_tokens=not chat)["input_ids"]
    if max_prompt_length is not None and len(ids) > max_prompt_length:
        ids = ids[-max_prompt_length:]
    if not ids:
        raise ValueError(f"prompt {prompt!r} tokenises to no tokens")
    return ids


def stop_token_ids(tokenizer: Any, model: nn.Module | None = None) -> list[int]:
    """The tokenizer's EOS first, then any other EOS id of the model's generation config."""
    ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for i in [extra] if isinstance(extra, int) else (extra or []):
        if i not in ids:
            ids.append(i)
    if not ids:
        raise ValueError("the tokenizer has no EOS token: generation would never stop before max_new_tokens")
    return ids


def cut_at_stop(ids: Sequence[int], stop_ids: Sequence[int]) -> tuple[list[int], bool]:
    """``ids`` up to and including the first stop token; True in second place if there was one."""
    stop = set(stop_ids)
    for i, token in enumerate(ids):
        if token in stop:
            return list(ids[: i + 1]), True
    return list(ids), False


def generation_config(cfg: SamplingConfig, pad_token_id: int, stop_ids: list[int]) -> GenerationConfig:
    """Explicit settings, so that neither a model's generation_config nor transformers' defaults change pi."""
    options: dict[str, Any] = dict(
        max_new_tokens=cfg.max_new_tokens, num_beams=1, pad_token_id=pad_token_id, eos_token_id=stop_ids,
        do_sample=not cfg.greedy, repetition_penalty=1.0, no_repeat_ngram_size=0,
    )
    if not cfg.greedy:
        options.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, typical_p=1.0)
    return GenerationConfig(**options)


def left_pad(seqs: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask [N, T], each sequence right-aligned."""
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        input_ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
        attention_mask[i, width - len(s):] = 1
    return input_ids, attention_mask


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate_samples(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[Text],
    cfg: SamplingConfig,
    chat_template: str = "auto",
    max_prompt_length: int | None = None,
    progress: bool = False,
) -> Samples:
    """Draw ``cfg.n_samples`` responses for each prompt (see the module docstring); ``progress``: a tqdm bar of
    the sequences drawn (rate and ETA)."""
    if not prompts:
        raise ValueError("no prompts to generate from")
    stop_ids = stop_token_ids(tokenizer, model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    gen_cfg = generation_config(cfg, pad_id, stop_ids)
    prompt_ids = [encode_prompt(tokenizer, p, chat_template, max_prompt_length) for p in prompts]
    out = Samples(prompts=list(prompts), prompt_ids=prompt_ids,
                  response_ids=[[] for _ in prompts], texts=[[] for _ in prompts], finished=[[] for _ in prompts])
    jobs = [i for i in range(len(prompts)) for _ in range(cfg.n_samples)]  # prompt-major: p0 s0, p0 s1, ...
    device = _device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            bar = tqdm(total=len(jobs), desc="sampling", unit="seq", disable=not progress, leave=None)
            for start in range(0, len(jobs), cfg.batch_size):
                chunk = jobs[start: start + cfg.batch_size]
                input_ids, attention_mask = left_pad([prompt_ids[i] for i in chunk], pad_id)
                sequences = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                           generation_config=gen_cfg)
                for i, new in zip(chunk, sequences[:, input_ids.shape[1]:].tolist()):
                    ids, finished = cut_at_stop(new, stop_ids)
                    text_ids = ids[:-1] if finished else ids
                    out.response_ids[i].append(ids)
                    out.finished[i].append(finished)
                    out.texts[i].append(tokenizer.decode(text_ids, skip_special_tokens=True))
                bar.update(len(chunk))
            bar.close()
    finally:
        model.train(was_training)
    return out


class HFSampler:
    """Samples with ``model.generate`` (:func:`generate_samples`): batched,
    left-padded, seeded in a forked RNG, from the model's own distribution at ``temperature`` / ``top_p``."""

    name = "hf"

    def __init__(self, tokenizer: Any, chat_template: str = "auto", max_prompt_length: int | None = None):
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.max_prompt_length = max_prompt_length

    def sample(self, model: nn.Module, prompts: Sequence[Text], cfg: SamplingConfig) -> Samples:
        return generate_samples(model, self.tokenizer, prompts, cfg, self.chat_template, self.max_prompt_length)
