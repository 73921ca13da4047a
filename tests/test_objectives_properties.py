"""Properties every registered objective must have: masking, stability, no host-device sync, gradient directions."""

import contextlib
import math

import pytest
import torch

from rewardalign.objectives import OBJECTIVES, ObjectiveInputs, compute_objective, get_objective
from rewardalign.objectives.core import log1mexp

NAMES = sorted(OBJECTIVES)
FLOATS = ("policy_logps", "ref_logps", "n_tokens", "scores", "labels", "kl_logratios")


def full_inputs(name, policy, ref, rewards, scores, labels, n_tokens, mask, prompt):
    """Every field an objective can read; an ensemble of two reward models for objectives that take one."""
    if get_objective(name).needs.ensemble:
        rewards = torch.stack([rewards, 2 * rewards + 1])
    return ObjectiveInputs(
        policy_logps=policy, ref_logps=ref, mask=mask, n_tokens=n_tokens, rewards=rewards, scores=scores,
        labels=labels, kl_logratios=ref - policy, prompt_policy_logps=prompt, prompt_ref_logps=prompt - 1,
        group_ids=torch.arange(mask.shape[0]),
    )


# ---------------------------------------------------------------------------------------------- masking


def base_batch():
    """Three groups of K = 2, 4 and 3 (padded to 4); padded entries here hold ordinary numbers."""
    mask = torch.tensor([[True, True, False, False], [True, True, True, True], [True, True, True, False]])
    policy = torch.tensor([[-3.0, -5.0, -1.0, -1.0], [-2.0, -4.0, -6.0, -3.0], [-7.0, -2.5, -4.0, -1.0]])
    ref = torch.tensor([[-3.5, -4.0, -1.0, -1.0], [-2.5, -4.5, -5.0, -3.5], [-6.0, -3.0, -4.5, -1.0]])
    rewards = torch.tensor([[1.0, -1.0, 0.0, 0.0], [2.0, 0.5, -1.0, 1.0], [-0.5, 1.5, 0.2, 0.0]])
    scores = torch.tensor([[0.9, 0.2, 0.5, 0.5], [0.7, 0.4, 0.1, 0.6], [0.3, 0.8, 0.5, 0.5]])
    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    n_tokens = torch.tensor([[3.0, 5.0, 1.0, 1.0], [2.0, 4.0, 6.0, 3.0], [7.0, 2.0, 4.0, 1.0]])
    prompt = torch.tensor([-10.0, -12.0, -8.0])
    return policy, ref, rewards, scores, labels, n_tokens, mask, prompt


def with_garbage_padding(policy, ref, rewards, scores, labels, n_tokens, mask, prompt):
    """Insert padded columns (at 1 and at the end) and a padded group holding NaN, +inf and -inf."""
    def widen(t, fills):
        b = t.shape[0]
        cols = [torch.full((b, 1), fills[0], dtype=t.dtype), torch.full((b, 1), fills[1], dtype=t.dtype)]
        out = torch.cat([t[:, :1], cols[0], t[:, 1:], cols[1]], dim=1)
        return torch.cat([out, torch.full((1, out.shape[1]), fills[0], dtype=t.dtype)])

    nan, inf = float("nan"), float("inf")
    new_mask = widen(mask, (False, False))
    args = [widen(t, (nan, inf)) for t in (policy, ref, rewards, scores, labels)]
    args.append(widen(n_tokens, (0.0, -inf)))
    return (*args, new_mask, torch.cat([prompt, torch.tensor([nan])]))


def loss_and_grad(name, args):
    policy = args[0].clone().requires_grad_(True)
    value, metrics = compute_objective(name, full_inputs(name, policy, *args[1:]))
    value.backward()
    return value, policy.grad, metrics


@pytest.mark.parametrize("name", NAMES)
def test_padding_changes_neither_loss_nor_gradient(name):
    base = base_batch()
    value, grad, metrics = loss_and_grad(name, base)
    padded_value, padded_grad, padded_metrics = loss_and_grad(name, with_garbage_padding(*base))
    torch.testing.assert_close(padded_value, value)
    kept = [0, 2, 3, 4]  # the original columns inside the widened batch
    torch.testing.assert_close(padded_grad[:3, kept], grad)
    assert torch.equal(padded_grad[:, [1, 5]], torch.zeros(4, 2))
    assert torch.equal(padded_grad[3], torch.zeros(6))
    assert padded_metrics.keys() == metrics.keys()
    for key in metrics:
        torch.testing.assert_close(padded_metrics[key], metrics[key])


@pytest.mark.parametrize("name", NAMES)
def test_padding_with_nll_term(name):
    base = base_batch()
    policy = base[0].clone().requires_grad_(True)
    ref_value, _ = compute_objective(name, full_inputs(name, policy, *base[1:]), nll_weight=0.3)
    padded = with_garbage_padding(*base)
    policy2 = padded[0].clone().requires_grad_(True)
    value, _ = compute_objective(name, full_inputs(name, policy2, *padded[1:]), nll_weight=0.3)
    value.backward()
    torch.testing.assert_close(value, ref_value)
    assert bool(torch.isfinite(policy2.grad).all())


# -------------------------------------------------------------------------------------------- stability


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", NAMES)
def test_extreme_values_give_finite_loss_and_gradients(name, dtype):
    # log-probs from -1e4 to -1e-6, log-ratios of +-1e4, rewards of magnitude 1e4, long and short responses
    policy = torch.tensor([[-1e-6, -1e4, -50.0, -3.0], [-1e4, -1e-6, -1e-3, -700.0]], dtype=dtype)
    ref = torch.tensor([[-1e4, -1e-6, -1e-3, -700.0], [-1e-6, -1e4, -50.0, -3.0]], dtype=dtype)
    rewards = torch.tensor([[1e4, -1e4, 3.0, 0.0], [-1e4, 5e3, 1e4, -2.0]], dtype=dtype)
    scores = torch.tensor([[1.0, 0.0, 0.5, 1e-6], [0.0, 1.0, 1.0, 0.3]], dtype=dtype)
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    n_tokens = torch.tensor([[1.0, 4096.0, 7.0, 1.0], [1.0, 1.0, 2048.0, 3.0]], dtype=dtype)
    mask = torch.ones(2, 4, dtype=torch.bool)
    prompt = torch.tensor([-1e4, -1e-6], dtype=dtype)
    for group_size in (2, 4):
        policy_leaf = policy[:, :group_size].clone().requires_grad_(True)
        args = [t[:, :group_size] for t in (ref, rewards, scores, labels, n_tokens, mask)]
        value, metrics = compute_objective(name, full_inputs(name, policy_leaf, *args, prompt), nll_weight=0.1)
        value.backward()
        assert torch.isfinite(value), (name, group_size, value)
        assert policy_leaf.grad.dtype == dtype
        assert bool(torch.isfinite(policy_leaf.grad).all()), (name, group_size, policy_leaf.grad)
        assert all(bool(torch.isfinite(v)) for v in metrics.values())


def test_log1mexp_is_accurate_and_has_finite_gradients():
    # reference: log1p(-exp(p)) far from 0, log(-expm1(p)) near 0 (each accurate on its side), rtol 1e-12
    points = [-1e4, -50.0, -1.0, -math.log(2), -0.1, -1e-6]
    x = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    expected = [math.log1p(-math.exp(p)) if p < -0.7 else math.log(-math.expm1(p)) for p in points]
    torch.testing.assert_close(log1mexp(x), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0.0)
    log1mexp(x).sum().backward()
    assert bool(torch.isfinite(x.grad).all())
    zero = torch.tensor([0.0, -1e-30], requires_grad=True)  # clamped to -eps: finite
    log1mexp(zero).sum().backward()
    assert bool(torch.isfinite(log1mexp(zero)).all()) and bool(torch.isfinite(zero.grad).all())


# ------------------------------------------------------------------------------------- host-device sync
# The default path of compute_objective never synchronises with the device. On CPU a synchronisation cannot be
# observed, so every Python-level way of reading a tensor's value on the host is made to raise during the call:
# .item(), .tolist(), .numpy(), .cpu(), a tensor used as a bool, int, float or index, .nonzero() and indexing
# with a boolean mask (whose output size depends on the values). With CUDA, set_sync_debug_mode checks it.

READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__", "nonzero")


def _forbid(name):
    def read(*args, **kwargs):
        raise AssertionError(f"host-device sync: Tensor.{name}")

    return read


def _no_boolean_masks(getitem):
    def guarded(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            raise AssertionError("host-device sync: indexing with a boolean mask")
        return getitem(self, index)

    return guarded


@contextlib.contextmanager
def no_host_reads():
    """Inside the block, reading a tensor's value on the host raises AssertionError."""
    with pytest.MonkeyPatch.context() as m:
        getitem = torch.Tensor.__getitem__
        for name in READS:
            m.setattr(torch.Tensor, name, _forbid(name))
        m.setattr(torch.Tensor, "__getitem__", _no_boolean_masks(getitem))
        for name in ("nonzero", "masked_select", "argwhere"):
            m.setattr(torch, name, _forbid(name))
        yield


def test_the_guard_catches_host_reads():
    x = torch.tensor([1.0, 2.0])
    with no_host_reads():
        for read in (lambda: x.sum().item(), lambda: bool(x.any()), lambda: x[x > 1], lambda: x.tolist(),
                     lambda: float(x[0]), lambda: x.nonzero()):
            with pytest.raises(AssertionError, match="host-device sync"):
                read()


@pytest.mark.parametrize("nll_weight", [0.0, 0.3], ids=["plain", "nll"])
@pytest.mark.parametrize("name", NAMES)
def test_compute_objective_makes_no_host_device_sync(name, nll_weight):
    # padded groups of K = 2, 4 and 3, garbage in the padding, an empty group: every code path of the objective
    args = with_garbage_padding(*base_batch())
    policy = args[0].clone().requires_grad_(True)
    inputs = full_inputs(name, policy, *args[1:])
    with no_host_reads():
        loss, metrics = compute_objective(name, inputs, nll_weight=nll_weight)
        loss.backward()
    assert torch.isfinite(loss)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in metrics.values())
    assert ("nll" in metrics) == (nll_weight > 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: torch.cuda.set_sync_debug_mode")
@pytest.mark.parametrize("name", NAMES)
def test_compute_objective_makes_no_cuda_sync(name):
    args = [t.cuda() for t in with_garbage_padding(*base_batch())]
    policy = args[0].clone().requires_grad_(True)
    inputs = full_inputs(name, policy, *args[1:])
    inputs.group_ids = inputs.group_ids.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss, metrics = compute_objective(name, inputs, nll_weight=0.3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    loss.backward()
    assert torch.isfinite(loss).item() and torch.isfinite(policy.grad).all().item()
    assert all(v.is_cuda for v in metrics.values())


# ------------------------------------------------------------------------------------ gradient direction


@pytest.mark.parametrize("name", NAMES)
def test_better_response_is_pushed_up_and_worse_one_down(name):
    # rho = 0 for both responses; every explicit signal says index 0 is better than index 1.
    policy = torch.tensor([[-2.0, -2.0]], requires_grad=True)
    inputs = full_inputs(
        name, policy, ref=torch.tensor([[-2.0, -2.0]]), rewards=torch.tensor([[1.0, -1.0]]),
        scores=torch.tensor([[0.9, 0.1]]), labels=torch.tensor([[1.0, 0.0]]),
        n_tokens=torch.tensor([[1.0, 1.0]]), mask=torch.ones(1, 2, dtype=torch.bool), prompt=torch.tensor([-4.0]),
    )
    inputs.kl_logratios = None
    compute_objective(name, inputs)[0].backward()
    grad_w, grad_l = policy.grad[0].tolist()
    assert grad_w < 0 < grad_l, (name, grad_w, grad_l)  # gradient descent raises l_w and lowers l_l


@pytest.mark.parametrize(
    "name", ["spo", "spo_abs", "infonca", "nca", "nca_pair", "rpo", "dro", "una_reward_mse", "dpo", "drdo"]
)
def test_best_of_four_goes_up_and_worst_goes_down(name):
    policy = torch.full((1, 4), -3.0, requires_grad=True)
    rewards = torch.tensor([[0.5, 2.0, -2.0, 0.0]])  # best index 1, worst index 2
    inputs = full_inputs(
        name, policy, torch.full((1, 4), -3.0), rewards, torch.full((1, 4), 0.5), torch.ones(1, 4),
        torch.ones(1, 4), torch.ones(1, 4, dtype=torch.bool), torch.tensor([-4.0]),
    )
    compute_objective(name, inputs, **({"pairs": "best_vs_rest"} if name in ("dpo", "nca_pair") else {}))[0].backward()
    assert policy.grad[0, 1] < 0 < policy.grad[0, 2], (name, policy.grad)


def test_dro_pulls_each_implicit_reward_toward_its_target_from_both_sides():
    # targets r = [0.5, 0.5] (no prompt term); beta*rho = [+1.0, -1.0]: above the target goes down, below goes up
    policy = torch.tensor([[0.0, -20.0]], requires_grad=True)
    inputs = ObjectiveInputs(
        policy_logps=policy, ref_logps=torch.tensor([[-10.0, -10.0]]), mask=torch.ones(1, 2, dtype=torch.bool),
        rewards=torch.tensor([[0.5, 0.5]]),
    )
    compute_objective("dro", inputs, prompt_normalization=False, baseline="none")[0].backward()
    above, below = policy.grad[0].tolist()
    assert above > 0 > below
    # the prompt term moves the target: a prompt the policy finds likelier than the reference lowers it
    policy.grad = None
    inputs.prompt_policy_logps, inputs.prompt_ref_logps = torch.tensor([0.0]), torch.tensor([-20.0])
    compute_objective("dro", inputs, prompt_normalization=True, baseline="none")[0].backward()
    assert policy.grad[0, 1] > 0  # target 0.5 - 0.1 * 20 = -1.5 < -1.0: now pushed down as well


def test_drdo_focal_term_pushes_the_preferred_response_up():
    # Equal rewards and log-probs: the distillation term has zero gradient, only the focal term acts;
    # order_by=position makes index 0 the focal w. At l = -40, pi(y_l) ~ e^-40 and the two forms nearly agree:
    # both push y_w up, and the modulation (1 - p_w)^gamma pushes y_l down (its direction term is negligible).
    policy = torch.tensor([[-40.0, -40.0]], requires_grad=True)
    inputs = ObjectiveInputs(policy_logps=policy, mask=torch.ones(1, 2, dtype=torch.bool),
                             rewards=torch.tensor([[0.0, 0.0]]))
    for form in ("unlikelihood", "paper"):
        policy.grad = None
        compute_objective("drdo", inputs, order_by="position", focal_form=form)[0].backward()
        grad_w, grad_l = policy.grad[0].tolist()
        assert grad_w < 0 < grad_l, form


def test_drdo_focal_forms_move_the_dispreferred_response_in_opposite_directions():
    # As documented in drdo's docstring: the printed form maximises log(pi(y_w) / (1 - pi(y_l))), which RAISES
    # pi(y_l); the unlikelihood form maximises log(pi(y_w) * (1 - pi(y_l))), which lowers it.
    # gamma = 0 removes the modulation (factor 1), equal rewards and l_w = l_l leave the distillation gradient 0:
    #   focal = -alpha * (l_w -/+ log(1 - e^{l_l}))  ->  d/dl_l = +/- alpha * e^{l_l} / (1 - e^{l_l})
    # l_l = -1: e^-1 / (1 - e^-1) = 1 / (e - 1) = 0.58198; alpha = 0.1 -> 0.058198; d/dl_w = -alpha.
    policy = torch.tensor([[-1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    inputs = ObjectiveInputs(policy_logps=policy, mask=torch.ones(1, 2, dtype=torch.bool),
                             rewards=torch.zeros(1, 2, dtype=torch.float64))
    expected = 0.1 / (math.e - 1.0)
    compute_objective("drdo", inputs, order_by="position", gamma=0.0, focal_form="paper")[0].backward()
    grad_w, grad_l = policy.grad[0].tolist()
    assert grad_l == pytest.approx(-expected) and grad_l < 0  # descent raises l_l: pi(y_l) goes UP
    assert grad_w == pytest.approx(-0.1)
    policy.grad = None
    compute_objective("drdo", inputs, order_by="position", gamma=0.0, focal_form="unlikelihood")[0].backward()
    grad_w, grad_l = policy.grad[0].tolist()
    assert grad_l == pytest.approx(expected) and grad_l > 0  # pi(y_l) goes down
    assert grad_w == pytest.approx(-0.1)
    # With the default gamma = 2 and a likely y_l (l = -0.1, p_w = 1/2), the printed form still raises pi(y_l):
    # d/dl_l = -alpha * m * (gamma * sig(0) * (l_w - log(1 - e^{l_l})) + 1 / (e^{-l_l} - 1)),  m = sig(0)^2
    #        = -0.1 * 0.25 * (2 * 0.5 * (-0.1 + 2.35217) + 9.50833) = -0.29401
    likely = torch.tensor([[-0.1, -0.1]], dtype=torch.float64, requires_grad=True)
    inputs = ObjectiveInputs(policy_logps=likely, mask=torch.ones(1, 2, dtype=torch.bool),
                             rewards=torch.zeros(1, 2, dtype=torch.float64))
    compute_objective("drdo", inputs, order_by="position", focal_form="paper")[0].backward()
    by_hand = -0.1 * 0.25 * ((-0.1 - math.log(1 - math.exp(-0.1))) + 1 / math.expm1(0.1))
    assert likely.grad[0, 1].item() == pytest.approx(by_hand) and by_hand < 0


def test_kto_pushes_desirable_up_and_undesirable_down_in_single_response_groups():
    policy = torch.tensor([[-2.0], [-2.0]], requires_grad=True)
    inputs = ObjectiveInputs(policy_logps=policy, ref_logps=torch.tensor([[-2.0], [-2.0]]),
                             mask=torch.ones(2, 1, dtype=torch.bool), labels=torch.tensor([[1], [0]]))
    compute_objective("kto", inputs)[0].backward()
    assert policy.grad[0, 0] < 0 < policy.grad[1, 0]
