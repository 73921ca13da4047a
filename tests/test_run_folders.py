"""Run folders with integrity: atomic writes, the manifest, a used folder refused (or replaced on request), compare
never reporting another model's evaluation, a rule reward's cache following its code, plots for 16 methods."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from rewardalign.config import ConfigError
from rewardalign.evaluate import plots
from rewardalign.evaluate.config import EvalConfig
from rewardalign.evaluate.report import compare_runs, load_run
from rewardalign.evaluate.run import check_config, write_eval_outputs
from rewardalign.fingerprint import file_digest
from rewardalign.rewards.annotate import run_annotate
from rewardalign.runs import MANIFEST, RunFolder, atomic_path, read_manifest, write_text
from rewardalign.train.align import run_align

ROOT = Path(__file__).resolve().parents[1]
GROUPS = str(ROOT / "examples/tiny/data/groups.jsonl")


# ---- atomic writes ----------------------------------------------------------------------------------------------


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_text(tmp_path / "summary.json", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("the writer died")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_the_temporary_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".out.jsonl.{dead.pid}-0000abcd.tmp"
    mine = tmp_path / f".out.jsonl.{os.getpid()}-0000abcd.tmp"  # a live writer's temporary stays
    orphan.write_text("partial")
    mine.write_text("in progress")
    write_text(tmp_path / "out.jsonl", "complete\n")
    assert not orphan.exists() and mine.exists() and (tmp_path / "out.jsonl").read_text() == "complete\n"


# ---- the manifest and a used output_dir ---------------------------------------------------------------------------


def align_config(model_dir, out, **overrides):
    return {"model": model_dir, "data": GROUPS, "format": "group", "objective": "dpo", "max_length": 24,
            "output_dir": str(out), "cache_dir": str(out.parent / "cache"), "max_steps": 1,
            "per_device_train_batch_size": 4, "seed": 0, "disable_tqdm": True} | overrides


def test_the_manifest_names_the_writer_size_and_hash_of_every_file(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    run_align(align_config(tiny_model_dir, out))
    manifest = read_manifest(out)
    run = manifest["run"]
    assert run["command"] == "align" and run["status"] == "complete"
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert entry["command"] == "align" and entry["run"] == run["id"], name
        assert entry["bytes"] == (out / name).stat().st_size and entry["sha256"] == file_digest(out / name), name
    assert {"model.safetensors", "summary.json", "config.yaml", "metrics.jsonl"} <= set(manifest["files"])


def test_a_used_output_dir_is_refused_unless_overwritten(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    run_align(align_config(tiny_model_dir, out))
    first = read_manifest(out)["run"]["id"]
    write_eval_outputs(out, {"model": str(out), "reward_mean": 0.5}, [{"response": "x"}])
    with pytest.raises(ConfigError, match=r"holds another run's outputs .*overwrite_output_dir"):
        run_align(align_config(tiny_model_dir, out, objective="dro"))
    run_align(align_config(tiny_model_dir, out, objective="dro", overwrite_output_dir=True))
    manifest = read_manifest(out)
    assert manifest["run"]["id"] != first
    assert not (out / "eval.json").exists() and not (out / "samples.jsonl").exists()  # the old model's
    assert {e["run"] for e in manifest["files"].values()} == {manifest["run"]["id"]}
    assert json.loads((out / "summary.json").read_text())["objective"] == "dro"


def fake_model_run(folder: Path, command: str = "align") -> str:
    """A folder claimed by a training run that wrote a model (config.json) and finished."""
    run = RunFolder(SimpleNamespace(output_dir=str(folder), should_save=True, resume_from_checkpoint=None), command)
    write_text(folder / "config.json", "{}")
    run.finish({"objective": "dpo"}, {"objective": "dpo", "steps": 1})
    return run.run_id


def test_compare_leaves_out_an_evaluation_of_another_model(tmp_path):
    own, other, copied, edited = (tmp_path / n for n in ("own", "other", "copied", "edited"))
    for folder in (own, other, copied, edited):
        fake_model_run(folder)
    write_eval_outputs(own, {"model": str(own), "reward_mean": 0.7}, [])
    write_eval_outputs(other, {"model": str(own), "reward_mean": 0.7}, [])  # own's model evaluated into other
    write_text(copied / "eval.json", (own / "eval.json").read_text())  # not in copied's manifest
    write_eval_outputs(edited, {"model": str(edited), "reward_mean": 0.1}, [])
    write_text(edited / "eval.json", json.dumps({"model": str(edited), "reward_mean": 0.9}))
    report = compare_runs([own, other, copied, edited], tmp_path / "cmp")
    rewards = {r["name"]: r["table"]["reward_mean"] for r in report["runs"]}
    assert rewards == {"own": 0.7, "other": None, "copied": None, "edited": None}
    notes = "\n".join(report["notes"])
    assert f"evaluates {own}" in notes and "does not list it" in notes and "changed after" in notes


def test_folders_without_a_manifest_are_checked_by_the_model_path(tmp_path):
    legacy, evaluation = tmp_path / "legacy", tmp_path / "evaluation"
    legacy.mkdir()
    write_text(legacy / "config.json", "{}")
    write_text(legacy / "eval.json", json.dumps({"model": str(tmp_path / "elsewhere"), "reward_mean": 0.5}))
    assert load_run(legacy).eval is None and "elsewhere" in load_run(legacy).notes[0]
    write_text(legacy / "eval.json", json.dumps({"model": str(legacy), "reward_mean": 0.5}))
    assert load_run(legacy).eval["reward_mean"] == 0.5
    write_eval_outputs(evaluation, {"model": str(legacy), "reward_mean": 0.4}, [])  # no model here: kept
    assert load_run(evaluation).eval["reward_mean"] == 0.4


def test_evaluate_refuses_a_folder_that_holds_another_model(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    fake_model_run(a)
    fake_model_run(b)
    with pytest.raises(ConfigError, match=f"output_dir {b} holds another model"):
        check_config(EvalConfig(model=str(a), prompts=GROUPS, output_dir=str(b)))
    check_config(EvalConfig(model=str(a), prompts=GROUPS, output_dir=str(a)))


def test_the_model_trained_is_never_its_own_output_dir(tiny_model_dir):
    with pytest.raises(ConfigError, match="is the run's input"):
        run_align(align_config(tiny_model_dir, Path(tiny_model_dir), overwrite_output_dir=True))
    assert (Path(tiny_model_dir) / "config.json").is_file()


def test_resuming_another_commands_folder_is_refused(tmp_path):
    fake_model_run(tmp_path / "sft_run", command="sft")
    args = SimpleNamespace(output_dir=str(tmp_path / "sft_run"), should_save=True, resume_from_checkpoint=True)
    with pytest.raises(ConfigError, match="cannot resume a sft run .* with align"):
        RunFolder(args, "align")


# ---- a rule reward's cache ----------------------------------------------------------------------------------------


def test_editing_a_rule_file_rescores_and_an_unchanged_one_hits_the_cache(tmp_path):
    rule = tmp_path / "my_rule.py"
    rule.write_text("def reward(prompt, response):\n    return float(len(response))\n")
    config = {"data": GROUPS, "output": str(tmp_path / "out.jsonl"), "progress": False,
              "source": {"type": "rule", "function": f"{rule}:reward"}}
    first = run_annotate(config, verbose=False)
    again = run_annotate(config, verbose=False)
    rule.write_text("def reward(prompt, response):\n    return -float(len(response))\n")
    edited = run_annotate(config, verbose=False)
    assert not first["cache_hit"] and again["cache_hit"] and again["scored"] == 0
    assert not edited["cache_hit"] and edited["scored"] == first["scored"] > 0
    assert edited["statistics"]["rewards"]["mean"] == pytest.approx(-first["statistics"]["rewards"]["mean"])


# ---- plots with 16 methods ----------------------------------------------------------------------------------------


def test_sixteen_methods_get_distinct_colours_and_markers_and_runs_of_a_method_distinct_lines():
    styles = plots.run_styles({f"m{i}": f"m{i}" for i in range(16)} | {"m3_b2": "m3", "m3_b3": "m3"})
    methods = [styles[f"m{i}"] for i in range(16)]
    assert len({s["color"] for s in methods}) == 16 and len({s["marker"] for s in methods}) == 16
    sweep = [styles[n] for n in ("m3", "m3_b2", "m3_b3")]
    assert len({(s["color"], s["marker"]) for s in sweep}) == 1 and len({s["linestyle"] for s in sweep}) == 3


def test_losses_of_different_scales_get_panels_of_their_own():
    groups = plots.scale_groups({"dpo": [0.7, 0.5], "kto": [0.6, 0.4], "ipo": [250.0, 90.0], "dro": [8.0, 3.0],
                                 "none": []})
    assert groups == [["kto", "dpo"], ["dro"], ["ipo"]]


def test_compare_plots_sixteen_methods(tmp_path):
    pytest.importorskip("matplotlib")
    folders = []
    for i in range(16):
        folder = tmp_path / f"method{i}"
        scale = 100.0 if i == 7 else 1.0
        write_text(folder / "metrics.jsonl", "".join(json.dumps({"step": s, "loss": scale / s}) + "\n"
                                                     for s in range(1, 9)))
        write_text(folder / "eval.json", json.dumps({"reward_mean": 0.1 * i, "kl": 0.2 * i}))
        folders.append(folder)
    report = compare_runs(folders, tmp_path / "cmp")
    assert set(report["plots"]) == {"training_curves", "reward_kl_frontier"}
    for name in report["plots"].values():
        assert (tmp_path / "cmp" / name).stat().st_size > 10_000
