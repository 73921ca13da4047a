"""Reward models: standard ``transformers`` sequence-classification models with one label, and ensembles of them.

A reward model is any ``AutoModelForSequenceClassification`` with ``num_labels = 1`` and ``pad_token_id`` set
in its config (``LlamaForSequenceClassification``, ``Qwen2ForSequenceClassification``, ...): the reward of a
sequence is its one logit at the last non-padding token, pooled by transformers itself. That is what TRL's
RewardTrainer writes and what public reward models ship, and what ``train-rm`` writes:

- ``bt``: the causal LM's backbone (its weights) with a new score head, trained on Bradley-Terry pairs;
- ``oracle`` (002 Eq. 5): the same, trained together with the LM head's NLL of the preferred response.
  :class:`OracleRewardModel` holds the classifier and the LM head during training and saves the classifier
  alone, so the saved directory is the same standard one (a head tied to the input embeddings is kept there
  anyway).

One other kind is not a classifier: ``likelihood``, a causal LM whose reward is its own length-normalised
log-likelihood of the response, r(x, y) = beta / |y| * log pi(y | x) - offset (SimPO's reference-free implicit
reward, Meng et al. 2024, Eq. 4), trained by the same Bradley-Terry loss from the SFT model, which already
orders a response's likelihood. It is saved as the plain ``AutoModelForCausalLM`` directory, and
``reward_training.json`` (``kind: likelihood``, ``likelihood_beta``, ``offset``) is what makes it a reward model.

The training metadata (kind, max_length, chat_template, held-out figures) sits beside the weights in
``reward_training.json``; for a classifier it is optional: every directory of the kind above is a reward model.
An ensemble is a directory with ``member_0/``, ``member_1/``, ... (each a reward model) and ``ensemble.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from ..config import ConfigError, check_model_path
from ..modeling.loading import DTYPES, load_causal_lm
from ..modeling.logprobs import batch_logps, chunked_token_logps

TRAINING_INFO = "reward_training.json"
ENSEMBLE_CONFIG = "ensemble.json"
ENSEMBLE_FORMAT = "rewardalign.reward_ensemble"
KINDS = ("bt", "oracle", "likelihood")


@dataclass
class RewardOutput:
    """``logits`` [N, 1] (the rewards, pooled at each row's last non-padding token); ``nll`` [R] mean token NLL
    of the rows asked for (None unless asked)."""

    logits: torch.Tensor
    nll: torch.Tensor | None = None


def sequence_rewards(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[N] float32 rewards of the sequences of a collated batch of K = 1 groups, from a reward model (a
    sequence-classification model, an :class:`OracleRewardModel` or a :class:`LikelihoodRewardModel`)."""
    if isinstance(model, LikelihoodRewardModel):
        return model(batch)[:, 0].float()
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 use_cache=False).logits[:, 0].float()


class LikelihoodRewardModel(nn.Module):
    """A causal LM ``lm`` read as a reward model: for each response of a collated batch of groups [B, K],

        r(x, y) = beta / |y| * sum_t log pi(y_t | x, y_<t) - offset

    SimPO's reference-free implicit reward (Meng et al. 2024, Eq. 4): the length-normalised log-likelihood,
    scaled by ``beta``. ``offset`` (the held-out pairs' mean reward after training) centres the rewards at 0;
    BT training ignores it. Padded slots of [B, K] hold -offset. ``lm`` may be wrapped (DDP, FSDP): its own
    forward runs (:func:`~rewardalign.modeling.logprobs.batch_logps`).
    """

    def __init__(self, lm: nn.Module, beta: float, offset: float = 0.0, chunk_size: int = 1024):
        super().__init__()
        self.lm = lm
        self.beta = float(beta)
        self.offset = float(offset)
        self.chunk_size = chunk_size

    @property
    def config(self) -> Any:
        return self.lm.config

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = batch_logps(self.lm, batch, self.chunk_size)
        return self.beta * out.logps / out.n_tokens.clamp(min=1) - self.offset


def _tied(model: PreTrainedModel) -> bool:
    return bool(getattr(model.config.get_text_config(), "tie_word_embeddings", False))


class OracleRewardModel(nn.Module):
    """A sequence-classification reward model ``classifier`` with the causal LM's head ``lm_head`` beside it, for
    the oracle's NLL term (None when the head is tied to the input embeddings: they serve as the head).

    ``forward(input_ids, attention_mask)`` gives the classifier's ``logits`` [N, 1]; with ``nll_rows`` (bool [N])
    and ``response_mask`` [N, T] also the mean token NLL of those rows' response tokens (prompt excluded), from
    the classifier's final hidden states through the LM head, response positions only. ``save_pretrained``
    writes the classifier: a standard reward-model directory.
    """

    accepts_loss_kwargs = False  # Trainer: our loss is a mean over pairs, scale it for accumulation

    def __init__(self, classifier: PreTrainedModel, lm_head: nn.Linear | None = None, chunk_size: int = 1024):
        super().__init__()
        if lm_head is None and not _tied(classifier):
            raise ValueError("the model's LM head is not tied to its input embeddings: pass lm_head")
        self.classifier = classifier
        self.lm_head = lm_head
        self.chunk_size = chunk_size

    @property
    def config(self) -> Any:
        """The classifier's config (``Trainer`` and logging read it)."""
        return self.classifier.config

    # Trainer turns checkpointing on by its new name, or by the old one in earlier transformers 5 releases
    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        self.classifier.gradient_checkpointing_enable(**kwargs)

    def activation_checkpointing_enable(self, **kwargs: Any) -> None:
        self.classifier.activation_checkpointing_enable(**kwargs)

    def output_head(self) -> nn.Linear:
        """The LM head: ``lm_head``, or a linear view of the tied input embeddings (same parameter)."""
        if self.lm_head is not None:
            return self.lm_head
        weight = self.classifier.get_input_embeddings().weight
        head = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
        head.weight = weight
        return head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor | None = None,
                nll_rows: torch.Tensor | None = None, use_cache: bool = False) -> RewardOutput:
        out = self.classifier(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache,
                              output_hidden_states=nll_rows is not None)
        nll = None
        if nll_rows is not None:
            if response_mask is None:
                raise ValueError("the NLL term needs response_mask (True on the response tokens)")
            hidden = out.hidden_states[-1]
            nll = mean_token_nll(self.output_head(), self.config, hidden[nll_rows], input_ids[nll_rows],
                                 response_mask[nll_rows], self.chunk_size)
        return RewardOutput(logits=out.logits, nll=nll)

    def save_pretrained(self, path: str | Path, **kwargs: Any) -> None:
        self.classifier.save_pretrained(path, **kwargs)


def mean_token_nll(head: nn.Module, config: Any, hidden: torch.Tensor, input_ids: torch.Tensor,
                   response_mask: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """[R] mean token NLL of each row's response tokens: -(1/n) sum_t log p(y_t | x, y_<t).

    Position t-1 predicts token t; only response positions go through ``head`` (chunked, see
    :mod:`rewardalign.modeling.logprobs`), never the full [R, T, V] logits.
    """
    select = response_mask[:, 1:].bool()
    counts = select.sum(-1)
    if bool((counts == 0).any()):
        raise ValueError("a sequence has no response tokens; cannot compute its NLL")
    token_logps = chunked_token_logps(hidden[:, :-1][select], input_ids[:, 1:][select], head, config, chunk_size)
    rows = torch.arange(select.shape[0], device=select.device)[:, None].expand_as(select)[select]
    summed = torch.zeros(select.shape[0], dtype=token_logps.dtype, device=token_logps.device)
    summed = summed.index_add(0, rows, token_logps)
    return -summed / counts.to(summed.dtype)


# ---- building and loading -----------------------------------------------------------------------------------


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(f"torch_dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def build_reward_model(path: str | Path, kind: str, pad_token_id: int, dtype: str = "float32",
                       trust_remote_code: bool = False, attn_implementation: str | None = None,
                       chunk_size: int = 1024) -> nn.Module:
    """A reward model to train from the causal LM at ``path``: ``AutoModelForSequenceClassification`` with one
    label (the causal LM's backbone weights, a new score head initialised from the current seed, as TRL's
    RewardTrainer does), ``pad_token_id`` in its config. ``oracle`` wraps it with the causal LM's head (an untied
    head is taken from a second load of the causal LM, freed once the head is out); ``likelihood`` is the causal
    LM itself (the trainer reads it through :class:`LikelihoodRewardModel`)."""
    if kind not in KINDS:
        raise ConfigError(f"reward model kind must be one of {KINDS}, got {kind!r}")
    if kind == "likelihood":
        return load_causal_lm(str(path), dtype, trust_remote_code, attn_implementation)
    extra = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    classifier = AutoModelForSequenceClassification.from_pretrained(
        str(path), num_labels=1, dtype=_dtype(dtype), trust_remote_code=trust_remote_code, **extra)
    classifier.config.get_text_config().pad_token_id = pad_token_id
    if kind == "bt":
        return classifier
    lm_head = None
    if not _tied(classifier):
        lm_head = load_causal_lm(str(path), dtype, trust_remote_code, attn_implementation).get_output_embeddings()
    return OracleRewardModel(classifier, lm_head, chunk_size)


def resolve_model_dir(name: str | Path) -> Path:
    """A local model directory: ``name`` itself, or the hub repository ``name`` (``org/model`` that
    :func:`~rewardalign.config.check_model_path` lets through: not a local path) fetched by
    ``huggingface_hub.snapshot_download`` into its cache where a network exists."""
    check_model_path(str(name), "reward model", marker=())
    path = Path(name)
    if path.is_dir():
        return path
    text = str(name)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                            "*.jinja", "*.tiktoken", "*.py"]))
    except (OSError, ValueError) as err:  # offline, no such repository, no access
        raise ConfigError(f"reward model '{name}' is neither a local directory nor a hub repository that can be "
                          f"downloaded here ({type(err).__name__}: {err})") from err


def check_reward_model_dir(path: str | Path, trust_remote_code: bool = False) -> Any:
    """The config of the reward model at ``path``; ConfigError unless it is a sequence-classification model with
    one label, or a causal LM that ``train-rm`` wrote as a ``likelihood`` reward model (read from
    ``config.json`` and ``reward_training.json``; no weights are loaded)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        hint = " (it is an ensemble: use the ensemble source)" if is_ensemble_dir(path) else ""
        raise ConfigError(f"{path} is not a reward model directory: no config.json{hint}")
    config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    architectures = config.architectures or []
    info = read_training_info(path)
    if info.get("kind") == "likelihood":
        if not any(a.endswith("ForCausalLM") for a in architectures):
            raise ConfigError(f"{path}: {TRAINING_INFO} says kind likelihood, but config.json holds no causal LM "
                              f"(architectures {architectures})")
        beta, offset = info.get("likelihood_beta"), info.get("offset", 0.0)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (beta, offset)) or beta <= 0:
            raise ConfigError(f"{path / TRAINING_INFO}: a likelihood reward model needs likelihood_beta > 0 and a "
                              f"numeric offset, got likelihood_beta {beta!r}, offset {offset!r}")
        return config
    if not any(a.endswith("ForSequenceClassification") for a in architectures) or config.num_labels != 1:
        raise ConfigError(f"{path} is not a reward model: a reward model is a sequence-classification model with "
                          f"one label (architectures {architectures}, num_labels {config.num_labels}); "
                          f"train one with `rewardalign train-rm`")
    return config


def load_reward_model(path: str | Path, dtype: str = "float32", device: str | torch.device | None = None,
                      trust_remote_code: bool = False, pad_token_id: int | None = None) -> nn.Module:
    """The reward model at ``path`` in eval mode (weights read with safetensors where the directory has them): a
    sequence-classification model, or a :class:`LikelihoodRewardModel` around a ``likelihood`` one's causal LM.
    ``pad_token_id`` fills the config's when it has none (transformers pools at the last token that is not the
    pad token)."""
    check_reward_model_dir(path, trust_remote_code)
    info = read_training_info(path)
    if info.get("kind") == "likelihood":
        lm = load_causal_lm(str(path), dtype, trust_remote_code)
        model = LikelihoodRewardModel(lm, info["likelihood_beta"], info.get("offset", 0.0)).eval()  # checked above
        return model if device is None else model.to(device)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=_dtype(dtype),
                                                               trust_remote_code=trust_remote_code)
    if model.config.get_text_config().pad_token_id is None and pad_token_id is not None:
        model.config.get_text_config().pad_token_id = pad_token_id
    model.eval()
    return model if device is None else model.to(device)


def write_training_info(path: str | Path, info: dict[str, Any]) -> Path:
    """Write the training metadata beside a saved reward model."""
    file = Path(path) / TRAINING_INFO
    file.write_text(json.dumps(info, indent=2, default=str))
    return file


def read_training_info(path: str | Path) -> dict[str, Any]:
    """The training metadata of a reward model trained here; empty for any other reward model."""
    file = Path(path) / TRAINING_INFO
    return json.loads(file.read_text()) if file.is_file() else {}


# ---- ensembles --------------------------------------------------------------------------------------------------


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
        check_reward_model_dir(member)
    return members
