"""``EvalConfig``: the fields of ``eval.yaml`` (no torch: ``--help`` reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import FORMAT_OPTIONS_HELP, opt

CI_METHODS = ("normal", "bootstrap")


@dataclass
class EvalConfig:
    """The fields of ``eval.yaml`` (see the module docstring)."""

    model: str | None = opt(None, "the policy: a save_pretrained directory (its tokenizer is used)")
    prompts: str | None = opt(None, "a data file of any format (its distinct prompts) or rows with a prompt")
    judge: str | None = opt(None, "reward of the samples: gym:<task>, rm:<path>, rule:<module or file.py>:<fn>")
    output_dir: str | None = opt(None, "gets eval.json, samples.jsonl and eval_config.yaml")
    reference: str | None = opt(None, "a model directory: KL(pi || reference) and the likelihood drift")
    baseline: str | None = opt(None, "a model directory whose samples the policy's are compared with (win rate)")
    pairs: str | None = opt(None, "held-out groups for the likelihood drift of chosen and rejected responses")
    prompts_format: str | None = opt(None, "the prompts file's format, when it is not detected")
    pairs_format: str | None = opt(None, "the pairs file's format, when it is not detected")
    format_options: dict[str, Any] = opt(help="load options of prompts and pairs: " + FORMAT_OPTIONS_HELP,
                                         factory=dict)
    split: str | None = opt(None, "the split of a datasets directory")
    n_samples: int = opt(4, "responses sampled per prompt")
    temperature: float = opt(1.0, "sampling temperature (0: greedy)")
    top_p: float = opt(1.0, "nucleus sampling mass")
    top_k: int = opt(0, "top-k sampling (0: off, the model's own distribution)")
    max_new_tokens: int = opt(64, "longest sampled response")
    generation_batch_size: int = opt(16, "sequences per generate call")
    seed: int = opt(0, "sampling seed")
    max_prompts: int | None = opt(None, "use the first N prompts")
    max_pairs: int | None = opt(None, "use the first N pairs")
    chat_template: str = opt("auto", "auto (message lists only), always or never")
    max_prompt_length: int | None = opt(None, "longest prompt in tokens (keeps its end)")
    max_length: int = opt(512, "longest prompt + response of the pairs, in tokens")
    confidence: float = opt(0.95, "confidence level of the intervals")
    ci_method: str = opt("normal", "normal or bootstrap (clustered over prompts)")
    torch_dtype: str = opt("float32", "weights' dtype: float32, bfloat16 or float16")
    logprob_chunk_size: int = opt(1024, "rows of the vocabulary projection computed at once")
    trust_remote_code: bool = opt(False, "run the model repository's own code (only for code you trust)")
