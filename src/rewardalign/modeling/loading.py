"""Loading models and tokenizers: causal LMs by path (local or hub), dtype, LoRA, dropout, devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from ..config import ConfigError


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability of ``model`` to 0 (modules and attention dropout attributes)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for attr in ("attention_dropout", "dropout", "hidden_dropout"):
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, 0.0)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_causal_lm(
    path: str, dtype: str = "float32", trust_remote_code: bool = False, attn_implementation: str | None = None
) -> torch.nn.Module:
    """A causal LM from a local directory (or a hub name where a network exists). ``attn_implementation``:
    transformers' choice when None; ``sdpa``, ``eager`` or ``flash_attention_2`` (the packed layout then
    passes position ids only) where installed."""
    if dtype not in DTYPES:
        raise ConfigError(f"torch_dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    extra = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code,
                                                    **extra)
    except OSError as err:  # transformers' word for files it cannot find or read (local or on the Hub)
        raise _cannot_load("the model", path, err) from err


def _cannot_load(what: str, path: str | Path, err: OSError) -> ConfigError:
    """transformers' error, and where ``path`` is no local directory, that it was tried as a Hub id (a missing
    ``runs/sft`` and the Hub model ``org/name`` look alike)."""
    local = "" if Path(path).expanduser().exists() else (
        f" (no directory '{Path(path).expanduser().resolve()}' here, so it was tried as a Hub id)")
    return ConfigError(f"cannot load {what} '{path}'{local}: {err}")


def apply_lora(model: torch.nn.Module, lora: dict[str, Any]) -> torch.nn.Module:
    """Wrap ``model`` with LoRA adapters (``peft``); ``lora`` holds ``peft.LoraConfig`` fields."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ConfigError("lora needs peft: pip install 'rewardalign[peft]'") from err
    options = {"r": 8, "lora_alpha": 16, "target_modules": "all-linear", "task_type": "CAUSAL_LM"} | lora
    return get_peft_model(model, LoraConfig(**options))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer from a local directory (or a hub name where a network exists)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except OSError as err:
        raise _cannot_load("the tokenizer of", path, err) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolve_device(device: str | None) -> torch.device:
    """``auto`` (or None): cuda where available, else cpu."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
