"""One rank of tests/test_fsdp.py (``torchrun --standalone --nproc_per_node 2 fsdp_worker.py OUT_DIR``).

Each case runs a tiny model once unsharded and once sharded with FSDP2 exactly as ``accelerate`` shards it
(``fsdp2_prepare_model``: each decoder layer a unit, the LM head and final norm a unit kept unsharded after the
forward, the root), on the same batch, and writes the largest difference of the outputs and of every gradient
(the sharded ones gathered) to ``OUT_DIR/rank<r>.json``.
"""

from __future__ import annotations

import copy
import json
import sys
import types
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_prepare_model
from transformers import LlamaForCausalLM, LlamaForSequenceClassification

from rewardalign.data.collate import collate_groups
from rewardalign.data.tokenize import TokenizedGroup
from rewardalign.modeling.logprobs import batch_logps
from rewardalign.modeling.tiny import build_tiny_tokenizer, tiny_config
from rewardalign.rewards.models import OracleRewardModel

GROUPS = [TokenizedGroup(prompt_ids=[5, 6, 7], response_ids=[[8, 9, 2], [10, 11, 12, 2]]),
          TokenizedGroup(prompt_ids=[5, 9], response_ids=[[7, 2], [13, 14, 2], [15, 2]])]


def shard(model: torch.nn.Module, rank: int) -> torch.nn.Module:
    """``model`` sharded by accelerate's own FSDP2 preparation with the wrapping of
    examples/recipes/accelerate/fsdp.yaml (decoder layers as units, resharded after the forward), in float32
    (accelerate reads only the plugin and these attributes of the accelerator)."""
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=["LlamaDecoderLayer"],
        reshard_after_forward=True, state_dict_type="FULL_STATE_DICT")
    accelerator = types.SimpleNamespace(device=torch.device("cpu"), is_main_process=rank == 0, mixed_precision="no",
                                        state=types.SimpleNamespace(fsdp_plugin=plugin), torch_device_mesh=None)
    return fsdp2_prepare_model(accelerator, model)


def compare(model: torch.nn.Module, run, rank: int) -> dict[str, float]:
    """Largest |sharded - unsharded| of ``run(model)``'s outputs and of every parameter's gradient."""
    plain = copy.deepcopy(model)
    want = run(plain)
    sum(w.sum() for w in want).backward()
    sharded = shard(model, rank)
    got = run(sharded)
    sum(g.sum() for g in got).backward()
    diffs = {"outputs": max((g - w).abs().max().item() for g, w in zip(got, want))}
    grads = dict(plain.named_parameters())
    for name, param in sharded.named_parameters():
        grad = param.grad.full_tensor() if hasattr(param.grad, "full_tensor") else param.grad
        diffs[name] = (grad - grads[name].grad).abs().max().item()
    return diffs


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    tokenizer = build_tiny_tokenizer(["add 1 and 2 = 3", "sort 3 1 2 : 1 2 3", "hello world"] * 20, vocab_size=300)
    batch = collate_groups(GROUPS, tokenizer.pad_token_id)
    results = {}
    for case, tied, softcap in (("tied head", True, None), ("untied head", False, None),
                                ("soft-capped logits", False, 30.0)):
        config = tiny_config(tokenizer, hidden_size=32, num_layers=2, num_heads=4)
        config.tie_word_embeddings = tied
        config.final_logit_softcapping = softcap  # read by the log-prob path only: its generic, unfused path
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        results[case] = compare(model, lambda m: [batch_logps(m, batch, chunk_size=4).logps], rank)

    config = tiny_config(tokenizer, hidden_size=32, num_layers=2, num_heads=4, num_labels=1)
    torch.manual_seed(0)
    oracle = OracleRewardModel(LlamaForSequenceClassification(config), chunk_size=4)
    rows = torch.tensor([True, False, True, True, False])

    def oracle_run(m):
        out = m(batch["input_ids"], batch["attention_mask"], response_mask=batch["response_mask"], nll_rows=rows)
        return [out.logits, out.nll]

    results["oracle reward model"] = compare(oracle, oracle_run, rank)
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
