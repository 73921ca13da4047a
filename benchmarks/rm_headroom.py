"""Is the reward model or the data the limit? The demo's reward model against the SFT model's own likelihood.

    python benchmarks/rm_headroom.py [--tasks keyword,examples/tasks/reverse.py:ReverseTask] [--seeds 0,1,2]
                                     [--quick] [--work runs/claims]

On the held-out groups of each world of ``benchmarks/claims.py --stages`` (K samples of the SFT policy per
prompt, with their gold rewards), the share of response pairs with different gold rewards that are ordered as
the gold reward orders them:

- by the demo's reward model (a sequence-classification head on the SFT model, trained on the "human" pairs):
  what the RM quality gate reads;
- by the SFT model's summed response log-probability, log pi_SFT(y | x), EOS included;
- by its mean per token, log pi_SFT(y | x) / |y|.

The SFT model samples at temperature 1, so a mistake in its samples is often a token it found unlikely. When its
likelihood orders the pairs far better than the reward model does, what the reward model lacks is in the model it
starts from, not in the data: the reward model does not learn to read it from its pairs. Prints one row per
task and seed and the mean and standard deviation over seeds; builds any world that is missing (as
``claims.py --stages`` does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import claims
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewardalign.data import load_groups
from rewardalign.data.tokenize import TokenizeConfig, tokenize_groups
from rewardalign.demo.stages import build_world, torch_threads
from rewardalign.evaluate.evaluator import group_logps
from rewardalign.evaluate.metrics import pair_agreement

ORDERINGS = ("reward model", "SFT log-prob, sum", "SFT log-prob, mean per token")


def orderings(root: Path, max_length: int) -> dict[str, float]:
    """The three agreements of :data:`ORDERINGS` on the world at ``root``."""
    groups, _ = load_groups(str(root / "data" / "heldout_rm.jsonl"), format="group")
    tokenizer = AutoTokenizer.from_pretrained(str(root / "sft"))
    model = AutoModelForCausalLM.from_pretrained(str(root / "sft"))
    tokenized, _ = tokenize_groups(groups, tokenizer, TokenizeConfig(max_length=max_length, truncation="drop"))
    if len(tokenized) != len(groups):
        raise SystemExit(f"{root}: {len(groups) - len(tokenized)} held-out groups longer than {max_length} tokens")
    sums = group_logps(model, tokenized, tokenizer.pad_token_id)
    means = [[s / len(ids) for s, ids in zip(row, t.response_ids)] for row, t in zip(sums, tokenized)]
    gold = [g.meta["gold_rewards"] for g in groups]
    return dict(zip(ORDERINGS, (pair_agreement(gold, [g.rewards for g in groups]), pair_agreement(gold, sums),
                                pair_agreement(gold, means))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    claims.add_world_arguments(parser, "keyword,examples/tasks/reverse.py:ReverseTask", "runs/claims")
    args = parser.parse_args(argv)
    tasks = claims.task_list(args.tasks)
    seeds = args.seeds
    print(f"Held-out pairs ordered as the gold reward orders them. Command: python benchmarks/rm_headroom.py "
          f"--tasks {args.tasks} --seeds {','.join(map(str, seeds))}{' --quick' if args.quick else ''} "
          f"--work {args.work}\n")
    print("| task | seed | " + " | ".join(ORDERINGS) + " |\n|---|---|" + "---|" * len(ORDERINGS))
    for task in tasks:
        rows = []
        for seed in seeds:
            cfg = claims.seed_config(seed, args.work, args.quick, task, force=True)
            with torch_threads(cfg.threads):
                build_world(cfg, log=lambda _m: None)
                rows.append(orderings(Path(cfg.output), cfg.max_length))
            print(f"| {task} | {seed} | " + " | ".join(f"{rows[-1][k]:.3f}" for k in ORDERINGS) + " |", flush=True)
        spread = [claims.mean_std([r[k] for r in rows]) for k in ORDERINGS]
        print(f"| {task} | mean ± sd | " + " | ".join(spread) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
