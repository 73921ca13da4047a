"""Reward models: a causal LM with a scalar head on the last non-padding token, and ensembles of them.

:class:`RewardModel` wraps any ``AutoModelForCausalLM`` and keeps its language-model head, so one class
serves both kinds of 002/000-001:

- ``bt``: r(x, y) = w^T h_T(x, y), the final hidden state of the sequence's last non-padding token (the EOS
  that closes the response) through a linear head ``score`` (no bias: BT sees only differences);
- ``oracle`` (002 Eq. 5): the same reward, plus the LM head's token NLL of the preferred response, trained
  together.

A saved reward model is an ordinary ``save_pretrained`` directory of the causal LM (safetensors weights,
``config.json``, tokenizer) plus ``reward_head.safetensors`` and ``reward_model.json``; it loads back from a
local path with :meth:`RewardModel.from_pretrained`. An ensemble is a directory with ``member_0/``,
``member_1/``, ... (each a reward model) and ``ensemble.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import ConfigError
from ..modeling.logprobs import chunked_token_logps

REWARD_CONFIG = "reward_model.json"
HEAD_FILE = "reward_head.safetensors"
ENSEMBLE_CONFIG = "ensemble.json"
FORMAT = "rewardalign.reward_model"
ENSEMBLE_FORMAT = "rewardalign.reward_ensemble"
KINDS = ("bt", "oracle")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class RewardOutput:
    """``rewards`` [N] (float32); ``nll`` [R] mean token NLL of the rows asked for (None unless asked)."""

    rewards: torch.Tensor
    nll: torch.Tensor | None = None


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """[N] index of each row's last non-padding token, for right or left padding.

    The running count of real tokens reaches its maximum at the last real token and stays there over trailing
    padding; ``argmax`` returns the first position of the maximum.
    """
    return attention_mask.long().cumsum(-1).argmax(-1)


class RewardModel(nn.Module):
    """A causal LM ``lm`` with a scalar reward head ``score`` on the last non-padding token's hidden state.

    ``forward(input_ids, attention_mask)`` gives the rewards [N]; with ``nll_rows`` (bool [N]) and
    ``response_mask`` [N, T] it also gives the mean token NLL of those rows' response tokens (prompt tokens
    excluded), computed through the LM head on the response positions only.
    """

    accepts_loss_kwargs = False  # Trainer: our loss is a mean over pairs, scale it for accumulation

    def __init__(self, lm: nn.Module, kind: str = "bt", head_seed: int | None = 0):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"reward model kind must be one of {KINDS}, got {kind!r}")
        self.lm = lm
        self.kind = kind
        hidden = lm.get_input_embeddings().embedding_dim
        self.score = nn.Linear(hidden, 1, bias=False)
        if kind == "bt":
            self._freeze_untied_lm_head()
        std = float(getattr(lm.config, "initializer_range", 0.02) or 0.02)
        generator = torch.Generator().manual_seed(head_seed) if head_seed is not None else None
        with torch.no_grad():
            weight = torch.randn(self.score.weight.shape, generator=generator) * std
            self.score.weight.copy_(weight)

    def _freeze_untied_lm_head(self) -> None:
        """bt never uses the LM head: an untied head is frozen (no optimizer state for a [V, H] matrix, and no
        parameter without a gradient under DDP). A head tied to the input embeddings stays trainable."""
        head = self.lm.get_output_embeddings()
        if head is None or head.weight is self.lm.get_input_embeddings().weight:
            return
        head.weight.requires_grad_(False)

    @property
    def config(self) -> Any:
        """The causal LM's config (``Trainer`` and logging read it)."""
        return self.lm.config

    @property
    def hidden_size(self) -> int:
        return self.score.in_features

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        self.lm.gradient_checkpointing_enable(**kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.lm.gradient_checkpointing_disable()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_mask: torch.Tensor | None = None,
        nll_rows: torch.Tensor | None = None,
        chunk_size: int = 1024,
    ) -> RewardOutput:
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            logits_to_keep=1,  # no full-vocabulary logits: the NLL below projects response positions only
            use_cache=False,
        )
        hidden = out.hidden_states[-1]
        last = last_token_index(attention_mask)
        h_last = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        rewards = self.score(h_last.to(self.score.weight.dtype)).squeeze(-1).float()
        nll = None
        if nll_rows is not None:
            if response_mask is None:
                raise ValueError("the NLL term needs response_mask (True on the response tokens)")
            nll = mean_token_nll(self.lm, hidden[nll_rows], input_ids[nll_rows], response_mask[nll_rows],
                                 chunk_size)
        return RewardOutput(rewards=rewards, nll=nll)

    # ---- saving and loading -------------------------------------------------------------------------------

    def save_pretrained(self, path: str | Path, tokenizer: Any = None, info: dict[str, Any] | None = None) -> Path:
        """Write the causal LM (``save_pretrained``, safetensors), the head and ``reward_model.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(path)
        save_file({"weight": self.score.weight.detach().float().cpu().contiguous()}, str(path / HEAD_FILE))
        meta = {"format": FORMAT, "version": 1, "kind": self.kind, "hidden_size": self.hidden_size,
                "head_file": HEAD_FILE, **(info or {})}
        (path / REWARD_CONFIG).write_text(json.dumps(meta, indent=2, default=str))
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        return path

    @classmethod
    def from_pretrained(
        cls, path: str | Path, dtype: str = "float32", device: str | torch.device | None = None,
        trust_remote_code: bool = False,
    ) -> RewardModel:
        """Load a reward model saved by :meth:`save_pretrained` (weights read with safetensors)."""
        from transformers import AutoModelForCausalLM

        path = Path(path)
        meta = read_reward_config(path)
        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        lm = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[dtype], trust_remote_code=trust_remote_code)
        model = cls(lm, kind=meta.get("kind", "bt"), head_seed=None)
        head = load_file(str(path / meta.get("head_file", HEAD_FILE)))
        if tuple(head["weight"].shape) != tuple(model.score.weight.shape):
            raise ConfigError(f"{path}: reward head has shape {tuple(head['weight'].shape)}, "
                              f"the model's hidden size needs {tuple(model.score.weight.shape)}")
        with torch.no_grad():
            model.score.weight.copy_(head["weight"])
        model.eval()
        if device is not None:
            model.to(device)
        return model


def mean_token_nll(
    lm: nn.Module, hidden: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor, chunk_size: int = 1024
) -> torch.Tensor:
    """[R] mean token NLL of each row's response tokens: -(1/n) sum_t log p(y_t | x, y_<t).

    Position t-1 predicts token t; only response positions go through the LM head (chunked, see
    :mod:`rewardalign.modeling.logprobs`), never the full [R, T, V] logits.
    """
    select = response_mask[:, 1:].bool()
    counts = select.sum(-1)
    if bool((counts == 0).any()):
        raise ValueError("a sequence has no response tokens; cannot compute its NLL")
    token_logps = chunked_token_logps(
        hidden[:, :-1][select], input_ids[:, 1:][select], lm.get_output_embeddings(), lm.config, chunk_size
    )
    rows = torch.arange(select.shape[0], device=select.device)[:, None].expand_as(select)[select]
    summed = torch.zeros(select.shape[0], dtype=token_logps.dtype, device=token_logps.device)
    summed = summed.index_add(0, rows, token_logps)
    return -summed / counts.to(summed.dtype)


def read_reward_config(path: str | Path) -> dict[str, Any]:
    """The ``reward_model.json`` of a saved reward model; ConfigError when ``path`` is not one."""
    path = Path(path)
    file = path / REWARD_CONFIG
    if not file.is_file():
        hint = " (it is an ensemble: use the ensemble source)" if (path / ENSEMBLE_CONFIG).is_file() else ""
        raise ConfigError(f"{path} is not a reward model directory: no {REWARD_CONFIG}{hint}; "
                          f"train one with `rewardalign train-rm`")
    meta = json.loads(file.read_text())
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{file}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def is_reward_model_dir(path: str | Path) -> bool:
    return (Path(path) / REWARD_CONFIG).is_file()


def is_ensemble_dir(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_CONFIG).is_file()


def write_ensemble_config(path: str | Path, members: list[str], info: dict[str, Any] | None = None) -> Path:
    """Write ``ensemble.json`` listing the member directories (relative to ``path``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": ENSEMBLE_FORMAT, "version": 1, "members": members, **(info or {})}
    (path / ENSEMBLE_CONFIG).write_text(json.dumps(meta, indent=2, default=str))
    return path


def ensemble_members(path: str | Path) -> list[Path]:
    """The member directories of a saved ensemble, in order; ConfigError when ``path`` is not one."""
    path = Path(path)
    file = path / ENSEMBLE_CONFIG
    if not file.is_file():
        raise ConfigError(f"{path} is not a reward-model ensemble: no {ENSEMBLE_CONFIG}")
    meta = json.loads(file.read_text())
    if meta.get("format") != ENSEMBLE_FORMAT or not meta.get("members"):
        raise ConfigError(f"{file}: not a rewardalign ensemble manifest (format {meta.get('format')!r})")
    members = [path / m for m in meta["members"]]
    for member in members:
        read_reward_config(member)
    return members


class RewardEnsemble(nn.Module):
    """M reward models scored side by side: ``forward`` gives [N, M] rewards, one column per member."""

    def __init__(self, members: list[RewardModel]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def __len__(self) -> int:
        return len(self.members)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(input_ids, attention_mask).rewards for m in self.members], dim=-1)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: str = "float32",
                        device: str | torch.device | None = None) -> RewardEnsemble:
        return cls([RewardModel.from_pretrained(p, dtype=dtype, device=device) for p in ensemble_members(path)])
