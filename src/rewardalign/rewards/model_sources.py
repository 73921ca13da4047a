"""Reward sources backed by models: a reward model, an ensemble of them, a teacher ratio of two causal LMs.

- ``reward_model``: any sequence-classification model with one label (``train-rm``'s, TRL's, a public one), or
  a ``likelihood`` reward model of ``train-rm``;
- ``ensemble``: the members of a ``train-rm`` ensemble, one column each (annotation adds their mean);
- ``teacher_ratio``: r_t(x, y) = log pi_t(y|x) - log mu_t(y|x), summed response-token log-probs of two causal
  LMs (SPO, 004 section 4.2: pi_t an aligned teacher, mu_t its base).

Models load on the first ``score`` call (or ``load()``), never when the source is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from ..config import ConfigError, check_model_path, opt
from ..data.collate import collate_groups
from ..data.schema import DataError, Group, Text
from ..data.tokenize import TokenizeConfig, TokenizedGroup, TokenizeStats, tokenize_group
from ..fingerprint import MODES, model_fingerprint
from ..modeling.loading import DTYPES, load_tokenizer, resolve_device
from ..modeling.logprobs import batch_logps
from .base import BadReward, Progress, RewardSource, check_lengths
from .models import (
    check_reward_model_dir,
    ensemble_members,
    is_ensemble_dir,
    load_reward_model,
    read_training_info,
    resolve_model_dir,
    sequence_rewards,
)

__all__ = ["EnsembleSource", "ModelOptions", "RewardModelSource", "TeacherRatioSource", "is_ensemble_dir"]

# ---- model-based sources --------------------------------------------------------------------------------------


@dataclass
class ModelOptions:
    """How a model-based source runs: batch size, device, dtype, tokenisation, fingerprint mode."""

    batch_size: int = opt(16, "sequences scored per forward pass")
    device: str = opt("auto", "auto (cuda where available), cpu, cuda, cuda:1, ...")
    torch_dtype: str = opt("float32", "weights' dtype: float32, bfloat16 or float16")
    max_length: int | None = opt(None, "longest prompt + response in tokens (default: the model's training)")
    chat_template: str | None = opt(None, "auto, always or never (default: the model's training)")
    fingerprint: str = opt("auto", "cache key of the model files: auto, content (hash every byte) or stat")
    logprob_chunk_size: int = opt(1024, "rows of the vocabulary projection at once (teacher ratio)")

    def check(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.torch_dtype not in DTYPES:
            raise ConfigError(f"torch_dtype must be one of {sorted(DTYPES)}, got {self.torch_dtype!r}")
        if self.fingerprint not in MODES:
            raise ConfigError(f"fingerprint must be one of {MODES}, got {self.fingerprint!r}")
        if self.chat_template not in (None, "auto", "always", "never"):
            raise ConfigError(f"chat_template must be auto, always or never, got {self.chat_template!r}")


def _tokenize_items(prompts: Sequence[Text], responses: Sequence[Text], tokenizer: Any,
                    config: TokenizeConfig) -> tuple[list[TokenizedGroup], int]:
    """Each (prompt, response) as a K = 1 tokenised group; returns them and how many were truncated to fit."""
    items, stats = [], TokenizeStats()
    for i, (p, r) in enumerate(zip(prompts, responses)):
        try:
            items.append(tokenize_group(Group(p, [r]), tokenizer, config, i, stats))
        except (DataError, ValueError) as err:
            raise BadReward(i, f"cannot be tokenised: {err}") from err
    return items, stats.truncated_prompts + stats.truncated_responses


def _batched(items: list[TokenizedGroup], batch_size: int, pad_id: int, device: torch.device,
             run: Callable[[dict[str, torch.Tensor]], torch.Tensor], progress: Progress | None) -> np.ndarray:
    """Run ``run`` on length-sorted batches of K = 1 groups; results [N] (or [N, ...]) in input order."""
    order = sorted(range(len(items)), key=lambda i: -items[i].length)
    out: np.ndarray | None = None
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        batch = collate_groups([items[i] for i in idx], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            values = run(batch).detach().double().cpu().numpy()
        if out is None:
            out = np.zeros((len(items),) + values.shape[1:], dtype=np.float64)
        out[idx] = values
        if progress is not None:
            progress(len(idx))
    return out if out is not None else np.zeros(0, dtype=np.float64)


class RewardModelSource(RewardSource):
    """Any sequence-classification reward model with one label (``train-rm``'s, TRL's, a public one): r(x, y) is
    its logit at the last non-padding token; or a ``likelihood`` reward model of ``train-rm`` (r(x, y) its
    scaled mean token log-likelihood, :class:`~.models.LikelihoodRewardModel`). With the model's own tokenizer
    and its chat template for message lists. ``path``: a directory, or a hub repository where a network exists.

    Tokenisation follows the model's training where ``train-rm`` wrote it (``reward_training.json``:
    ``max_length``, ``chat_template``) unless ``options`` set them; otherwise ``max_length`` 1024 and ``auto``.
    """

    kind = "reward_model"

    def __init__(self, path: str | Path, options: ModelOptions | None = None, trust_remote_code: bool = False):
        self.options = options or ModelOptions()
        self.options.check()
        self.path = resolve_model_dir(path)
        self.trust_remote_code = trust_remote_code
        check_reward_model_dir(self.path, trust_remote_code)
        self.meta = read_training_info(self.path)
        self.model: Any = None
        self.tokenizer: Any = None
        self.truncated = 0

    def default_name(self) -> str:
        return f"{self.kind}:{self.path}"

    def tokenize_config(self) -> TokenizeConfig:
        max_length = self.options.max_length or int(self.meta.get("max_length") or 1024)
        template = self.options.chat_template or self.meta.get("chat_template") or "auto"
        return TokenizeConfig(max_length=max_length, chat_template=template)

    def _identity(self) -> dict[str, Any]:
        cfg = self.tokenize_config()
        return {"model": model_fingerprint(self.path, self.options.fingerprint), "dtype": self.options.torch_dtype,
                "max_length": cfg.max_length, "chat_template": cfg.chat_template}

    def load(self) -> Any:
        if self.model is None:
            self.tokenizer = load_tokenizer(self.path)
            self.model = load_reward_model(self.path, self.options.torch_dtype, resolve_device(self.options.device),
                                           self.trust_remote_code, pad_token_id=self.tokenizer.pad_token_id)
        return self.model

    def score(self, prompts, responses, progress=None) -> np.ndarray:
        check_lengths(prompts, responses)
        model = self.load()
        items, self.truncated = _tokenize_items(prompts, responses, self.tokenizer, self.tokenize_config())
        device = next(model.parameters()).device
        # transformers pools at the last token that is not the config's pad token: pad with that one (a
        # likelihood reward model reads the attention mask, and may have none in its config)
        pad_id = model.config.get_text_config().pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.pad_token_id
        return _batched(items, self.options.batch_size, pad_id, device, lambda b: sequence_rewards(model, b),
                        progress)

    def close(self) -> None:
        self.model = None


class EnsembleSource(RewardSource):
    """The M members of a ``train-rm`` ensemble (``ensemble.json``, each member a reward model): [N, M], one column
    per member. Members are loaded and scored one at a time, so only one is resident.
    """

    kind = "ensemble"

    def __init__(self, path: str | Path, options: ModelOptions | None = None, trust_remote_code: bool = False):
        self.path = Path(path)
        self.options = options or ModelOptions()
        self.options.check()
        members = ensemble_members(self.path)
        self.members = [RewardModelSource(p, dataclasses.replace(self.options), trust_remote_code) for p in members]
        self.columns = [p.name for p in members]

    def default_name(self) -> str:
        return f"{self.kind}:{self.path} ({len(self.members)} members)"

    @property
    def work_units(self) -> int:
        return len(self.members)

    def _identity(self) -> dict[str, Any]:
        return {"members": [m.fingerprint() for m in self.members]}

    def score(self, prompts, responses, progress=None) -> np.ndarray:
        check_lengths(prompts, responses)
        columns = []
        for member in self.members:
            columns.append(member.score(prompts, responses, progress))
            member.close()
        return np.stack(columns, axis=-1)


class TeacherRatioSource(RewardSource):
    """r_t(x, y) = log pi_t(y|x) - log mu_t(y|x) (SPO, 004 section 4.2).

    ``teacher`` (pi_t, e.g. an instruct model) and ``base`` (mu_t, its pre-alignment base) are causal LM
    directories; each log-prob is the SUM over the response tokens (prompt excluded), each model with its own
    tokenizer. A teacher equal to its base gives exactly 0.
    """

    kind = "teacher_ratio"

    def __init__(self, teacher: str | Path, base: str | Path, options: ModelOptions | None = None,
                 trust_remote_code: bool = False):
        self.teacher, self.base = Path(teacher), Path(base)
        self.options = options or ModelOptions()
        self.options.check()
        self.trust_remote_code = trust_remote_code
        for what, path in (("teacher", teacher), ("base", base)):
            check_model_path(str(path), f"teacher_ratio {what}", hub=False)
        self.truncated = 0

    def default_name(self) -> str:
        return f"{self.kind}:{self.teacher} / {self.base}"

    def tokenize_config(self) -> TokenizeConfig:
        return TokenizeConfig(max_length=self.options.max_length or 1024,
                              chat_template=self.options.chat_template or "auto")

    def _identity(self) -> dict[str, Any]:
        cfg = self.tokenize_config()
        mode = self.options.fingerprint
        return {"teacher": model_fingerprint(self.teacher, mode), "base": model_fingerprint(self.base, mode),
                "dtype": self.options.torch_dtype, "max_length": cfg.max_length, "chat_template": cfg.chat_template}

    def _logps(self, path: Path, prompts, responses, progress: Progress | None) -> np.ndarray:
        tokenizer = load_tokenizer(path)
        device = resolve_device(self.options.device)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[self.options.torch_dtype],
                                                     trust_remote_code=self.trust_remote_code).to(device).eval()
        items, truncated = _tokenize_items(prompts, responses, tokenizer, self.tokenize_config())
        self.truncated = max(self.truncated, truncated)
        chunk = self.options.logprob_chunk_size
        values = _batched(items, self.options.batch_size, tokenizer.pad_token_id, device,
                          lambda b: batch_logps(model, b, chunk).logps[:, 0], progress)
        return values  # the model is freed when this frame ends

    @property
    def work_units(self) -> int:
        return 2

    def score(self, prompts, responses, progress=None) -> np.ndarray:
        check_lengths(prompts, responses)
        teacher = self._logps(self.teacher, prompts, responses, progress)
        base = self._logps(self.base, prompts, responses, progress)
        return teacher - base
