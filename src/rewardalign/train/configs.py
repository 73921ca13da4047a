"""The typed configs of the training commands: what ``align.yaml``, ``sft.yaml`` and ``online.yaml`` hold.

Each is also the Python API's argument: ``run_align(AlignConfig(model=..., data=..., training={...}))``.
Fields that are not the config's own (transformers ``TrainingArguments``: output_dir, learning_rate, max_steps,
...) sit flat beside them in YAML and on the command line and land in ``training``.
No torch here: ``--help`` reads these without loading a model library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import FORMAT_OPTIONS_HELP, ModelFields, RunFields, opt

LAYOUTS = ("plain", "shared_prompt", "packed", "packed_shared_prompt")
ALGORITHMS = {"una": "una_score_mse", "rloo": "rloo"}
SAMPLERS = ("auto", "hf", "vllm")


@dataclass
class AlignConfig(RunFields):
    """``rewardalign align``: offline alignment with any objective of the registry."""

    eval_data: str | None = opt(None, "held-out groups (evaluated at the end and at eval_strategy)")
    eval_fraction: float = opt(0.0, "share of the training groups held out when eval_data is unset")
    objective: str = opt("dpo", "an objective of the registry (rewardalign.objectives.OBJECTIVES)")
    objective_args: dict[str, Any] = opt(help="the objective's hyperparameters, e.g. {beta: 0.1}", factory=dict)
    reference: str = opt("precompute", "reference log-probs: precompute (once, cached) or live (a frozen copy)")
    lora: dict[str, Any] | None = opt(None, "peft LoraConfig fields ({r: 8} ...); unset: full fine-tuning")
    group_by_length: bool = opt(False, "batch groups of similar length together")
    layout: str = opt("plain", f"batch layout: {', '.join(LAYOUTS)} (every layout gives the same log-probs)")
    pack_length: int | None = opt(None, "tokens per packed row (packed layouts; default: the longest group)")
    cache_dir: str = opt(".cache/rewardalign", "where precomputed reference log-probs are cached")


@dataclass
class SFTConfig(RunFields):
    """``rewardalign sft``: supervised fine-tuning on demonstrations, loss on response tokens only."""

    model_init: dict[str, Any] | None = opt(None, "build a tiny Llama from these LlamaConfig fields instead of "
                                                  "loading model (and train a BPE tokenizer on the data)")
    responses: str = opt("best", "which responses of a group are demonstrations: best or all")
    lora: dict[str, Any] | None = opt(None, "peft LoraConfig fields; unset: full fine-tuning")
    group_by_length: bool = opt(False, "batch examples of similar length together")


@dataclass
class OnlineConfig(ModelFields):
    """``rewardalign online``: UNA online on samples of the current policy, or the RLOO baseline."""

    prompts: str | None = opt(None, "a data file's distinct prompts, or gym:<task> (a name, module:Class or file.py:Class)")
    prompts_format: str | None = opt(None, "the prompts file's format, when it is not detected")
    format_options: dict[str, Any] = opt(help="load options of the prompts file: " + FORMAT_OPTIONS_HELP, factory=dict)
    split: str | None = opt(None, "the split of a datasets directory")
    max_prompts: int | None = opt(None, "use the first N prompts")
    prompts_seed: int = opt(0, "seed of a gym task's prompts")
    reward: Any = opt(None, "rm:<path>, rule:<module or file.py>:<function>, gym:<task>, or a source mapping")
    transform: Any = opt(None, "raw reward -> what the objective reads: sigmoid, minmax, standardize, none")
    judge: Any = opt(None, "a second reward, only logged (e.g. the gold reward while training on an RM)")
    algorithm: str = opt("una", f"{' or '.join(ALGORITHMS)}")
    objective: str | None = opt(None, "una: a point-wise objective (default una_score_mse); rloo: rloo (unset: "
                                      "the algorithm's)")
    objective_args: dict[str, Any] = opt(help="the objective's hyperparameters, e.g. {beta: 0.1} (una_score_mse) or "
                                              "{kl_coef: 0.05} (rloo); unset: the objective's defaults", factory=dict)
    label_threshold: float = opt(0.5, "binary objectives: label 1 when the score is at least this")
    n_samples: int = opt(4, "K: responses sampled per prompt")
    temperature: float = opt(1.0, "sampling temperature")
    top_p: float = opt(1.0, "nucleus sampling mass")
    max_new_tokens: int = opt(64, "longest sampled response")
    generation_batch_size: int = opt(64, "sequences per generate call")
    sampler: str = opt("auto", "auto (vllm where installed with CUDA, else hf), hf or vllm")
    vllm_gpu_memory_utilization: float = opt(0.3, "vllm's share of the GPU")
    reference: str = opt("auto", "auto (peft with lora, else live), live or peft")
    lora: dict[str, Any] | None = opt(None, "peft LoraConfig fields; unset: full fine-tuning")
    max_prompt_length: int | None = opt(None, "longest prompt in tokens (keeps its end)")
    chat_template: str = opt("auto", "auto (message lists only), always or never")
    overwrite_output_dir: bool = opt(False, "replace the outputs of another run in output_dir (they are removed "
                                            "first); without it such a folder is refused")
    training: dict[str, Any] = opt(help="transformers TrainingArguments fields", factory=dict)
