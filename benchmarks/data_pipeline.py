"""The data pipeline: time to the first optimizer step, cold and warm cache, against the tokenisation floor and TRL.

    python benchmarks/data_pipeline.py [--prompts 20000] [--procs 2] [--systems floor,rewardalign,trl]

UltraFeedback-shaped data is generated (no download): N prompts of about 120 tokens, each with 4 completions
of about 270 tokens rated 1..10 (``overall_score``), and the pairs TRL trains on (chosen = the best-rated
completion, rejected = the worst). A 32k byte-level BPE is trained with ``tokenizers`` on the generated text,
and a tiny Llama (hidden 64, 2 layers, the 32k vocabulary) is built from a config, so model time does not
dominate. Everything lands under ``--work`` and is reused by later runs of the same size.

Measured, each in a fresh subprocess, side by side in one run:

- ``floor``: plain batched tokenisation of the same texts (every prompt once, every response once) with the
  same tokenizer in the same number of processes: the fast tokenizer's batch call on lists of 1000 texts in
  ``--procs`` forked processes, after the texts are in memory. Nothing is kept, converted or written.
- ``rewardalign``: ``run_align`` with ``objective: simpo``, ``max_steps: 1`` on the UltraFeedback file
  (K = 4 groups) and on the pairs file (K = 2), from process launch to the end of the first optimizer
  step; ``cold``: an empty cache directory, ``warm``: the same directory again. The pipeline tokenises this
  plain text in its own process on the fast tokenizer's threads, ``--procs`` of them (``RAYON_NUM_THREADS``).
- ``imports``: a process that imports torch and transformers' model code and stops: the floor under any
  first step of a trainer built on them, warm cache or not.
- ``trl``: TRL's ``DPOTrainer`` on the pairs file (``load_dataset("json")``, ``dataset_num_proc=--procs``),
  same model, batch size (``--batch-size``, default 1 group or pair: model time is not what is measured) and
  ``max_length``; cold: an empty ``HF_DATASETS_CACHE``, warm: the same again.

Each run reports wall seconds from launch to the first step, the same after the imports (``from import``),
the CPU seconds of the process and its children, and peak memory: the largest resident set of the process
tree sampled every 0.1 s (``tree RSS``, the concurrent tokenising workers counted together, their pages
shared with the parent counted again in each), the same as proportional set size (``tree PSS``, shared pages
split among the processes) and the largest single process (``getrusage`` maxrss). The machine's load average is recorded with each run: other processes
on a shared machine slow a run's wall time down, its CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
K = 4
MAX_LENGTH = 1024


# ------------------------------------------------------------------------------------------------ data


def generate(n_prompts: int, path: Path, seed: int = 0) -> None:
    """UltraFeedback-shaped JSON Lines: instruction, 4 completions (response, overall_score 1..10)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    syllables = np.array(["ka", "to", "ri", "en", "an", "the", "ing", "er", "on", "al", "re", "st", "de", "co",
                          "mi", "pro", "ver", "tion", "sh", "qu", "lo", "ne", "ar", "is", "un", "pe", "la", "ti",
                          "mo", "ba", "sel", "gra", "fu", "ic", "ous", "ment"])
    vocab: set[str] = set()
    while len(vocab) < 30000:
        parts = rng.integers(0, len(syllables), size=int(rng.choice([1, 2, 2, 3, 3, 4])))
        vocab.add("".join(syllables[parts]))
    words = np.array(sorted(vocab), dtype=object)
    zipf = 1.0 / np.arange(1, len(words) + 1) ** 1.05
    zipf /= zipf.sum()
    suffixes = np.array(["", ",", ".", ".\n\n", ":\n- ", " (", ")"], dtype=object)
    suffix_p = [0.86, 0.06, 0.05, 0.015, 0.005, 0.005, 0.005]

    def texts(lengths: np.ndarray, ends: list[str]) -> list[str]:
        total = int(lengths.sum())
        tokens = words[rng.choice(len(words), size=total, p=zipf)]
        numbers = rng.random(total) < 0.02
        tokens[numbers] = rng.integers(0, 2000, size=int(numbers.sum())).astype(str)
        tokens = tokens + suffixes[rng.choice(len(suffixes), size=total, p=suffix_p)]
        out, at = [], 0
        for n, end in zip(lengths.tolist(), ends):
            piece = tokens[at: at + n]
            at += n
            text = " ".join(piece.tolist()).rstrip(" ,.:(-\n")
            out.append(text[:1].upper() + text[1:] + end)
        return out

    prompts = texts(rng.integers(70, 140, size=n_prompts),
                    rng.choice(["?", ".", ":\n", "?\n"], size=n_prompts, p=[0.55, 0.3, 0.1, 0.05]).tolist())
    responses = texts(rng.integers(160, 300, size=n_prompts * K),
                      rng.choice([".", "!", ".\n"], size=n_prompts * K, p=[0.8, 0.1, 0.1]).tolist())
    scores = rng.integers(1, 11, size=(n_prompts, K))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i, prompt in enumerate(prompts):
            completions = [{"model": f"model-{k}", "response": responses[i * K + k],
                            "overall_score": float(scores[i, k])} for k in range(K)]
            f.write(json.dumps({"source": "synthetic", "instruction": prompt, "completions": completions}) + "\n")


def write_pairs(uf: Path, path: Path) -> None:
    """The pairs of the UltraFeedback file: chosen = the best-rated completion, rejected = the worst."""
    with uf.open() as f, path.open("w") as out:
        for line in f:
            row = json.loads(line)
            ranked = sorted(row["completions"], key=lambda c: -c["overall_score"])
            out.write(json.dumps({"prompt": row["instruction"], "chosen": ranked[0]["response"],
                                  "rejected": ranked[-1]["response"]}) + "\n")


def prepare(work: Path, n_prompts: int) -> dict[str, str]:
    """Data, pairs, tokenizer and model under ``work`` (reused when present)."""
    data = work / f"ultrafeedback-{n_prompts}.jsonl"
    pairs = work / f"pairs-{n_prompts}.jsonl"
    model = work / f"model-{n_prompts}"
    if not data.is_file():
        t = time.time()
        generate(n_prompts, data.with_suffix(".partial"))
        data.with_suffix(".partial").rename(data)
        print(f"generated {data} in {time.time() - t:.0f} s", flush=True)
    if not pairs.is_file():
        write_pairs(data, pairs)
    if not (model / "config.json").is_file():
        sys.path.insert(0, str(ROOT / "src"))
        from rewardalign.modeling.tiny import build_tiny_model, build_tiny_tokenizer

        t = time.time()
        sample = []
        with data.open() as f:
            for _, line in zip(range(3000), f):
                row = json.loads(line)
                sample += [row["instruction"]] + [c["response"] for c in row["completions"]]
        tokenizer = build_tiny_tokenizer(sample, vocab_size=32000)
        net = build_tiny_model(tokenizer, hidden_size=64, num_layers=2, num_heads=4,
                               max_position_embeddings=MAX_LENGTH)
        model.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(model)
        net.save_pretrained(model)
        print(f"tokenizer (32k byte-level BPE) and model built in {time.time() - t:.0f} s", flush=True)
    return {"data": str(data), "pairs": str(pairs), "model": str(model)}


# ------------------------------------------------------------------------------------------- children


def _usage() -> dict[str, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
            "maxrss_gb": max(me.ru_maxrss, kids.ru_maxrss) / 2**20}


def _finish(spec: dict, result: dict) -> None:
    Path(spec["out"]).write_text(json.dumps(result | _usage()))
    sys.stdout.flush()
    os._exit(0)  # the first step is what is measured: skip saving and shutdown


def _first_step_callback(spec: dict, result: dict):
    from transformers import TrainerCallback

    class FirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            result["first_step_s"] = time.time() - spec["launch"]
            _finish(spec, result)

    return FirstStep()


_FLOOR: dict = {}  # the texts and tokenizer, set before the worker processes fork


def _floor_work(bounds: tuple[int, int]) -> int:
    tokenizer, texts = _FLOOR["tokenizer"], _FLOOR["texts"]
    if _FLOOR["procs"] > 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per process, as the pipeline's workers
    n = 0
    for start in range(bounds[0], bounds[1], 1000):
        chunk = texts[start: min(start + 1000, bounds[1])]
        for special in (True, False):
            batch = [t for t, s in chunk if s == special]
            if batch:
                n += sum(map(len, tokenizer(batch, add_special_tokens=special)["input_ids"]))
    return n


def child_floor(spec: dict) -> None:
    from multiprocessing import get_context

    from transformers import AutoTokenizer

    prompts, responses = [], []
    with open(spec["data"]) as f:
        for line in f:
            row = json.loads(line)
            if "completions" in row:
                prompts.append(row["instruction"])
                responses += [c["response"] for c in row["completions"]]
            else:
                prompts.append(row["prompt"])
                responses += [row["chosen"], row["rejected"]]
    # prompts with the tokenizer's special tokens, responses without: as the pipeline tokenises them
    texts = [(t, True) for t in prompts] + [(t, False) for t in responses]
    procs = spec["procs"]
    _FLOOR.update(tokenizer=AutoTokenizer.from_pretrained(spec["model"]), texts=texts, procs=procs)
    before = _usage()["cpu_s"]
    t = time.time()
    if procs == 1:
        tokens = _floor_work((0, len(texts)))
    else:
        step = -(-len(texts) // procs)
        with get_context("fork").Pool(procs) as pool:
            tokens = sum(pool.map(_floor_work, [(i, min(i + step, len(texts))) for i in range(0, len(texts), step)]))
    result = {"tokenise_s": time.time() - t, "tokens": tokens, "texts": len(texts)}
    result["first_step_s"] = result["tokenise_s"]
    usage = _usage()
    Path(spec["out"]).write_text(json.dumps(result | {"cpu_s": usage["cpu_s"] - before,
                                                      "maxrss_gb": usage["maxrss_gb"]}))


def child_rewardalign(spec: dict) -> None:
    # The pipeline tokenises plain text in this process on the fast tokenizer's threads: as many as the
    # floor's processes (rayon reads this before its first parallel call).
    os.environ["RAYON_NUM_THREADS"] = str(spec["procs"])
    sys.path.insert(0, str(ROOT / "src"))
    from rewardalign.train import align, data

    result: dict = {"imported_s": time.time() - spec["launch"], "imported_cpu_s": _usage()["cpu_s"]}
    prepare_dataset = data.prepare_dataset

    def timed(*args, **kwargs):
        t, cpu = time.time(), _usage()["cpu_s"]
        out = prepare_dataset(*args, **kwargs)
        result["data_s"] = result.get("data_s", 0.0) + time.time() - t
        result["data_cpu_s"] = result.get("data_cpu_s", 0.0) + _usage()["cpu_s"] - cpu
        result["groups"] = len(out[0])
        result["tokenize"] = out[1].as_dict()
        return out

    data.prepare_dataset = timed  # what run_align's data preparation calls
    config = {
        "model": spec["model"], "data": spec["data"], "objective": "simpo", "max_steps": 1,
        "max_length": MAX_LENGTH, "per_device_train_batch_size": spec["batch_size"], "learning_rate": 1e-5,
        "output_dir": spec["output_dir"], "cache_dir": spec["cache_dir"], "report_to": "none",
        "save_strategy": "no", "logging_steps": 1, "seed": 0, "disable_tqdm": True, "overwrite_output_dir": True,
    }
    align.run_align(config, callbacks=[_first_step_callback(spec, result)])


def child_imports(spec: dict) -> None:
    """The import floor of any trainer built on transformers: torch and transformers' model code, nothing else."""
    import torch  # noqa: F401
    import transformers.modeling_utils  # noqa: F401

    _finish(spec, {"first_step_s": time.time() - spec["launch"]})


def child_trl(spec: dict) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    result: dict = {"imported_s": time.time() - spec["launch"], "imported_cpu_s": _usage()["cpu_s"]}
    t, cpu = time.time(), _usage()["cpu_s"]
    dataset = datasets.load_dataset("json", data_files=spec["data"], split="train")
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"])
    args = DPOConfig(
        output_dir=spec["output_dir"], per_device_train_batch_size=spec["batch_size"], max_steps=1, learning_rate=1e-5,
        beta=0.1, max_length=MAX_LENGTH, dataset_num_proc=spec["procs"] if spec["procs"] > 1 else None,
        gradient_checkpointing=False, report_to="none", logging_steps=1, save_strategy="no", seed=0,
        disable_tqdm=True, use_cpu=True,
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[_first_step_callback(spec, result)])
    result["data_s"] = time.time() - t  # TRL's trainer tokenises (and loads the reference model) on creation
    result["data_cpu_s"] = _usage()["cpu_s"] - cpu
    result["groups"] = len(trainer.train_dataset)
    trainer.train()


CHILDREN = {"floor": child_floor, "rewardalign": child_rewardalign, "trl": child_trl, "imports": child_imports,
            "prepare": lambda spec: prepare(Path(spec["work"]), spec["prompts"])}


# --------------------------------------------------------------------------------------------- driver


def run_child(kind: str, spec: dict, env: dict[str, str] | None = None, timeout: float = 3600) -> dict:
    """Run one measurement in a fresh interpreter, sampling its process tree's memory."""
    import psutil

    out = Path(spec["output_dir"]) / "result.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    load_before = os.getloadavg()[0]
    spec = spec | {"out": str(out), "launch": time.time()}
    proc = subprocess.Popen([sys.executable, __file__, "--child", kind, "--spec", json.dumps(spec)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = peak_pss = 0
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout.read().decode(errors="replace").splitlines()))
    reader.start()
    handle = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [handle] + handle.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            # PSS shares the pages forked workers have in common with their parent out among them
            peak_pss = max(peak_pss, sum(p.memory_full_info().pss for p in tree if p.is_running()))
        except (psutil.Error, AttributeError):
            pass
        if time.time() - spec["launch"] > timeout:
            proc.kill()
        time.sleep(0.1)
    reader.join()
    if not out.is_file():
        tail = "\n".join(lines[-30:])
        return {"error": f"{kind} failed (exit {proc.returncode}):\n{tail}"}
    result = json.loads(out.read_text())
    result["tree_rss_gb"] = peak / 2**30
    result["tree_pss_gb"] = peak_pss / 2**30 if peak_pss else None
    result["load"] = round((load_before + os.getloadavg()[0]) / 2, 1)
    return result


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=20000, help="prompts (groups) to generate: 20000, 60000")
    parser.add_argument("--procs", type=int, default=2, help="processes for tokenisation (every system)")
    parser.add_argument("--batch-size", type=int, default=1, help="groups (pairs) of the first step")
    parser.add_argument("--systems", default="imports,floor,rewardalign,rewardalign-pairs,trl")
    parser.add_argument("--work", type=Path, default=Path(".cache/bench/data_pipeline"),
                        help="where data, model and runs go (reused across runs)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        CHILDREN[args.child](json.loads(args.spec))
        return 0

    work = args.work.resolve()
    # Prepared in a child: a process's peak RSS carries over to the processes it starts (Linux keeps
    # ru_maxrss across fork and exec), so the measured runs must come from a driver that stayed small.
    subprocess.run([sys.executable, __file__, "--child", "prepare", "--spec",
                    json.dumps({"work": str(work), "prompts": args.prompts})], check=True)
    files = prepare(work, args.prompts)
    systems = args.systems.split(",")
    runs = work / f"runs-{args.prompts}"
    shutil.rmtree(runs, ignore_errors=True)
    results: dict[str, dict] = {}

    def spec(name: str, data: str, **extra) -> dict:
        return {"model": files["model"], "data": data, "procs": args.procs, "batch_size": args.batch_size,
                "output_dir": str(runs / name), **extra}

    if "imports" in systems:
        results["imports"] = run_child("imports", spec("imports", files["pairs"]))
    for name, data in (("rewardalign", files["data"]), ("rewardalign-pairs", files["pairs"])):
        if name in systems and "floor" in systems:
            floor = "floor" if name == "rewardalign" else "floor-pairs"
            results[floor] = run_child("floor", spec(floor, data))
        if name in systems:
            cache = str(runs / f"{name}-cache")
            for state in ("cold", "warm"):
                results[f"{name} {state}"] = run_child("rewardalign", spec(f"{name}-{state}", data, cache_dir=cache))
    if "trl" in systems:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version

        try:  # not imported here: the driver stays small (see above)
            version = package_version("trl")
        except PackageNotFoundError:
            version = None
        if version is None:
            results["trl"] = {"error": "trl is not installed (pip install 'trl>=1.16'): not measured"}
        else:
            env = {"HF_DATASETS_CACHE": str(runs / "trl-hf-cache")}
            for state in ("cold", "warm"):
                results[f"trl {state}"] = run_child("trl", spec(f"trl-{state}", files["pairs"]), env=env)
                results[f"trl {state}"]["version"] = version

    print(report(results, args))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


WHAT = {
    "imports": "import torch and transformers' model code only (every transformers-based trainer's floor)",
    "floor": f"tokenisation only: every prompt and response once (K = {K})",
    "floor-pairs": "tokenisation only: every prompt, chosen and rejected once",
    "rewardalign": f"align simpo, UltraFeedback groups (K = {K})",
    "rewardalign-pairs": "align simpo, the pairs (K = 2)",
    "trl": "DPOTrainer, the pairs (K = 2)",
}


def report(results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [
        f"Data pipeline, {args.prompts} prompts x {K} completions (pairs: {args.prompts}), {args.procs} "
        f"tokenising processes, tiny Llama (hidden 64, 2 layers, 32k vocabulary), batch {args.batch_size}, max_length "
        f"{MAX_LENGTH}. Command: python benchmarks/data_pipeline.py --prompts {args.prompts} --procs {args.procs} "
        f"--batch-size {args.batch_size}",
        "",
        "| run | what | first step from launch (s) | from import (s) | data (s) | CPU (s) | CPU from import (s) "
        "| data CPU (s) | tree RSS (GB) | tree PSS (GB) | max process RSS (GB) | load avg |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        what = WHAT[name.split(" ")[0]]
        if "error" in r:
            lines.append(f"| {name} | {what} | {r['error'].splitlines()[0]} | | | | | | | | | |")
            continue
        imported = r.get("imported_s")
        after = None if imported is None else r["first_step_s"] - imported
        cpu_after = None if "imported_cpu_s" not in r else r["cpu_s"] - r["imported_cpu_s"]
        lines.append(
            f"| {name} | {what} | {fmt(r['first_step_s'])} | {fmt(after)} | {fmt(r.get('data_s', r.get('tokenise_s')))} "
            f"| {fmt(r['cpu_s'])} | {fmt(cpu_after)} | {fmt(r.get('data_cpu_s', r['cpu_s'] if 'tokenise_s' in r else None))} "
            f"| {fmt(r['tree_rss_gb'], 2)} | {fmt(r.get('tree_pss_gb'), 2)} | {fmt(r['maxrss_gb'], 2)} | {r['load']} |"
        )
    lines += ["", "Targets (wall seconds, then CPU seconds: on a shared, loaded machine the CPU figures are the "
              "steadier ones):"]

    def get(name: str, key: str) -> float | None:
        r = results.get(name) or {}
        return None if "error" in r or key not in r else r[key]

    def since_import(name: str, cpu: bool = False) -> float | None:
        total, imported = (get(name, "cpu_s"), get(name, "imported_cpu_s")) if cpu else (
            get(name, "first_step_s"), get(name, "imported_s"))
        return None if total is None or imported is None else total - imported

    def ratio(a: float | None, b: float | None) -> str:
        return "-" if a is None or not b else f"{a / b:.2f}"

    for system, floor_run in (("rewardalign", "floor"), ("rewardalign-pairs", "floor-pairs")):
        cold, warm = f"{system} cold", f"{system} warm"
        if get(cold, "first_step_s") is None:
            continue
        floor, floor_cpu = get(floor_run, "tokenise_s"), get(floor_run, "cpu_s")
        if floor:
            lines.append(
                f"- {system}, first run / floor (target <= 1.5): data preparation {ratio(get(cold, 'data_s'), floor)} "
                f"wall, {ratio(get(cold, 'data_cpu_s'), floor_cpu)} CPU; first step from import "
                f"{ratio(since_import(cold), floor)} wall, {ratio(since_import(cold, True), floor_cpu)} CPU; from launch "
                f"{ratio(get(cold, 'first_step_s'), floor)} wall, {ratio(get(cold, 'cpu_s'), floor_cpu)} CPU")
        if get(warm, "first_step_s") is not None:
            lines.append(
                f"- {system}, second run / first run (target < 0.10): from import {ratio(since_import(warm), since_import(cold))} "
                f"wall, {ratio(since_import(warm, True), since_import(cold, True))} CPU; from launch "
                f"{ratio(get(warm, 'first_step_s'), get(cold, 'first_step_s'))} wall, "
                f"{ratio(get(warm, 'cpu_s'), get(cold, 'cpu_s'))} CPU; data preparation {get(warm, 'data_s'):.2f} s vs "
                f"{get(cold, 'data_s'):.1f} s; the import floor alone / first run {ratio(get('imports', 'first_step_s'), get(cold, 'first_step_s'))} wall, "
                f"{ratio(get('imports', 'cpu_s'), get(cold, 'cpu_s'))} CPU")
    for state in ("cold", "warm"):
        ours, theirs = f"rewardalign-pairs {state}", f"trl {state}"
        if get(ours, "first_step_s") is not None and get(theirs, "first_step_s") is not None:
            lines.append(
                f"- pairs, {state} (target: faster, at most half the memory): rewardalign / TRL from launch "
                f"{ratio(get(ours, 'first_step_s'), get(theirs, 'first_step_s'))} wall, "
                f"{ratio(get(ours, 'cpu_s'), get(theirs, 'cpu_s'))} CPU; from import "
                f"{ratio(since_import(ours), since_import(theirs))} wall, "
                f"{ratio(since_import(ours, True), since_import(theirs, True))} CPU; peak memory, tree RSS "
                f"{get(ours, 'tree_rss_gb'):.2f} vs {get(theirs, 'tree_rss_gb'):.2f} GB "
                f"({ratio(get(ours, 'tree_rss_gb'), get(theirs, 'tree_rss_gb'))}), tree PSS "
                f"{ratio(get(ours, 'tree_pss_gb'), get(theirs, 'tree_pss_gb'))}, largest process "
                f"{ratio(get(ours, 'maxrss_gb'), get(theirs, 'maxrss_gb'))}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
