"""The study's statistics against hand-worked values and textbook formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.stats import (
    PairedDifference,
    curve_area,
    oscillation,
    paired_bootstrap,
    ridge_probe_r2,
    steps_to_threshold,
    verdict,
)


def test_bootstrap_of_a_constant_difference_is_that_constant():
    a = np.full((3, 5), 0.20)
    b = np.full((3, 5), 0.25)
    d = paired_bootstrap(a, b, n_boot=500)
    assert (d.mean, d.low, d.high) == pytest.approx((-0.05, -0.05, -0.05))
    assert d.std_error == pytest.approx(0.0, abs=1e-12)


def test_bootstrap_interval_matches_the_normal_theory_width():
    # one seed, 400 images, d ~ N(0.01, 0.05^2): the image-level bootstrap SE ~ sd / sqrt(n) = 0.0025
    rng = np.random.default_rng(0)
    d = rng.normal(0.01, 0.05, size=(1, 400))
    res = paired_bootstrap(d, np.zeros_like(d), n_boot=4000, seed=1)
    se = d.std(ddof=1) / math.sqrt(400)
    assert res.mean == pytest.approx(d.mean())
    assert res.std_error == pytest.approx(se, rel=0.08)
    assert res.high - res.low == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert res.minimal_detectable_effect == pytest.approx(2.8016 * res.std_error, rel=1e-4)


def test_bootstrap_resamples_seeds_too():
    # no image noise at all, but seeds disagree: the interval must reflect the seed spread
    d = np.array([[0.0] * 10, [0.02] * 10, [-0.01] * 10])
    res = paired_bootstrap(d, np.zeros_like(d), n_boot=3000)
    assert res.low < 0 < res.high and res.std_error > 0.004
    with pytest.raises(ValueError, match="same shape|one shape"):
        paired_bootstrap(np.zeros((2, 3)), np.zeros((3, 2)))


def test_verdict_lines():
    diff = PairedDifference(-0.02, -0.03, -0.01, 0.005, 3, 10)
    assert verdict(diff, "editor", "generator").startswith("editor better: AbsRel difference editor - generator")
    assert verdict(PairedDifference(0.02, 0.01, 0.03, 0.005, 3, 10), "editor", "generator").startswith(
        "generator better")
    line = verdict(PairedDifference(0.0, -0.01, 0.01, 0.005, 3, 10), "editor", "generator")
    assert line.startswith("no detectable difference") and "minimal detectable effect 0.0140" in line


def test_convergence_numbers_by_hand():
    steps = np.array([0, 10, 20, 30])
    loss = np.array([1.0, 0.5, 0.7, 0.2])
    assert steps_to_threshold(steps, loss, 0.6) == 10
    assert math.isnan(steps_to_threshold(steps, loss, 0.1))
    # trapezoids: (1+.5)/2*10 + (.5+.7)/2*10 + (.7+.2)/2*10 = 7.5 + 6 + 4.5 = 18 over 30 steps
    assert curve_area(steps, loss) == pytest.approx(0.6)
    # diffs -0.5, 0.2, -0.5: mean -0.2667, sample std sqrt(((-.2333)^2 + .4667^2 + (-.2333)^2) / 2)
    assert oscillation(loss) == pytest.approx(math.sqrt((0.2333333**2 * 2 + 0.4666667**2) / 2), rel=1e-5)


def test_ridge_probe_recovers_a_linear_signal_and_not_noise():
    rng = np.random.default_rng(3)
    n_img, tok, dim = 20, 30, 8
    x = rng.normal(size=(n_img * tok, dim))
    groups = np.repeat(np.arange(n_img), tok)
    w = rng.normal(size=dim)
    signal = x @ w
    y = signal + rng.normal(0, 0.5, size=signal.shape)
    # population R^2 of the best linear predictor: var(signal) / (var(signal) + 0.25)
    expected = w @ w / (w @ w + 0.25)
    assert ridge_probe_r2(x, y, groups) == pytest.approx(expected, abs=0.03)
    assert ridge_probe_r2(x, rng.normal(size=y.shape), groups) < 0.05  # nothing to find
    with pytest.raises(ValueError, match="two images"):
        ridge_probe_r2(x, y, np.zeros_like(groups))
