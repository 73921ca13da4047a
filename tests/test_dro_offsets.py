"""DRO's offsets estimated from the data: ``z0: auto`` (the mean training reward, resolved before training) and
``baseline: group_mean`` (a per-prompt baseline, DRO's V(x)), against values worked out by hand."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from rewardalign.config import ConfigError
from rewardalign.data import Group, load_groups
from rewardalign.modeling.tiny import save_tiny
from rewardalign.objectives import ObjectiveError, ObjectiveInputs, compute_objective, validate_hparams
from rewardalign.train.align import resolve_auto_hparams, run_align


def dro_loss(rewards, rho, mask=None, **hparams):
    """DRO without the prompt term (prompt log-probs equal), reference log-probs 0 so rho = l."""
    policy = torch.tensor(rho, dtype=torch.float64)
    inputs = ObjectiveInputs(
        policy_logps=policy, ref_logps=torch.zeros_like(policy),
        mask=torch.tensor(mask) if mask is not None else torch.ones_like(policy, dtype=torch.bool),
        rewards=torch.tensor(rewards, dtype=torch.float64),
        prompt_policy_logps=torch.zeros(len(rho), dtype=torch.float64),
        prompt_ref_logps=torch.zeros(len(rho), dtype=torch.float64))
    return compute_objective("dro", inputs, check=True, **hparams)[0].item()


def test_group_mean_baseline_by_hand():
    # group 1: r = [3, 1] (mean 2) -> targets [1, -1]; beta*rho = [0.1, -0.2] -> ((0.9)^2 + (0.8)^2) / 2
    # group 2: r = [0, 4, 2] (mean 2) -> targets [-2, 2, 0]; beta*rho = 0 -> (4 + 4 + 0) / 3
    rewards = [[3.0, 1.0, 0.0], [0.0, 4.0, 2.0]]
    rho = [[1.0, -2.0, 0.0], [0.0, 0.0, 0.0]]
    mask = [[True, True, False], [True, True, True]]
    expected = ((0.9**2 + 0.8**2) / 2 + 8 / 3) / 2
    assert dro_loss(rewards, rho, mask, baseline="group_mean") == pytest.approx(expected)
    # z0 is still subtracted on top: targets of group 1 become [0.5, -1.5] with z0 = 0.5
    expected_z0 = ((0.4**2 + 1.3**2) / 2 + ((-2.5) ** 2 + 1.5**2 + 0.5**2) / 3) / 2
    assert dro_loss(rewards, rho, mask, baseline="group_mean", z0=0.5) == pytest.approx(expected_z0)
    # without a baseline the padded reward 0.0 of group 1 plays no part either way
    assert dro_loss(rewards, rho, mask, baseline="none") == pytest.approx(((2.9**2 + 1.2**2) / 2 + (0 + 16 + 4) / 3) / 2)


def test_a_single_response_has_a_zero_target_under_the_group_baseline():
    assert dro_loss([[5.0]], [[2.0]], baseline="group_mean") == pytest.approx(0.2**2)


def test_z0_auto_is_the_mean_training_reward():
    groups = [Group("p", [" a", " b"], rewards=[1.0, 3.0]), Group("q", [" c", " d", " e"], rewards=[-1.0, 0.0, 2.0])]
    hparams = validate_hparams("dro", {"z0": "auto"})
    assert hparams["z0"] == "auto"
    assert resolve_auto_hparams(hparams, groups)["z0"] == pytest.approx((1 + 3 - 1 + 0 + 2) / 5)
    assert resolve_auto_hparams(validate_hparams("dro", {"z0": 0.25}), groups)["z0"] == 0.25
    with pytest.raises(ConfigError, match="has no rewards"):
        resolve_auto_hparams(hparams, [Group("p", [" a"])])


def test_auto_must_be_resolved_before_the_objective_runs():
    with pytest.raises(ObjectiveError, match="z0 'auto' is estimated from the training data"):
        dro_loss([[1.0]], [[0.0]], z0="auto")
    with pytest.raises(ObjectiveError, match="a real number or 'auto'"):
        validate_hparams("dro", {"z0": "mean"})
    with pytest.raises(ObjectiveError, match="one of none, group_mean"):
        validate_hparams("dro", {"baseline": "median"})
    with pytest.raises(ObjectiveError, match="real number"):
        validate_hparams("rpo", {"eta": "auto"})  # only DRO's z0 takes auto


def test_run_align_resolves_z0_auto_from_its_training_data(tmp_path):
    data = str(Path(__file__).resolve().parents[1] / "examples/tiny/data/groups.jsonl")
    texts = [json.loads(line)["prompt"] + " 12 34 5 6 7 8 9 0" for line in open(data)]
    model = save_tiny(texts, tmp_path / "model", vocab_size=128, hidden_size=32, num_layers=1, num_heads=2)
    run_align({"model": str(model), "data": data, "format": "group", "objective": "dro",
               "objective_args": {"z0": "auto"}, "max_length": 24, "output_dir": str(tmp_path / "run"),
               "cache_dir": str(tmp_path / "cache"), "max_steps": 1, "per_device_train_batch_size": 4,
               "disable_tqdm": True, "report_to": "none"})
    rewards = [r for g in load_groups(data, format="group")[0] for r in g.rewards]
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["objective_args"]["z0"]
    assert resolved == pytest.approx(sum(rewards) / len(rewards)) and resolved != 0.0
