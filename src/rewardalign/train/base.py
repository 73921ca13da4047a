"""``GroupTrainer``: the one ``transformers.Trainer`` base of every trainer of the package (align, SFT, reward
model, online).

Accumulation, mixed precision, checkpoints and resume, schedules, ``report_to`` and multi-process training through
``accelerate`` are the ecosystem's. What this base adds, once for all: batches of groups
(:class:`~rewardalign.data.collate.GroupCollator`), dropout off unless asked, a loss that is a mean over groups
(so transformers does not rescale it by token counts), evaluation by the same loss, metrics buffered as detached
tensors and averaged at each log, NaN skipped (no host-device sync per step), a count of response tokens seen, and an
optional length-grouped sampler.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from ..data.collate import GroupCollator, LengthGroupedSampler, row_length
from ..modeling.loading import disable_dropout
from ..objectives import mean_metrics


def pad_token_id(model: nn.Module, processing_class: Any) -> int:
    pad_id = getattr(processing_class, "pad_token_id", None)
    if pad_id is None:
        pad_id = getattr(model.config, "pad_token_id", None) or 0
    return pad_id


class GroupTrainer(Trainer):
    """A ``Trainer`` on datasets of groups. Subclasses implement ``compute_loss`` and call :meth:`record` with
    their metrics; ``layout`` / ``pack_length`` set the collator's batch layout."""

    def __init__(self, model: nn.Module, args: Any, train_dataset: Any, eval_dataset: Any = None,
                 processing_class: Any = None, *, data_collator: Any = None, dropout: bool = False,
                 group_by_length: bool = False, layout: str = "plain", pack_length: int | None = None,
                 callbacks: list | None = None, **kwargs: Any):
        if not dropout:
            disable_dropout(model)
        self.layout = layout
        self.group_by_length = group_by_length
        if data_collator is None:
            data_collator = GroupCollator(pad_token_id(model, processing_class), layout, pack_length,
                                          getattr(model.config, "_attn_implementation", None))
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, callbacks=callbacks, **kwargs)
        self.model_accepts_loss_kwargs = False  # the loss is a mean over groups, not a sum over tokens
        self._metrics: dict[str, dict[str, list[Any]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._response_tokens = torch.zeros((), dtype=torch.long)

    def record(self, metrics: dict[str, Any], training: bool) -> None:
        """Buffer metric values (tensors stay on the device until the next log)."""
        store = self._metrics["train" if training else "eval"]
        for name, value in metrics.items():
            store[name].append(value.detach() if isinstance(value, torch.Tensor) else value)

    def count_tokens(self, n_tokens: torch.Tensor, mask: torch.Tensor) -> None:
        """Add the batch's response tokens to :attr:`response_tokens_seen` (no sync: summed on the device)."""
        count = n_tokens[mask].sum().detach()
        self._response_tokens = self._response_tokens.to(count.device) + count

    @property
    def response_tokens_seen(self) -> int:
        return int(self._response_tokens)

    def _get_train_sampler(self, train_dataset=None):
        # transformers' own group_by_length reads a dict dataset's input_ids; groups have K sequences.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.group_by_length:
            lengths = [row_length(g, self.layout) for g in dataset.groups]
            return LengthGroupedSampler(lengths, self.args.per_device_train_batch_size, seed=self.args.seed)
        return super()._get_train_sampler(dataset)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        logs.update({prefix + name: value for name, value in mean_metrics(self._metrics[mode]).items()})
        self._metrics[mode].clear()
        super().log(logs, start_time)
