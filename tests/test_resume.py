"""Faults injected into a run and survived: an exception mid-run, a SIGKILL mid-run, a save cut short, a SIGKILL
during annotate's output write. Each resumed (or rerun) run ends with the model and the summary totals of an
uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback
from transformers.trainer_callback import TrainerState

from rewardalign.config import ConfigError
from rewardalign.runs import checkpoint_problem, training_arguments
from rewardalign.train.align import run_align

ROOT = Path(__file__).resolve().parents[1]
GROUPS = str(ROOT / "examples/tiny/data/groups.jsonl")
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT / "src"),
                                                                         os.environ.get("PYTHONPATH", "")]))


def config(model_dir, out, **overrides):
    """Six dro steps, a checkpoint every three (``save_steps`` alone: it implies the steps strategy)."""
    return {"model": model_dir, "data": GROUPS, "format": "group", "objective": "dro", "max_length": 24,
            "output_dir": str(out), "cache_dir": str(out.parent / "cache"), "max_steps": 6, "save_steps": 3,
            "per_device_train_batch_size": 8, "learning_rate": 1e-3, "lr_scheduler_type": "linear",
            "logging_steps": 1, "seed": 0, "disable_tqdm": True} | overrides


@pytest.fixture(scope="module")
def full(tiny_model_dir, tmp_path_factory):
    """The uninterrupted run: (run folder, summary)."""
    out = tmp_path_factory.mktemp("full") / "run"
    return out, run_align(config(tiny_model_dir, out))


def assert_same_run(run: Path, summary: dict, full: tuple[Path, dict]) -> None:
    """Same parameters (1e-6), same totals, the same logged losses, as the uninterrupted run."""
    full_dir, full_summary = full
    expected, got = load_file(str(full_dir / "model.safetensors")), load_file(str(run / "model.safetensors"))
    for name, value in expected.items():
        assert torch.allclose(value, got[name], atol=1e-6), name
    for key in ("steps", "train_groups", "response_tokens"):
        assert summary[key] == full_summary[key], key
    assert summary["train_loss"] == pytest.approx(full_summary["train_loss"], rel=1e-6)
    assert json.loads((run / "summary.json").read_text())["response_tokens"] == full_summary["response_tokens"]

    def losses(folder):
        return [(r["step"], r["loss"]) for r in map(json.loads, open(folder / "metrics.jsonl")) if "loss" in r]

    def logged_train_loss(folder):
        return [r["train_loss"] for r in map(json.loads, open(folder / "metrics.jsonl")) if "train_loss" in r]

    assert [s for s, _ in losses(run)] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in losses(run)] == pytest.approx([v for _, v in losses(full_dir)], rel=1e-5)
    assert logged_train_loss(run) == pytest.approx(logged_train_loss(full_dir), rel=1e-6)
    assert len(logged_train_loss(run)) == 1


class Explode(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 4:
            raise RuntimeError("injected fault at step 4")


def test_exception_mid_run_then_resume_from_the_latest_checkpoint(tiny_model_dir, tmp_path, full):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="injected fault"):
        run_align(config(tiny_model_dir, out), callbacks=[Explode()])
    assert (out / "checkpoint-3").is_dir() and not (out / "summary.json").exists()
    assert not (out / "model.safetensors").exists()
    with pytest.raises(ConfigError, match="holds another run's outputs"):  # a rerun must say what it wants
        run_align(config(tiny_model_dir, out))
    summary = run_align(config(tiny_model_dir, out, resume_from_checkpoint=True))
    assert_same_run(out, summary, full)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run"]["status"] == "complete" and "checkpoint-6/" in manifest["files"]


def test_a_save_cut_short_is_skipped_on_resume(tiny_model_dir, tmp_path, full, monkeypatch, capsys):
    """The save of checkpoint-6 dies while writing trainer_state.json (the last file a save writes)."""
    out = tmp_path / "run"
    save = TrainerState.save_to_json

    def cut_short(self, json_path):
        if "checkpoint-6" in str(json_path):
            Path(json_path).write_text(json.dumps(dict(global_step=6))[:9])
            raise RuntimeError("killed while saving")
        save(self, json_path)

    monkeypatch.setattr(TrainerState, "save_to_json", cut_short)
    with pytest.raises(RuntimeError, match="killed while saving"):
        run_align(config(tiny_model_dir, out))
    monkeypatch.setattr(TrainerState, "save_to_json", save)
    assert (out / "checkpoint-6" / "model.safetensors").is_file()
    assert "cut short" in checkpoint_problem(out / "checkpoint-6")
    with pytest.raises(ConfigError, match="checkpoint-6.*cut short"):
        run_align(config(tiny_model_dir, out, resume_from_checkpoint=str(out / "checkpoint-6")))
    capsys.readouterr()
    summary = run_align(config(tiny_model_dir, out, resume_from_checkpoint=True))
    assert f"skipping {out / 'checkpoint-6'}" in capsys.readouterr().err
    assert_same_run(out, summary, full)


def test_resume_without_a_complete_checkpoint_says_so(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        run_align(config(tiny_model_dir, out, resume_from_checkpoint=True))


def test_save_steps_alone_saves_every_save_steps():
    assert training_arguments({"output_dir": "x", "save_steps": 20}, "align").save_strategy == "steps"
    assert training_arguments({"output_dir": "x"}, "align").save_strategy == "no"
    assert training_arguments({"output_dir": "x", "save_steps": 20, "save_strategy": "no"},
                              "align").save_strategy == "no"


def test_checkpointing_takes_the_installed_transformers_name(monkeypatch, recwarn):
    """transformers 5.21 renamed gradient_checkpointing to activation_checkpointing: either name reaches the field
    the installed version has, with no deprecation warning; both at once is an error."""
    from rewardalign import runs

    for name in ("gradient_checkpointing", "activation_checkpointing"):
        args = training_arguments({"output_dir": "x", name: True}, "align")
        assert args.gradient_checkpointing is True and getattr(args, "activation_checkpointing", True) is True
    assert not [w for w in recwarn if "checkpointing" in str(w.message)]
    with pytest.raises(ConfigError, match="not both"):
        training_arguments({"output_dir": "x", "gradient_checkpointing": True, "activation_checkpointing": True},
                           "align")
    # before the rename (5.0-5.20) the new name is passed under the old one
    before = runs.training_fields() - {"activation_checkpointing", "activation_checkpointing_kwargs"}
    monkeypatch.setattr(runs, "training_fields", lambda: before)
    assert runs.installed_names({"activation_checkpointing": True, "activation_checkpointing_kwargs": {}},
                                "sft") == {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {}}


KILL_AT_STEP_4 = textwrap.dedent("""
    import json, os, signal, sys
    from transformers import TrainerCallback
    from rewardalign.train.align import run_align

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 4:
                os.kill(os.getpid(), signal.SIGKILL)

    run_align(json.loads(sys.argv[1]), callbacks=[Kill()])
""")


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tiny_model_dir, tmp_path, full):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_AT_STEP_4, json.dumps(config(tiny_model_dir, out))],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / "checkpoint-3").is_dir() and not (out / "model.safetensors").exists()
    summary = run_align(config(tiny_model_dir, out, resume_from_checkpoint=True))
    assert_same_run(out, summary, full)


KILL_DURING_WRITE = textwrap.dedent("""
    import os, signal, sys
    from rewardalign.data.schema import Group
    from rewardalign.rewards.annotate import run_annotate

    to_dict, calls = Group.to_dict, []

    def dying_to_dict(self):
        calls.append(1)
        if len(calls) == 40:  # the output file holds 39 groups when the process dies
            os.kill(os.getpid(), signal.SIGKILL)
        return to_dict(self)

    Group.to_dict = dying_to_dict
    run_annotate({"data": sys.argv[1], "output": sys.argv[2], "source": {"type": "rule", "function": sys.argv[3]},
                  "progress": False}, verbose=False)
""")


@pytest.mark.slow
def test_sigkill_during_annotate_output_write_leaves_no_partial_output(tmp_path):
    rule = tmp_path / "length_rule.py"
    rule.write_text("def length(prompt, response):\n    return float(len(response))\n")
    data, spec = GROUPS, f"{rule}:length"
    complete = tmp_path / "complete.jsonl"
    from rewardalign.rewards.annotate import run_annotate

    run_annotate({"data": data, "output": str(complete), "source": {"type": "rule", "function": spec},
                  "progress": False}, verbose=False)
    out = tmp_path / "killed.jsonl"
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE, data, str(out), spec], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not out.exists()  # no partial JSONL a later align could train on
    assert len(list(tmp_path.glob(".killed.jsonl.*.tmp"))) == 1  # the killed writer's temporary
    run_annotate({"data": data, "output": str(out), "source": {"type": "rule", "function": spec},
                  "progress": False}, verbose=False)
    assert out.read_text() == complete.read_text()
    assert not list(tmp_path.glob(".killed.jsonl.*.tmp"))  # the killed writer's temporary is gone
