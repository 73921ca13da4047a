"""``benchmarks/gpu.py --device cpu --dry-run`` at its smallest: it runs every kind of step (layout checks,
finite training steps, training configurations of rewardalign and TRL, sampling) and writes its results.

Marked ``slow`` (a subprocess of about 30 s on an idle machine); deselect with ``-m "not slow"``.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_dry_run_writes_finite_results_and_passes_the_layout_checks(tmp_path):
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--dry-run", "--models",
           "qwen2.5-0.5b", "--warmup", "1", "--steps", "1", "--dry-vocab", "2048", "--objectives", "dpo", "dro",
           "una_score_mse", "--check-targets", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    [md] = tmp_path.glob("dryrun-cpu-*.md")
    [js] = tmp_path.glob("dryrun-cpu-*.json")
    result = json.loads(js.read_text())
    assert "## Training steps" in md.read_text() and result["partial"] is False
    assert result["device"] == "cpu" and result["torch"] and result["transformers"] and result["date"]
    rows = result["rows"]

    for row in rows:  # every row measured something finite and positive, or says why not
        if row["status"] != "ok":
            assert row.get("reason"), row
            continue
        if row["kind"] == "train":
            assert math.isfinite(row["tok_s"]) and row["tok_s"] > 0, row
            assert row["response_tokens"] > 0 and row["tflop_per_step"] > 0, row
        elif row["kind"] == "generate":
            assert math.isfinite(row["samples_s"]) and row["samples_s"] > 0, row

    trained = {(r["workload"], r["system"], r["layout"]) for r in rows if r["kind"] == "train" and r["status"] == "ok"}
    for layout in ("plain", "shared_prompt", "packed", "packed_shared_prompt"):
        assert {("dpo", "rewardalign", layout), ("spo", "rewardalign", layout)} <= trained
    assert any(r["kind"] == "generate" and r["status"] == "ok" for r in rows)

    layout_checks = [r for r in rows if "/check/layout:" in r["name"] and r["attn"] == "sdpa"]
    assert {r["layout"] for r in layout_checks} == {"plain", "shared_prompt", "packed", "packed_shared_prompt"}
    assert all(r["status"] == "ok" and r["passed"] and r["max_err"] <= r["tol"] for r in layout_checks), layout_checks
    finite = [r for r in rows if "/check/finite-step:" in r["name"]]
    assert {r["objective"] for r in finite} == {"dpo", "dro", "una_score_mse"}
    assert all(r["passed"] for r in finite), finite
    flex = [r for r in rows if r.get("attn", "sdpa").startswith("flex")]
    assert flex and all(r["status"] == "skipped" and "CPU" in r["reason"] for r in flex)
