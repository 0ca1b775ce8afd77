"""Estimates before training: they follow the algorithms' work and decide skips, not rules."""

from __future__ import annotations

import pytest

from keel.families.recommendation.estimate import (
    MEMORY_SHARE,
    Estimate,
    Shape,
    available_bytes,
    calibrated,
    estimate_fit,
    scoring_seconds,
    too_big,
)

ML20M = Shape(users=138_493, items=26_744, interactions=20_000_263, pairs=8e9)


def test_ease_grows_with_items_squared_and_cubed():
    small = estimate_fit("ease", {}, Shape(1000, 5_000, 100_000, 1e7))
    large = estimate_fit("ease", {}, Shape(1000, 20_000, 100_000, 1e7))
    # two float64 items x items matrices: 16 n^2 bytes more when n grows
    assert large.bytes - small.bytes == pytest.approx(16 * (20_000**2 - 5_000**2), rel=0.05)
    assert large.seconds / small.seconds > 30  # n^3 time
    assert "20,000 x 20,000" in large.basis
    # at MovieLens-20M's catalogue EASE needs more than 10 GB: a 24 GB box is close
    assert estimate_fit("ease", {}, ML20M).bytes > 10 * 2**30


def test_factor_models_follow_iterations_factors_and_interactions():
    base = estimate_fit("als", {"factors": 64, "iterations": 10}, ML20M)
    assert estimate_fit("als", {"factors": 64, "iterations": 20}, ML20M).seconds == pytest.approx(
        2 * base.seconds
    )
    more = estimate_fit("als", {"factors": 256, "iterations": 10}, ML20M)
    assert more.seconds == pytest.approx(2 * base.seconds)  # sqrt(factors)
    bpr = estimate_fit("bpr", {}, ML20M)  # implicit's defaults: 100 epochs
    assert bpr.seconds > 10 * 60  # the 26 minutes measured, give or take the machine
    half = estimate_fit("bpr", {}, ML20M.scaled(0.5))
    assert half.seconds == pytest.approx(bpr.seconds / 2, rel=0.01)


def test_shape_of_a_frame():
    import pandas as pd

    frame = pd.DataFrame({"user": ["a", "a", "a", "b"], "item": ["x", "y", "x", "x"]})
    shape = Shape.of(frame)
    # a repeat counts again: estimates err on the high side
    assert (shape.users, shape.items, shape.interactions, shape.pairs) == (2, 2, 4, 10.0)


def test_calibration_uses_the_median_ratio():
    assert calibrated(10.0, []) == 10.0
    assert calibrated(10.0, [(4.0, 2.0), (9.0, 3.0), (100.0, 1.0)]) == 30.0


def test_too_big_names_the_need_and_the_machine():
    huge = Estimate("ease", 10.0, 30 * 2**30, "inverse of a 60,000 x 60,000 matrix")
    reason = too_big(huge, 24 * 2**30)
    assert "30.0 GB" in reason and "24.0 GB available" in reason and "60,000" in reason
    assert too_big(huge, None) is None  # the kernel did not say: nothing is refused
    fits = Estimate("als", 10.0, MEMORY_SHARE * 2**30 - 1, "x")
    assert too_big(fits, 2**30) is None
    available = available_bytes()
    assert available is None or available > 0


def test_scoring_is_users_times_items():
    assert scoring_seconds(2000, 3000) == pytest.approx(2 * scoring_seconds(1000, 3000))
    assert estimate_fit("popularity", {}, ML20M).seconds < 5
