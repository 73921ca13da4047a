"""Training throughput and peak memory: ``rewardalign align`` (AlignTrainer) against TRL's ``DPOTrainer``, and
rewardalign's batch layouts against each other.

    python benchmarks/throughput.py [--quick] [--device cpu|cuda] [--threads 2] [--repeats 2]
    OMP_NUM_THREADS=1 python benchmarks/throughput.py --only dpo-real-shape --threads 1 --repeats 1

Same model (a Llama built from a config and saved once), same data (word-level tokens, so both trainers see
identical token ids), same batch size, objective (dpo, beta 0.1, sigmoid loss), precomputed reference
log-probs on both sides (TRL: ``precompute_ref_log_probs=True``), same precision (float32 on CPU, bf16 autocast
on CUDA), same gradient checkpointing setting (off unless ``--gradient-checkpointing``; TRL's default is on) and
dropout off. Each run trains exactly one epoch of ``batch_size x steps`` groups, so every system trains on the
same response tokens; systems alternate (the order reverses every repeat). Speed is the fastest repeat (load
from other processes only ever slows a run down), memory the median.

Measured, per (workload, system, repeat), in a FRESH subprocess:

- response tokens per second: response tokens trained (counted by each trainer from its batches) over the
  wall time of ``trainer.train()`` (``on_train_begin`` to ``on_train_end``, optimizer steps included); on
  CPU also per CPU-second of the process (all its threads), which other jobs on the machine barely disturb
  (idle OpenMP threads sleep: ``OMP_WAIT_POLICY=PASSIVE`` unless set);
- peak memory: on CPU, the process's peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
  the kernel's high-water mark, which sees torch's CPU allocations that ``tracemalloc`` does not) minus the RSS
  after imports, i.e. everything the run allocated: weights, reference precompute, gradients, optimizer state,
  activations and logits. On CUDA, ``torch.cuda.max_memory_allocated`` during training.
- MFU (CUDA): model FLOPs of the data's unique tokens (6 x parameters x (prompt once + responses) per second)
  over the GPU's peak dense bf16 FLOP/s: the useful work, the same numerator for every system.

Workloads (``_workloads.py``; CPU: a 2-layer Llama, CUDA: a 0.5B one): ``dpo`` (pairs, TRL against the
layouts), ``dpo-150k`` (a 150k vocabulary: memory), ``logprobs-150k`` (the log-prob computation alone, full
logits against the lean path), ``listwise-k4`` (K = 4 groups with prompts 4x the responses: the layouts; TRL
has no listwise objective). Note that on CPU TRL's fused LM head has no Triton and scores every position of its
padded batch (prompt and padding included; on CUDA it scores the completion tokens only), which is part of the
gap measured here and will not carry over to GPUs as is.

``dpo-real-shape`` (CPU, run only when named: ``--only dpo-real-shape``): pairs at a real model's proportions (a
Qwen2-style model with hidden 512, 4 layers and Qwen2.5's 151936 vocabulary; prompts and responses of ~200
tokens, batch 4, precomputed reference), and besides TRL as it runs on CPU, the system ``trl:gpu-path``: a
PROXY of TRL on a GPU, its fused LM head forced onto the path it takes there (``trl.trainer.utils._use_triton``
answers True, so the head projects and scores the completion positions only; the tiles are still folded by
torch ops, not Triton kernels). rewardalign's lead over ``trl:gpu-path`` is the lead a GPU user can expect from
the log-prob computation and the layouts; attention kernels and Triton folding do not enter it.

TRL is an optional dependency of the benchmark only: ``pip install 'rewardalign[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workloads import Workload, cpu_workloads, cuda_workloads, prepare  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------------- worker


def make_clock(device: str):
    import resource

    import torch
    from transformers import TrainerCallback

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    class Clock(TrainerCallback):
        """Wall time of training and of each optimizer step; CUDA peak memory during training."""

        def __init__(self):
            self.steps: list[float] = []
            self.seconds = 0.0
            self.cuda_peak = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.rss_at_start = rss_bytes()
            self.maxrss_at_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            sync()
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            self.start = time.perf_counter()
            self.cpu_start = time.process_time()

        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            self.step_start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.steps.append(time.perf_counter() - self.step_start)

        def on_train_end(self, args, state, control, **kwargs):
            sync()
            self.seconds = time.perf_counter() - self.start
            self.cpu_seconds = time.process_time() - self.cpu_start
            if device == "cuda":
                self.cuda_peak = torch.cuda.max_memory_allocated()

    return Clock()


def run_rewardalign(spec: dict, layout: str, clock, out: Path) -> int:
    from rewardalign.train.align import run_align

    w, info = spec["workload"], spec["info"]
    pairs = w["k"] == 2 and w["objective"] == "dpo"
    config = {
        "model": info["model"], "data": info["pairs"] if pairs else info["groups"],
        "format": "pairs" if pairs else "group", "objective": w["objective"],
        "objective_args": {"beta": 0.1} if w["objective"] == "dpo" else {}, "reference": "precompute",
        "layout": layout, "max_length": 8192, "max_prompt_length": 4096, "output_dir": str(out / "run"),
        "cache_dir": str(out / "cache"), "max_steps": w["steps"], "per_device_train_batch_size": w["batch_size"],
        "per_device_eval_batch_size": w["batch_size"], "learning_rate": 5e-6, "logging_steps": w["steps"],
        "seed": 0, "disable_tqdm": True, "save_strategy": "no", "report_to": "none",
        "gradient_checkpointing": spec["gradient_checkpointing"], "bf16": spec["device"] == "cuda",
    }
    return int(run_align(config, callbacks=[clock])["response_tokens"])


def run_trl(spec: dict, clock, out: Path, gpu_path: bool = False) -> int:
    """TRL's DPOTrainer; ``gpu_path``: its fused LM head forced onto the path it takes on CUDA (a proxy, see the
    module docstring)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    if gpu_path:
        from trl.trainer import utils as trl_utils

        # `add_fused_lm_head` scores only the labelled (completion) positions where `_use_triton(device)` is True
        # (CUDA / XPU with Triton), every position elsewhere; the kernels keep their own check, so on CPU the
        # tiles are still folded by torch ops.
        trl_utils._use_triton = lambda device: True

    class CountingDPOTrainer(DPOTrainer):
        """TRL's trainer, counting the completion (response) tokens of the batches it trains on."""

        response_tokens = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                self.response_tokens += int(inputs["completion_mask"].sum())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    w, info = spec["workload"], spec["info"]
    rows = [json.loads(line) for line in open(info["pairs"])]
    dataset = Dataset.from_list(rows)
    model = AutoModelForCausalLM.from_pretrained(info["model"], dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(info["model"])
    cuda = spec["device"] == "cuda"
    args = DPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=w["batch_size"], max_steps=w["steps"],
        learning_rate=5e-6, beta=0.1, loss_type=["sigmoid"], precompute_ref_log_probs=True,
        precompute_ref_batch_size=w["batch_size"], max_length=None, bf16=cuda, use_cpu=not cuda,
        gradient_checkpointing=spec["gradient_checkpointing"], report_to="none", logging_steps=w["steps"],
        save_strategy="no", seed=0, disable_tqdm=True, disable_dropout=True,
    )
    trainer = CountingDPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                 callbacks=[clock])
    trainer.train()
    return trainer.response_tokens


def run_logprobs(spec: dict, variant: str, clock) -> int:
    """Forward and backward of the response log-probs of every batch, without a trainer: ``full_logits`` (the
    model's [N, T, V] logits, log-softmax, gather) or ``lean`` (:func:`batch_logps`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardalign.data import load_groups
    from rewardalign.data.collate import collate_groups
    from rewardalign.data.tokenize import TokenizeConfig, tokenize_groups
    from rewardalign.modeling.logprobs import batch_logps, plain_batch_logps

    w, info = spec["workload"], spec["info"]
    tokenizer = AutoTokenizer.from_pretrained(info["model"])
    model = AutoModelForCausalLM.from_pretrained(info["model"], dtype=torch.float32)
    groups, _ = load_groups(info["groups"], format="group")
    tokenized, _ = tokenize_groups(groups, tokenizer, TokenizeConfig(max_length=8192, max_prompt_length=4096))
    size = w["batch_size"]
    batches = [collate_groups(tokenized[i: i + size], tokenizer.pad_token_id) for i in range(0, len(tokenized), size)]
    clock.on_train_begin(None, None, None)
    tokens = 0
    for batch in batches:
        clock.on_step_begin(None, None, None)
        out = plain_batch_logps(model, batch) if variant == "full_logits" else batch_logps(model, batch)
        out.logps.sum().backward()
        model.zero_grad(set_to_none=True)
        tokens += int(out.n_tokens.sum())
        clock.on_step_end(None, None, None)
    clock.on_train_end(None, None, None)
    return tokens


def worker(spec: dict) -> dict:
    import resource

    import datasets  # noqa: F401  (the libraries are loaded before the RSS baseline, by every system alike)
    import torch
    from transformers import AutoModelForCausalLM, Trainer  # noqa: F401

    torch.set_num_threads(spec["threads"])
    system = spec["system"]
    if system.startswith("trl"):
        from trl import DPOConfig, DPOTrainer  # noqa: F401
    else:
        from rewardalign.train.align import run_align  # noqa: F401
    baseline = rss_bytes()
    clock = make_clock(spec["device"])
    with tempfile.TemporaryDirectory() as tmp:
        if system.startswith("trl"):
            tokens = run_trl(spec, clock, Path(tmp), gpu_path=system == "trl:gpu-path")
        elif system.startswith("logprobs:"):
            tokens = run_logprobs(spec, system.split(":", 1)[1], clock)
        else:
            tokens = run_rewardalign(spec, system.split(":", 1)[1], clock, Path(tmp))
    if spec["device"] == "cuda":
        peak = clock.cuda_peak
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"system": system, "tokens": tokens, "seconds": clock.seconds, "cpu_seconds": clock.cpu_seconds,
            "steps": clock.steps, "peak": peak,
            "rss_at_train_start": clock.rss_at_start - baseline,
            "peak_before_train": clock.maxrss_at_start - baseline}


# ---------------------------------------------------------------------------------------------------- parent


def run_worker(spec: dict, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
    raise RuntimeError(f"worker {spec['system']} on {spec['workload']['name']} failed (exit {proc.returncode})")


def peak_tflops(args) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    import torch

    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def summarize(w: Workload, info: dict, runs: dict[str, list[dict]], peak_flops: float | None) -> list[dict]:
    rows = []
    for system, results in runs.items():
        tokens = {r["tokens"] for r in results}
        if tokens != {info["response_tokens"]}:
            raise RuntimeError(f"{system} trained on {tokens} response tokens, expected {info['response_tokens']}")
        # The fastest repeat: other load on the machine only ever slows a run down.
        tok_s = max(r["tokens"] / r["seconds"] for r in results)
        row = {"workload": w.name, "system": system, "tok_s": tok_s,
               "tok_cpu_s": max(r["tokens"] / r["cpu_seconds"] for r in results),
               "step_ms": statistics.median(1e3 * statistics.median(r["steps"]) for r in results),
               "peak_mib": statistics.median(r["peak"] for r in results) / 2**20, "repeats": len(results),
               "peak_before_train_mib": statistics.median(r["peak_before_train"] for r in results) / 2**20}
        if peak_flops:
            useful = 6 * info["n_params"] * info["unique_tokens"] / info["response_tokens"]
            row["mfu"] = useful * tok_s / (peak_flops * 1e12)
        rows.append(row)
    base = next(r for r in rows if r["system"] == w.baseline)
    for row in rows:
        row["speed_x"] = row["tok_s"] / base["tok_s"]
        row["cpu_x"] = row["tok_cpu_s"] / base["tok_cpu_s"]
        row["memory_x"] = row["peak_mib"] / base["peak_mib"]
    return rows


def markdown(command: str, workloads: list[Workload], infos: dict, rows: list[dict], device: str) -> str:
    mem = "peak RSS growth (MiB)" if device == "cpu" else "peak CUDA memory (MiB)"
    lines = [f"`{command}`", ""]
    for w in workloads:
        info = infos[w.name]
        lines.append(f"- **{w.name}**: {w.what}; {w.n_groups} groups, batch {w.batch_size}, {w.steps} steps, "
                     f"{info['n_params'] / 1e6:.1f}M parameters; {info['response_tokens']} response tokens, "
                     f"{info['plain_tokens']} tokens with the prompt per response, {info['unique_tokens']} with "
                     f"each prompt once")
    mfu = any("mfu" in r for r in rows)
    cpu = device == "cpu"
    lines += ["", "| workload | system | layout (variant) | response tok/s | x baseline | "
              + ("tok per CPU-s | x baseline | " if cpu else "") + mem + " | x baseline | median step (ms) |"
              + (" MFU |" if mfu else ""),
              "|---|---|---|---:|---:|" + ("---:|---:|" if cpu else "") + "---:|---:|---:|" + ("---:|" if mfu else "")]
    for r in rows:
        system, _, layout = r["system"].partition(":")
        base = next(w.baseline for w in workloads if w.name == r["workload"])
        mark = " (baseline)" if r["system"] == base else ""
        lines.append(f"| {r['workload']} | {system}{mark} | {layout or '-'} | {r['tok_s']:.0f} | "
                     f"{r['speed_x']:.2f} | " + (f"{r['tok_cpu_s']:.0f} | {r['cpu_x']:.2f} | " if cpu else "")
                     + f"{r['peak_mib']:.0f} | {r['memory_x']:.2f} | {r['step_ms']:.0f} |"
                     + (f" {100 * r['mfu']:.1f}% |" if mfu else ""))
    if any(r["system"] == "trl:gpu-path" for r in rows):
        lines.append("\ntrl (gpu-path) is a PROXY: TRL with its fused LM head forced onto the path it takes on a GPU "
                     "(completion positions only), still on the CPU.")
    if cpu:
        early = [f"{r['workload']} {r['system']}" for r in rows if r["peak_before_train_mib"] >= 0.98 * r["peak_mib"]]
        lines.append("\nPeak RSS reached before training (loading, reference precompute) in: "
                     + (", ".join(early) if early else "none: every peak above is set by training."))
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets, as measured in this run."""
    def get(workload, system):
        return next((r for r in rows if r["workload"] == workload and r["system"] == system), None)

    def best(workload):
        ours = [r for r in rows if r["workload"] == workload and r["system"].startswith("rewardalign")]
        return max(ours, key=lambda r: r["tok_s"]) if ours else None

    out = []
    def speed(name: str, ours: dict, base: dict) -> str:
        x = ours["tok_s"] / base["tok_s"]
        line = f"- {name} response tokens per second = {x:.2f} (target >= 1.5): {'met' if x >= 1.5 else 'MISSED'}"
        if "tok_cpu_s" in ours:
            line += f"; per CPU-second {ours['tok_cpu_s'] / base['tok_cpu_s']:.2f}"
        return line

    for workload in ("dpo", "dpo-0.5b", "dpo-real-shape"):
        b, trl = best(workload), get(workload, "trl")
        if b and trl:
            out.append(speed(f"{workload}: rewardalign ({b['system'].split(':')[1]}) / TRL", b, trl))
        proxy = get(workload, "trl:gpu-path")
        if b and proxy:
            out.append(speed(f"{workload}: rewardalign ({b['system'].split(':')[1]}) / TRL on its GPU path (proxy)",
                             b, proxy))
    for workload in ("listwise-k4", "listwise-k4-0.5b"):
        plain, shared = get(workload, "rewardalign:plain"), get(workload, "rewardalign:shared_prompt")
        if plain and shared:
            out.append(speed(f"{workload}: shared_prompt / plain", shared, plain))
    lean, full = get("logprobs-150k", "logprobs:lean"), get("logprobs-150k", "logprobs:full_logits")
    if lean and full:
        out.append(f"- logprobs-150k (measured, no target): lean / full-logits log-prob computation: "
                   f"{lean['speed_x']:.2f}x the speed, {lean['memory_x']:.2f}x the peak memory")
    for workload in ("dpo-150k", "dpo-0.5b", "dpo-real-shape"):
        b = best(workload)
        for base, label in (("trl", "TRL"), ("trl:gpu-path", "TRL on its GPU path (proxy)")):
            trl = get(workload, base)
            if not (b and trl):
                continue
            ours = min((r for r in rows if r["workload"] == workload and r["system"].startswith("rewardalign")),
                       key=lambda r: r["peak_mib"])
            x = ours["peak_mib"] / trl["peak_mib"]
            out.append(f"- {workload}: rewardalign ({ours['system'].split(':')[1]}) / {label} peak memory = {x:.2f} "
                       f"(target <= 0.7): {'met' if x <= 0.7 else 'MISSED'}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps, one repeat")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every run")
    parser.add_argument("--repeats", type=int, default=None, help="runs per system (default 2, 1 with --quick)")
    parser.add_argument("--only", nargs="*", help="workload names to run")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="on for both trainers")
    parser.add_argument("--peak-tflops", type=float, help="GPU peak dense bf16 TFLOP/s for MFU")
    parser.add_argument("--workdir", help="where the models and data go (default: a temporary folder)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0

    command = "python benchmarks/throughput.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    root = Path(args.workdir or tempfile.mkdtemp(prefix="rewardalign-bench-"))
    try:
        return run_all(args, command, root)
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


def run_all(args: argparse.Namespace, command: str, root: Path) -> int:
    repeats = args.repeats or (1 if args.quick else 2)
    workloads = (cuda_workloads if args.device == "cuda" else cpu_workloads)(args.quick)
    if args.only:
        workloads = [w for w in workloads if w.name in args.only]
    else:  # optional workloads (dpo-real-shape) run only when named
        workloads = [w for w in workloads if not w.optional]
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
                        "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_CACHE": str(root / "hf-datasets"),
                        "TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore",
                        # Idle OpenMP threads sleep instead of spinning: on a machine shared with other jobs a
                        # spinning 2-thread run is up to 10x slower whenever another process takes a core.
                        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    peak = peak_tflops(args) if args.device == "cuda" else None
    started = time.perf_counter()
    rows, infos = [], {}
    for w in workloads:
        infos[w.name] = info = prepare(w, root)
        runs: dict[str, list[dict]] = {s: [] for s in w.systems}
        for rep in range(repeats):
            for system in (w.systems if rep % 2 == 0 else w.systems[::-1]):
                spec = {"system": system, "workload": w.__dict__, "info": info, "device": args.device,
                        "threads": args.threads, "gradient_checkpointing": args.gradient_checkpointing}
                result = run_worker(spec, env)
                runs[system].append(result)
                print(f"  {w.name:>12} {system:<36} {result['tokens'] / result['seconds']:8.0f} tok/s "
                      f"{result['tokens'] / result['cpu_seconds']:8.0f} tok/cpu-s "
                      f"{result['peak'] / 2**20:8.0f} MiB", file=sys.stderr, flush=True)
        rows += summarize(w, info, runs, peak)
    print(markdown(command, workloads, infos, rows, args.device))
    print("\nTargets (ratios measured side by side in this run):")
    print("\n".join(targets(rows)))
    print(f"\n{len(rows)} configurations, {repeats} repeat(s), {args.threads} threads, "
          f"{time.perf_counter() - started:.0f} s in all.")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
