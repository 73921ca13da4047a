"""The registry: names, needs, hyperparameter validation without tensors, and clear errors."""

import pytest
import torch

from rewardalign.objectives import (
    OBJECTIVES,
    Needs,
    ObjectiveError,
    ObjectiveInputs,
    compute_objective,
    get_objective,
    validate_hparams,
)

METHODS_NAMES = {
    "dpo", "ipo", "slic", "simpo", "orpo", "cal_dpo", "dpop", "kto", "rpo", "rpo_fwd_kl", "rpo_bwd_kl", "edpo",
    "dro", "drdo", "una_pair", "una_binary_mse", "una_binary_bce", "una_score_mse", "una_reward_mse", "spo",
    "spo_abs", "infonca", "nca", "nca_pair", "rloo",
}


def pair(**fields):
    return ObjectiveInputs(
        policy_logps=torch.tensor([[-1.0, -2.0]]), ref_logps=torch.tensor([[-1.5, -1.5]]),
        mask=torch.ones(1, 2, dtype=torch.bool), **fields,
    )


def test_every_objective_of_methods_is_registered_with_a_documented_formula():
    assert set(OBJECTIVES) == METHODS_NAMES
    for name, objective in OBJECTIVES.items():
        assert objective.name == name
        assert "Default" in objective.doc and "loss" in objective.doc, name
        assert "nll_weight" in objective.defaults


def test_default_hyperparameters():
    assert validate_hparams("dpo") == {
        "beta": 0.1, "label_smoothing": 0.0, "pairs": "best_vs_random", "seed": 0, "order_by": "auto",
        "nll_weight": 0.0,
    }
    assert validate_hparams("simpo")["beta"] == 2.0 and validate_hparams("simpo")["gamma"] == 0.5
    assert validate_hparams("spo")["beta"] == 1.0 and validate_hparams("spo")["alpha"] == 1.0
    assert validate_hparams("dro") == {"beta": 0.1, "z0": 0.0, "prompt_normalization": False, "baseline": "group_mean",
                                       "nll_weight": 0.0}
    assert validate_hparams("drdo")["alpha"] == 0.1 and validate_hparams("drdo")["gamma"] == 2.0
    assert validate_hparams("dpop")["lam"] == 50.0


def test_validate_hparams_merges_and_coerces():
    merged = validate_hparams("dpo", {"beta": 1, "pairs": "all_pairs"})
    assert merged["beta"] == 1.0 and isinstance(merged["beta"], float) and merged["pairs"] == "all_pairs"


@pytest.mark.parametrize(
    "name, hparams, fragment",
    [
        ("dpo", {"beta": -1.0}, "'beta' must be > 0"),
        ("dpo", {"beta": True}, "not of type float"),
        ("dpo", {"pairs": "random"}, "one of best_vs_random, best_vs_rest, all_pairs"),
        ("dpo", {"label_smoothing": 0.5}, "in [0, 0.5)"),
        ("dro", {"prompt_normalization": "yes"}, "not of type bool"),
        ("spo", {"alpha": float("nan")}, "not finite"),
        ("dpo", {"seed": 1.5}, "not of type int"),
    ],
)
def test_bad_hyperparameter_values(name, hparams, fragment):
    with pytest.raises(ObjectiveError, match=f"objective '{name}'") as info:
        validate_hparams(name, hparams)
    assert fragment in str(info.value)


def test_unknown_hyperparameter_names_the_objective_and_what_it_accepts():
    with pytest.raises(ObjectiveError) as info:
        compute_objective("dpo", pair(), betta=0.1)
    message = str(info.value)
    assert "'dpo'" in message and "'betta'" in message and "beta=0.1" in message and "nll_weight=0.0" in message


def test_unknown_objective_lists_the_available_ones():
    with pytest.raises(ObjectiveError, match="unknown objective 'dpoo'") as info:
        get_objective("dpoo")
    assert all(name in str(info.value) for name in OBJECTIVES)
    with pytest.raises(ObjectiveError, match="available: "):
        validate_hparams("nope", {})


def test_needs_are_declared_before_training():
    assert get_objective("dpo").needs == Needs(
        reference=True, min_k=2, optional=("rewards", "scores", "labels", "group_ids")
    )
    assert not get_objective("simpo").needs.reference
    drdo = get_objective("drdo").needs
    assert drdo.rewards and not drdo.reference and drdo.min_k == 2
    assert get_objective("kto").needs.labels and get_objective("kto").needs.min_k == 1
    assert get_objective("una_score_mse").needs.scores
    assert get_objective("edpo").needs.ensemble and not get_objective("rpo").needs.ensemble
    dro = get_objective("dro")
    assert dro.needs.prompt_logps and dro.requirements({"prompt_normalization": True}).prompt_logps
    assert not dro.requirements().prompt_logps  # the default: no prompt term
    assert get_objective("spo").requirements().min_k == 2


# ------------------------------------------------------------------------------------------- input errors
# Value checks run with check=True (they synchronise with the device); what the shapes and fields alone show
# is refused on every call.


def test_una_score_mse_refuses_scores_outside_the_unit_interval():
    bad = pair(scores=torch.tensor([[0.5, 1.5]]))
    with pytest.raises(ObjectiveError, match=r"'una_score_mse'.*scores must lie in \[0, 1\], got values in \[0.5, 1.5\]"):
        compute_objective("una_score_mse", bad, check=True)
    compute_objective("una_score_mse", bad)  # the default path does not read values


def test_spo_refuses_single_responses():
    single = ObjectiveInputs(policy_logps=torch.tensor([[-1.0]]), ref_logps=torch.tensor([[-1.0]]),
                             mask=torch.ones(1, 1, dtype=torch.bool), rewards=torch.tensor([[1.0]]))
    with pytest.raises(ObjectiveError, match=r"'spo'.*group 0 has 1 response.*at least 2 responses per group"):
        compute_objective("spo", single, check=True)
    # a batch one response wide is refused from its shape alone, on the default path too
    with pytest.raises(ObjectiveError, match=r"'spo'.*at most 1 response.*at least 2 responses per group"):
        compute_objective("spo", single)


def test_a_short_group_among_longer_ones_is_found_by_the_check():
    mixed = ObjectiveInputs(policy_logps=torch.zeros(2, 2), ref_logps=torch.zeros(2, 2),
                            mask=torch.tensor([[True, True], [True, False]]), rewards=torch.tensor([[1.0, 0.0]] * 2))
    with pytest.raises(ObjectiveError, match=r"'spo'.*group 1 has 1 response"):
        compute_objective("spo", mixed, check=True)
    loss, _ = compute_objective("spo", mixed)  # the default path trusts the data (align checks it upfront)
    assert torch.isfinite(loss)


def test_drdo_without_rewards():
    with pytest.raises(ObjectiveError, match=r"'drdo'.*missing input rewards.*It needs: .*rewards \[B, K\]"):
        compute_objective("drdo", pair())


STRUCTURAL = [
    ("dpo", ObjectiveInputs(policy_logps=torch.zeros(1, 2), mask=torch.ones(1, 2)), "missing input ref_logps"),
    ("dro", pair(), "missing input rewards"),
    ("kto", pair(), "missing input labels"),
    ("rpo", pair(rewards=torch.zeros(3, 1, 2)), "ensemble of 3 models"),
]
VALUES = [
    ("kto", pair(labels=torch.tensor([[1.0, 0.5]])), "labels must be 0 (undesirable) or 1 (desirable)"),
    ("rpo", pair(rewards=torch.tensor([[1.0, float("nan")]])), "NaN or infinite"),
    ("dpo", pair(n_tokens=torch.tensor([[3, 0]])), "fewer than one token"),
]


@pytest.mark.parametrize("check", [True, False], ids=["checked", "default"])
@pytest.mark.parametrize("name, inputs, fragment", STRUCTURAL)
def test_missing_inputs_are_refused_on_every_path(name, inputs, fragment, check):
    with pytest.raises(ObjectiveError, match=f"objective '{name}'") as info:
        compute_objective(name, inputs, check=check)
    assert fragment in str(info.value)


@pytest.mark.parametrize("name, inputs, fragment", VALUES)
def test_invalid_values_are_refused_by_the_check(name, inputs, fragment):
    with pytest.raises(ObjectiveError, match=f"objective '{name}'") as info:
        compute_objective(name, inputs, check=True)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "name, hparams, fragment",
    [("dpo", {"beta": -1.0}, "'beta' must be > 0"), ("spo_abs", {"abs_form": "log"}, "one of sigmoid, logsigmoid")],
)
def test_bad_hyperparameter_values_are_refused_by_the_check(name, hparams, fragment):
    inputs = pair(rewards=torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ObjectiveError, match=f"objective '{name}'") as info:
        compute_objective(name, inputs, check=True, **hparams)
    assert fragment in str(info.value)


def test_the_default_path_does_not_revalidate(monkeypatch):
    # validate_hparams runs once before training; compute_objective takes its result as is.
    hparams = validate_hparams("dpo", {"beta": 0.2})

    def refuse(self, hparams=None):
        raise AssertionError("validated again")

    monkeypatch.setattr(type(get_objective("dpo")), "validate", refuse)
    loss, _ = compute_objective("dpo", pair(), **hparams)
    assert torch.isfinite(loss)
    loss, _ = compute_objective("dpo", pair(), beta=0.2)  # a subset: the others take their defaults
    assert torch.isfinite(loss)
    with pytest.raises(AssertionError, match="validated again"):
        compute_objective("dpo", pair(), check=True, **hparams)


def test_a_group_of_four_without_feedback_cannot_be_paired():
    four = ObjectiveInputs(policy_logps=torch.zeros(1, 4), ref_logps=torch.zeros(1, 4), mask=torch.ones(1, 4))
    with pytest.raises(ObjectiveError, match=r"'dpo'.*order_by='position'"):
        compute_objective("dpo", four)
    loss, _ = compute_objective("dpo", four, order_by="position")  # a ranked list, best first
    assert torch.isfinite(loss)


def test_dro_without_prompt_normalization_needs_no_prompt_logps():
    loss, _ = compute_objective("dro", pair(rewards=torch.tensor([[1.0, 0.0]])), prompt_normalization=False)
    assert torch.isfinite(loss)


def test_a_batch_without_any_pair_is_a_zero_loss_that_backpropagates():
    policy = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    inputs = ObjectiveInputs(policy_logps=policy, ref_logps=torch.zeros(1, 2), mask=torch.ones(1, 2),
                             rewards=torch.tensor([[1.0, 1.0]]))
    loss, _ = compute_objective("dpo", inputs)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(policy.grad, torch.zeros(1, 2))
