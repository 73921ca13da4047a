"""Paired comparisons over worlds (rewardalign.evaluate.paired): estimates and intervals worked out by hand."""

import math

import pytest

from rewardalign.evaluate.metrics import Estimate
from rewardalign.evaluate.paired import WorldUnits, bootstrap, prompt_differences, verdict


def test_prompt_differences_pairs_prompts_and_ignores_nan_samples():
    a = [[1.0, 0.0], [0.5, math.nan], [math.nan, math.nan]]
    b = [[0.0, 0.0], [1.0, 1.0], [0.2, 0.4]]
    d = prompt_differences(a, b)
    assert d[:2] == [0.5, -0.5]
    assert math.isnan(d[2])
    with pytest.raises(ValueError, match="3 prompts against 2"):
        prompt_differences(a, b[:2])


def test_one_world_interval_is_the_prompt_bootstrap():
    # units {1, 3}: a resampled pair has mean 1, 2 or 3 with probability 1/4, 1/2, 1/4
    res = bootstrap({"t": [WorldUnits.of([1.0, 3.0])]}, n_boot=4000)
    est = res.tasks["t"]
    assert est.mean == 2.0 and (est.lo, est.hi) == (1.0, 3.0) and est.n == 1
    assert res.pooled == est


def test_seed_level_resampling():
    # two seeds whose prompts agree: only the seed draw varies, its means are 2, 3, 4 (1/4, 1/2, 1/4)
    res = bootstrap({"t": [WorldUnits.of([2.0, 2.0]), WorldUnits.of([4.0, 4.0])]})
    assert res.tasks["t"].mean == 3.0 and (res.tasks["t"].lo, res.tasks["t"].hi) == (2.0, 4.0)


def test_pooled_weighs_tasks_equally():
    # task a: 3 seeds at +1; task b: one seed at -2 -> pooled (1 - 2) / 2, no spread anywhere
    res = bootstrap({"a": [WorldUnits.of([1.0])] * 3, "b": [WorldUnits.normal(-2.0, 0.0)], "empty": []})
    assert set(res.tasks) == {"a", "b"}
    assert res.pooled.mean == -0.5 and res.pooled.lo == pytest.approx(-0.5) and res.pooled.hi == pytest.approx(-0.5)
    assert res.pooled.n == 4


def test_normal_world_draws_its_spread():
    res = bootstrap({"t": [WorldUnits.normal(1.0, 0.5)]}, n_boot=20000, seed=1)
    # 95% of N(1, 0.5^2) lies within 1 +- 1.96 * 0.5
    assert res.tasks["t"].lo == pytest.approx(1 - 0.98, abs=0.03)
    assert res.tasks["t"].hi == pytest.approx(1 + 0.98, abs=0.03)


def test_bad_worlds():
    with pytest.raises(ValueError, match="finite"):
        WorldUnits.of([math.nan])
    with pytest.raises(ValueError, match="standard error"):
        WorldUnits.normal(0.0, -1.0)
    with pytest.raises(ValueError, match="no world"):
        bootstrap({"t": []})


@pytest.mark.parametrize("lo,hi,side,expected", [
    (0.1, 0.3, ">0", "yes"), (-0.1, 0.3, ">0", "inconclusive"), (-0.3, 0.0, ">0", "no"),
    (0.0, 0.2, ">=0", "yes"), (-0.2, -0.01, ">=0", "no"), (-0.2, 0.1, ">=0", "inconclusive"),
    (-0.3, -0.1, "<0", "yes"), (0.0, 0.3, "<0", "no"), (-0.1, 0.1, "<0", "inconclusive"),
    (math.nan, math.nan, ">0", "inconclusive"),
])
def test_verdict(lo, hi, side, expected):
    assert verdict(Estimate(0.0, lo, hi, 3), side) == expected
