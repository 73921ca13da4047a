"""UNA online against RLOO on the gym, with the same sampling budget: gold reward against steps, held-out gold
reward and KL of the final policy, wall time per step and peak memory, over several seeds.

    python benchmarks/online.py [--quick] [--task arithmetic] [--seeds 0 1 2] [--steps 200] [--threads 1]

Paper 003 (Sec. 2.3.4, Tables 4-6) claims that UNA's supervised step (regress sigma(beta * log pi/pi_ref) of each
sample onto its score) beats PPO with less memory and time. PPO's extra cost is its value model; RLOO
(Ahmadian et al. 2024) has none, so against RLOO the comparison isolates the loss: both methods run the same
rollout (same prompts per step, same K, same steps, same sampler, same seeds), only the objective differs.

Setup. A tiny Llama (2 layers, hidden 64) and a BPE tokenizer are trained from scratch by ``rewardalign sft`` on
the task's imperfect demonstrations (cached in ``--cache-dir``, shared by every run). Each online run starts
from it, in a FRESH subprocess (``--worker``), rewarded by the task's gold reward (``gym:<task>``, in [0, 1]);
UNA reads the score s = r (min-max on the task's declared range [0, 1]), RLOO the raw reward.

Measured per (method, seed):

- gold reward of the step's own samples (``objective/reward``), averaged over the first, middle and last tenth
  of the steps (a learning curve of the policy as it samples);
- held-out gold reward: 4 samples (temperature 1) on each of ``--eval-prompts`` prompts of another seed, after
  training; KL(pi || pi_sft) estimated on those samples (mean of log pi - log pi_sft);
- seconds per step: median over steps of the optimiser step's wall time (``on_step_begin`` to ``on_step_end``:
  sampling, scoring, policy and reference passes, backward, optimiser);
- peak memory: the process's peak RSS during training (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) minus its
  RSS after imports, i.e. everything the run allocated (policy, reference copy, optimiser state, activations,
  generation caches).

Mean and standard deviation across seeds; the SFT policy's held-out gold reward is the baseline row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = {
    "UNA (una_score_mse, beta 0.1)": {"algorithm": "una", "objective_args": {"beta": 0.1}, "transform": "minmax"},
    "UNA (una_score_mse, beta 0.03)": {"algorithm": "una", "objective_args": {"beta": 0.03}, "transform": "minmax"},
    "RLOO (kl_coef 0.05)": {"algorithm": "rloo", "objective_args": {"kl_coef": 0.05}},
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------------- worker


def heldout(spec: dict, model_dir: str, reference: str | None) -> dict:
    from rewardalign.evaluate.evaluator import evaluate_model
    from rewardalign.gym import get_task, make_prompts
    from rewardalign.modeling.generation import SamplingConfig

    task = get_task(spec["task"])
    prompts = make_prompts(task, spec["eval_prompts"], seed=10_000)
    sampling = SamplingConfig(n_samples=4, max_new_tokens=task.max_new_tokens, seed=1, batch_size=512)
    out = evaluate_model(model_dir, prompts, f"gym:{spec['task']}", reference=reference,
                         sampling=sampling)
    return {"heldout_reward": out["reward_mean"], "kl": out.get("kl")}


def worker(spec: dict) -> dict:
    import resource

    import torch
    from transformers import TrainerCallback

    from rewardalign.train.online import run_online

    torch.set_num_threads(spec["threads"])
    if spec.get("eval_only"):
        return heldout(spec, spec["model"], None)

    class Clock(TrainerCallback):
        def __init__(self):
            self.steps: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(time.perf_counter() - self.start)

    baseline = rss_bytes()
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        config = {
            "model": spec["model"], "prompts": f"gym:{spec['task']}", "max_prompts": 2000,
            "reward": f"gym:{spec['task']}", **spec["method"], "n_samples": spec["k"],
            "max_new_tokens": spec["max_new_tokens"], "sampler": "hf", "output_dir": str(Path(tmp) / "run"),
            "max_steps": spec["steps"], "per_device_train_batch_size": spec["prompts_per_step"],
            "learning_rate": spec["lr"], "lr_scheduler_type": "linear", "logging_steps": spec["log_every"],
            "seed": spec["seed"], "disable_tqdm": True, "save_strategy": "no",
        }
        run_online(config, callbacks=[clock])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
        curve = [(r["step"], r["objective/reward"], r.get("objective/kl"))
                 for r in map(json.loads, open(Path(tmp) / "run" / "metrics.jsonl")) if "objective/reward" in r]
        result = heldout(spec, str(Path(tmp) / "run"), spec["model"])
    return result | {"curve": curve, "step_seconds": statistics.median(clock.steps), "peak": peak}


# ---------------------------------------------------------------------------------------------------- parent


def run_worker(spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
    raise RuntimeError(f"worker failed (exit {proc.returncode}): {spec.get('name', 'eval')} seed {spec.get('seed')}")


def sft_policy(args) -> str:
    """Train (once) the SFT policy every run starts from; cached under a key of its settings."""
    settings = {"task": args.task, "examples": 4000, "steps": args.sft_steps, "hidden": 64, "layers": 2,
                "vocab": 256, "lr": 3e-3, "batch": 32, "seed": 0}
    key = "-".join(str(v) for v in settings.values())
    root = Path(args.cache_dir) / f"sft-{key}"
    if (root / "model" / "config.json").is_file():
        return str(root / "model")
    import torch

    from rewardalign.gym import get_task, make_sft_data, write_jsonl
    from rewardalign.train.sft import run_sft

    torch.set_num_threads(args.threads)
    rows = [{"prompt": r["prompt"], "responses": [r["response"]]}
            for r in make_sft_data(get_task(args.task), settings["examples"], seed=0)]
    write_jsonl(rows, root / "sft.jsonl")
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's logs: stdout holds only the table
            run_sft({"model_init": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "vocab_size": 256},
                 "data": str(root / "sft.jsonl"), "format": "group", "max_length": 48,
                 "output_dir": str(root / "model"), "max_steps": args.sft_steps, "per_device_train_batch_size": 32,
                 "learning_rate": 3e-3, "lr_scheduler_type": "cosine", "warmup_steps": 20, "logging_steps": 1000,
                 "seed": 0, "disable_tqdm": True, "save_strategy": "no"})
    print(f"SFT policy trained in {time.perf_counter() - start:.0f} s -> {root / 'model'}", file=sys.stderr)
    return str(root / "model")


def fmt(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def window(curve: list, part: str) -> float:
    """Mean logged reward over the first, middle or last tenth of the logs (each log is a mean of steps)."""
    n = max(1, len(curve) // 10)
    start = {"first": 0, "middle": len(curve) // 2 - n // 2, "last": len(curve) - n}[part]
    values = [reward for _, reward, _ in curve[start: start + n]]
    return statistics.fmean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer SFT and online steps, fewer held-out prompts")
    parser.add_argument("--task", default="arithmetic", choices=["arithmetic", "sort", "keyword"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="online steps (default 200; 60 with --quick)")
    parser.add_argument("--sft-steps", type=int, default=None, help="SFT steps (default 1500; 400 with --quick)")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--k", type=int, default=4, help="samples per prompt")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-prompts", type=int, default=None, help="held-out prompts (default 300; 100 quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1 is fastest for a tiny "
                                                                "model and steadiest on a shared machine)")
    parser.add_argument("--cache-dir", default=".cache/rewardalign/bench-online")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))))
        return
    args.steps = args.steps or (60 if args.quick else 200)
    args.sft_steps = args.sft_steps or (400 if args.quick else 1500)
    args.eval_prompts = args.eval_prompts or (100 if args.quick else 300)
    command = "python benchmarks/online.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    started = time.perf_counter()

    from rewardalign.gym import get_task

    model = sft_policy(args)
    common = {"task": args.task, "model": model, "threads": args.threads, "eval_prompts": args.eval_prompts}
    sft = run_worker(common | {"eval_only": True})
    results: dict[str, list[dict]] = {name: [] for name in METHODS}
    for i, seed in enumerate(args.seeds):
        order = list(METHODS) if i % 2 == 0 else list(reversed(METHODS))  # alternate the order across seeds
        for name in order:
            spec = common | {"name": name, "method": METHODS[name], "seed": seed, "steps": args.steps,
                             "prompts_per_step": args.prompts_per_step, "k": args.k, "lr": args.lr,
                             "max_new_tokens": get_task(args.task).max_new_tokens,
                             "log_every": max(1, args.steps // 20)}
            results[name].append(run_worker(spec))
            print(f"  {name} seed {seed}: held-out {results[name][-1]['heldout_reward']:.3f}", file=sys.stderr)

    lines = [
        f"`{command}`",
        "",
        f"Task `{args.task}` (gold reward in [0, 1]); {len(args.seeds)} seeds {args.seeds}; {args.steps} steps of "
        f"{args.prompts_per_step} prompts x K = {args.k} samples (temperature 1), lr {args.lr:g} linear decay; "
        f"SFT policy: {args.sft_steps} steps; held-out: {args.eval_prompts} prompts x 4 samples; "
        f"{args.threads} torch thread(s) per run. Mean ± std across seeds.",
        "",
        "| method | sample reward, first 10% | middle 10% | last 10% | held-out gold reward | KL(pi ‖ pi_sft) "
        "| s / step | peak RSS (MiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| SFT policy (start) | | | | {sft['heldout_reward']:.3f} | 0 | | |",
    ]
    for name, runs in results.items():
        lines.append(
            f"| {name} | {fmt([window(r['curve'], 'first') for r in runs])} "
            f"| {fmt([window(r['curve'], 'middle') for r in runs])} | {fmt([window(r['curve'], 'last') for r in runs])} "
            f"| {fmt([r['heldout_reward'] for r in runs])} | {fmt([r['kl'] for r in runs], 2)} "
            f"| {fmt([r['step_seconds'] for r in runs], 4)} | {fmt([r['peak'] / 2**20 for r in runs], 0)} |")
    lines += ["", f"Total wall time {time.perf_counter() - started:.0f} s (SFT cached after the first run)."]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "sft": sft, "results": results}, indent=1))


if __name__ == "__main__":
    main()
