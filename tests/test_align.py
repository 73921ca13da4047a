"""The training engine end to end on the tiny example: align runs, reference modes, resume, configs."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardalign.config import ConfigError
from rewardalign.data.schema import DataError
from rewardalign.objectives import OBJECTIVES
from rewardalign.train import align as align_module
from rewardalign.train.align import run_align

ROOT = Path(__file__).resolve().parents[1]
GROUPS = str(ROOT / "examples/tiny/data/groups.jsonl")
PAIRS = str(ROOT / "examples/tiny/data/pairs.jsonl")


def config(model_dir, tmp_path, **overrides):
    base = {
        "model": model_dir, "data": GROUPS, "format": "group", "objective": "dpo", "max_length": 24,
        "output_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"), "max_steps": 2,
        "per_device_train_batch_size": 4, "learning_rate": 1e-3, "logging_steps": 1, "seed": 0,
        "disable_tqdm": True,
    }
    return base | overrides


def logged(run_dir):
    return [json.loads(line) for line in open(Path(run_dir) / "metrics.jsonl")]


def test_align_writes_model_config_metrics_and_summary(tiny_model_dir, tmp_path):
    summary = run_align(config(tiny_model_dir, tmp_path, eval_fraction=0.25, eval_strategy="steps", eval_steps=2))
    run = tmp_path / "run"
    assert (run / "config.json").is_file() and (run / "model.safetensors").is_file()
    assert (run / "config.yaml").is_file() and json.loads((run / "summary.json").read_text())["steps"] == 2
    rows = logged(run)
    first = rows[0]
    for name in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                 "logps/chosen", "logps/rejected"):
        assert name in first, name
    assert any("eval_ranking_accuracy" in r for r in rows)
    assert 0.0 <= summary["final_eval"]["eval_ranking_accuracy"] <= 1.0
    assert summary["train_groups"] == 72 and summary["eval_groups"] == 24
    assert summary["response_tokens"] > 0


def test_reference_cache_hit_on_second_run_and_recompute_on_change(tiny_model_dir, tmp_path):
    first = run_align(config(tiny_model_dir, tmp_path, max_steps=2, objective="dro"))
    first_losses = [r["loss"] for r in logged(tmp_path / "run") if "loss" in r]
    again = run_align(config(tiny_model_dir, tmp_path, max_steps=2, objective="dro", overwrite_output_dir=True))
    # computing the reference leaves the random state alone: the same batches, the same losses
    assert [r["loss"] for r in logged(tmp_path / "run") if "loss" in r] == first_losses
    changed = run_align(config(tiny_model_dir, tmp_path, max_steps=1, objective="dro", max_length=20,
                               overwrite_output_dir=True))
    assert (first["reference_cache_hit"], again["reference_cache_hit"], changed["reference_cache_hit"]) == (
        False, True, False)
    assert len(list((tmp_path / "cache" / "reference").glob("*.safetensors"))) == 2


@pytest.mark.parametrize("objective", ["dpo", "dro"])
def test_precomputed_and_live_reference_give_the_same_first_step(tiny_model_dir, tmp_path, objective):
    pre = run_align(config(tiny_model_dir, tmp_path / "pre", objective=objective, max_steps=1))
    live = run_align(config(tiny_model_dir, tmp_path / "live", objective=objective, max_steps=1, reference="live"))
    a, b = logged(tmp_path / "pre" / "run")[0], logged(tmp_path / "live" / "run")[0]
    assert pre["reference"] == "precompute" and live["reference"] == "live"
    for key in a:
        if key.startswith(("loss", "rewards/", "logps/")):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key


def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(tiny_model_dir, tmp_path, stop_at):
    common = dict(max_steps=6, save_strategy="steps", save_steps=3, lr_scheduler_type="linear",
                  per_device_train_batch_size=8)
    run_align(config(tiny_model_dir, tmp_path / "full", **common))
    run_align(config(tiny_model_dir, tmp_path / "cut", **common), callbacks=[stop_at(3)])
    cut = tmp_path / "cut" / "run"
    assert (cut / "checkpoint-3").is_dir()
    run_align(config(tiny_model_dir, tmp_path / "cut", **common, resume_from_checkpoint=str(cut / "checkpoint-3")))
    steps = [r["step"] for r in logged(cut) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # the resumed run keeps the interrupted run's first three logs
    full = load_file(str(tmp_path / "full" / "run" / "model.safetensors"))
    resumed = load_file(str(cut / "model.safetensors"))
    start = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    for name, value in full.items():
        assert torch.allclose(value, resumed[name], atol=1e-6), name
    assert any(not torch.equal(full[n], start[n]) for n in full)


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_trains_with_finite_decreasing_loss(tiny_model_dir, tmp_path, objective):
    """One fixed batch of 8 groups (K = 4, rewards, scores, labels and two reward members), 8 steps."""
    data = tmp_path / "eight.jsonl"
    data.write_text("".join(open(GROUPS).readlines()[:8]))
    run_align(config(tiny_model_dir, tmp_path, objective=objective, data=str(data), max_steps=8,
                     per_device_train_batch_size=8, learning_rate=3e-3))
    losses = [r["loss"] for r in logged(tmp_path / "run") if "loss" in r]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-2:]) / 2 < losses[0], losses


def fail_if_model_loads(*args, **kwargs):
    raise AssertionError("the model was loaded before the config was checked")


@pytest.mark.parametrize(
    "overrides, error, words",
    [
        ({"objective": "dpo2"}, ConfigError, "unknown objective 'dpo2'"),
        ({"objective_args": {"betta": 0.1}}, ConfigError, "betta"),
        ({"objective": "dro", "data": PAIRS, "format": "pairs"}, DataError, "needs rewards"),
        ({"objective": "una_score_mse", "data": PAIRS, "format": "pairs"}, DataError, "needs scores"),
        ({"objective": "kto", "data": PAIRS, "format": "pairs"}, DataError, "needs labels"),
        ({"model": "/nonexistent/model"}, ConfigError, "/nonexistent/model. does not exist"),
        ({"model": None}, ConfigError, "no model given"),
        ({"reference": "sometimes"}, ConfigError, "reference must be"),
        ({"learning_rat": 0.1}, ConfigError, "learning_rat"),
    ],
)
def test_bad_configs_fail_before_any_model_is_loaded(tiny_model_dir, tmp_path, monkeypatch, overrides, error, words):
    monkeypatch.setattr(align_module, "load_causal_lm", fail_if_model_loads)
    with pytest.raises(error, match=words):
        run_align(config(tiny_model_dir, tmp_path, **overrides))


@pytest.mark.slow
def test_accelerate_two_cpu_processes_match_one_process(tiny_model_dir, tmp_path):
    """The same global batch of 4 groups: 2 processes x 2 groups, or 1 process x 4 groups.

    accelerate 1.x's ``--cpu`` launcher starts a single process whatever ``--num_processes`` says; its
    ``--multi_gpu`` launcher (torchrun underneath) starts real processes on CPU with the gloo backend."""
    # dro: the first-step loss depends on the batch's rewards (dpo's is log 2 for any batch at step 1)
    one = config(tiny_model_dir, tmp_path / "one", max_steps=1, objective="dro")
    run_align(one | {"per_device_train_batch_size": 4})
    two = config(tiny_model_dir, tmp_path / "two", max_steps=1, objective="dro")
    args = []
    for key, value in (two | {"per_device_train_batch_size": 2}).items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as sock:  # a free port: another run on this machine may hold torchrun's default
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
           "-m", "rewardalign.cli", "align", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary_one = json.loads((tmp_path / "one" / "run" / "summary.json").read_text())
    summary_two = json.loads((tmp_path / "two" / "run" / "summary.json").read_text())
    assert summary_two["processes"] == 2
    assert summary_two["response_tokens"] == summary_one["response_tokens"]  # both processes counted
    assert summary_two["train_loss"] == pytest.approx(summary_one["train_loss"], rel=1e-4)
    a, b = logged(tmp_path / "one" / "run")[0], logged(tmp_path / "two" / "run")[0]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def test_lora_reference_is_the_base_with_adapters_disabled(tiny_model_dir, tmp_path):
    """With LoRA, the live reference is the policy's base (adapters off): its first step equals the
    precomputed one, training moves the policy away from it, and the output is an adapter."""
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    common = dict(objective="dro", max_steps=3, lora=lora, learning_rate=1e-2)
    run_align(config(tiny_model_dir, tmp_path / "pre", **common))
    live = run_align(config(tiny_model_dir, tmp_path / "live", **common, reference="live"))
    a, b = logged(tmp_path / "pre" / "run"), logged(tmp_path / "live" / "run")
    for key in ("loss", "rewards/chosen", "rewards/target_mse"):
        assert a[0][key] == pytest.approx(b[0][key], rel=1e-4, abs=1e-6), key
        assert a[2][key] == pytest.approx(b[2][key], rel=1e-4, abs=1e-6), key
    assert b[2]["rewards/chosen"] != pytest.approx(0.0, abs=1e-6)  # the reference stayed the base
    assert live["steps"] == 3
    assert (tmp_path / "live" / "run" / "adapter_config.json").is_file()
    assert not (tmp_path / "live" / "run" / "model.safetensors").is_file()


def test_attention_implementation_is_a_config_field(tiny_model_dir, tmp_path):
    """eager attention with the shared-prompt layout (an additive 4D mask) trains like the default path."""
    run_align(config(tiny_model_dir, tmp_path / "default", objective="dro", max_steps=1))
    run_align(config(tiny_model_dir, tmp_path / "eager", objective="dro", max_steps=1, attn_implementation="eager",
                     layout="shared_prompt"))
    a, b = logged(tmp_path / "default" / "run")[0], logged(tmp_path / "eager" / "run")[0]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
