"""Optional vLLM sampling for online runs, used only where ``vllm`` is importable and CUDA is available.

Nothing here is imported unless ``sampler: vllm`` is asked for, or ``sampler: auto`` finds both (see
:func:`vllm_usable`). UNTESTED in this project's suite: the test machines have neither vLLM nor a GPU; the HF
sampler (:class:`rewardalign.train.online.HFSampler`) is the tested path.

Each step the policy's current weights are pushed into the vLLM engine (``load_weights`` on the engine's
model), then the K samples of each prompt are drawn from the same prompt ids the HF sampler would use (rendered
as training renders them), with the step's seed, pure sampling (top_k off), stopping at the stop tokens. The
returned :class:`~rewardalign.modeling.generation.Samples` have the same contract as the HF sampler's: response
ids end with their stop token when the response finished, texts are decoded without special tokens.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..config import ConfigError
from ..data.schema import Text
from .generation import Samples, SamplingConfig, cut_at_stop, encode_prompt, stop_token_ids


def vllm_usable() -> bool:
    """True when ``vllm`` is installed and a CUDA device is available (checked without importing vllm)."""
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


class VLLMSampler:
    """Samples with a colocated vLLM engine holding a copy of the policy (``gpu_memory_utilization`` of the
    GPU). ``model_path`` is the initial policy's directory; weights are synced from the trained policy before
    every sampling call."""

    name = "vllm"

    def __init__(self, model_path: str, tokenizer: Any, gpu_memory_utilization: float = 0.3,
                 dtype: str = "auto", max_model_len: int | None = None, chat_template: str = "auto",
                 max_prompt_length: int | None = None):
        if not vllm_usable():
            raise ConfigError("sampler: vllm needs the vllm package and a CUDA device; use sampler: hf")
        from vllm import LLM

        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.max_prompt_length = max_prompt_length
        self.llm = LLM(model=model_path, tokenizer=model_path, gpu_memory_utilization=gpu_memory_utilization,
                       dtype=dtype, max_model_len=max_model_len, enable_prefix_caching=True)

    def _engine_model(self) -> Any:
        engine = self.llm.llm_engine
        for path in ("model_executor.driver_worker.model_runner.model",
                     "model_executor.driver_worker.worker.model_runner.model"):
            obj = engine
            try:
                for attr in path.split("."):
                    obj = getattr(obj, attr)
                return obj
            except AttributeError:
                continue
        raise RuntimeError("cannot reach the vLLM engine's model to sync weights (unsupported vLLM version); "
                           "use sampler: hf")

    @torch.no_grad()
    def sync(self, model: nn.Module) -> None:
        if hasattr(model, "peft_config"):
            raise ConfigError("sampler: vllm does not sync LoRA adapters; use sampler: hf with lora")
        self._engine_model().load_weights(model.state_dict().items())

    def sample(self, model: nn.Module, prompts: Sequence[Text], cfg: SamplingConfig) -> Samples:
        from vllm import SamplingParams

        self.sync(model)
        stop = stop_token_ids(self.tokenizer, model)
        prompt_ids = [encode_prompt(self.tokenizer, p, self.chat_template, self.max_prompt_length) for p in prompts]
        params = SamplingParams(n=cfg.n_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                                top_k=cfg.top_k if cfg.top_k > 0 else -1, max_tokens=cfg.max_new_tokens,
                                seed=cfg.seed, stop_token_ids=stop, detokenize=False)
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
        out = Samples(prompts=list(prompts), prompt_ids=prompt_ids, response_ids=[], texts=[], finished=[])
        for request in outputs:
            ids_row, text_row, done_row = [], [], []
            for completion in request.outputs:
                ids, finished = cut_at_stop(list(completion.token_ids), stop)
                if not finished and completion.finish_reason == "stop":
                    ids, finished = ids + [stop[0]], True  # a stop token vLLM left out of the output
                ids_row.append(ids)
                done_row.append(finished)
                text_row.append(self.tokenizer.decode(ids[:-1] if finished else ids, skip_special_tokens=True))
            out.response_ids.append(ids_row)
            out.texts.append(text_row)
            out.finished.append(done_row)
        return out
