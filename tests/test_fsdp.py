"""The log-prob path and the oracle reward model's NLL term under FSDP2, sharded as accelerate shards a model.

accelerate 1.x enables FSDP only on GPU backends, so a CPU machine cannot run ``accelerate launch`` with
``examples/recipes/accelerate/fsdp.yaml``; torch's FSDP2 itself runs on CPU with gloo. tests/fsdp_worker.py
shards the models with accelerate's own ``fsdp2_prepare_model`` in two processes and compares outputs and
gradients with the unsharded model's. Both read the LM head's weight after the model's forward; calling the
head module a second time there crashed the backward (SIGSEGV) before ``_plain_linear`` recognised
accelerate's ``FSDPLinear`` head.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("fsdp_worker.py")


def test_log_probs_and_oracle_nll_under_fsdp2_equal_the_unsharded_model(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
           str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        results = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert set(results) == {"tied head", "untied head", "soft-capped logits", "oracle reward model"}
        for case, diffs in results.items():
            assert len(diffs) > 20, case  # the outputs and every parameter's gradient
            for name, diff in diffs.items():
                assert diff == pytest.approx(0.0, abs=1e-5), (case, name)
