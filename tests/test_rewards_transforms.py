"""Reward transforms on hand values."""

import math
import warnings

import numpy as np
import pytest

from rewardalign.config import ConfigError
from rewardalign.rewards.transforms import Transform, describe, minmax, parse_transform, sigmoid, standardize


def test_standardize_hand_values():
    """[1, 2, 3, 4]: mean 2.5, population std sqrt(1.25) = 1.118034; z = (r - 2.5) / 1.118034."""
    z, stats = standardize(np.array([1.0, 2.0, 3.0, 4.0]))
    assert stats == pytest.approx({"mean": 2.5, "std": math.sqrt(1.25)})
    assert z.tolist() == pytest.approx([-1.341641, -0.447214, 0.447214, 1.341641], abs=1e-6)
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="std 0"):
        standardize(np.array([2.0, 2.0]))


def test_minmax_declared_range():
    """UltraFeedback ratings 1..10: s = (r - 1) / 9, so 1 -> 0, 5.5 -> 0.5, 10 -> 1, 4 -> 1/3."""
    assert minmax(np.array([1.0, 5.5, 10.0, 4.0]), 1, 10).tolist() == pytest.approx([0, 0.5, 1, 1 / 3])
    with pytest.raises(ValueError, match="outside the declared range"):
        minmax(np.array([0.5, 3.0]), 1, 10)


def test_sigmoid_hand_values_without_overflow():
    """sigma(0) = 0.5, sigma(2) = 0.880797, sigma(-2) = 0.119203; +-1000 saturate without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sigmoid(np.array([0.0, 2.0, -2.0, 1000.0, -1000.0]))
    assert s.tolist() == pytest.approx([0.5, 0.880797, 0.119203, 1.0, 0.0], abs=1e-6)


def test_transform_config():
    assert parse_transform("sigmoid").target == "scores"
    assert parse_transform("standardize").target == "rewards"
    assert parse_transform(None).target is None
    t = parse_transform({"kind": "minmax", "range": [1, 10]})
    values, stats = t.apply(np.array([1.0, 10.0]))
    assert values.tolist() == [0.0, 1.0] and stats == {"lo": 1.0, "hi": 10.0}
    assert Transform("minmax").with_default_range((0.0, 4.0)).range == (0.0, 4.0)
    with pytest.raises(ConfigError, match="declared range"):
        Transform("minmax").with_default_range(None)
    with pytest.raises(ConfigError, match="must be one of"):
        parse_transform("zscore")
    with pytest.raises(ConfigError, match="target must be 'rewards'"):
        parse_transform({"kind": "standardize", "target": "scores"})
    with pytest.raises(ConfigError, match="lo < hi"):
        parse_transform({"kind": "minmax", "range": [3, 1]})
    with pytest.raises(ConfigError, match="unknown transform field"):
        parse_transform({"kind": "minmax", "bounds": [0, 1]})


def test_describe():
    d = describe(np.array([1.0, 3.0]))
    assert d == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}
