"""pixels.log_into / exp_inplace (float64 ln and exp on NumPy buffers, by NumPy or torch: whichever
is vectorised on the CPU) against the correctly rounded values of Python's math module."""

import math

import numpy as np
import pytest
import torch

from lightning_modules.metrics import pixels
from lightning_modules.metrics.pixels import LOG_DELTA_THRESHOLDS, exp_inplace, log_into

MAX_ULPS = 4.0
"""NumPy's and torch's (SLEEF u10) float64 log/exp stay within a few ulp of the rounded value."""


def ulps(a: float, b: float) -> float:
    """|a - b| in units of the last place of b (float64)."""
    return abs(a - b) / math.ulp(b) if b else abs(a)


@pytest.fixture(params=[True, False], ids=["numpy", "torch"])
def implementation(request, monkeypatch):
    """Both implementations on any machine: NUMPY_LOG_EXP forced to each value."""
    monkeypatch.setattr(pixels, "NUMPY_LOG_EXP", request.param)
    return request.param


def test_log_into_casts_first(implementation):
    rng = np.random.default_rng(0)
    g32 = rng.uniform(1e-3, 80.0, size=(37, 29)).astype(np.float32)  # a 2-D float32 block, as a box crop
    out = np.empty(g32.size)
    assert log_into(out, g32) is out
    exact = [math.log(float(v)) for v in g32.reshape(-1)]  # the float32 value, widened exactly, then ln
    assert max(ulps(a, b) for a, b in zip(out.tolist(), exact)) <= MAX_ULPS
    widened = g32.astype(np.float64).reshape(-1)  # the implementation named: bit for bit
    expected = np.log(widened) if implementation else torch.log(torch.from_numpy(widened)).numpy()
    np.testing.assert_array_equal(out, expected)


def test_exp_inplace(implementation):
    x = np.linspace(-20.0, 5.0, 4099)
    expected = [math.exp(v) for v in x.tolist()]
    named = np.exp(x) if implementation else torch.exp(torch.from_numpy(x)).numpy()
    assert exp_inplace(x) is x
    assert max(ulps(a, b) for a, b in zip(x.tolist(), expected)) <= MAX_ULPS
    np.testing.assert_array_equal(x, named)


def test_special_values_follow_ieee(implementation):
    out = np.empty(5)
    with np.errstate(all="ignore"):
        log_into(out, np.array([0.0, -1.0, np.nan, np.inf, 1.0]))
        e = exp_inplace(np.array([-np.inf, np.inf, np.nan, 0.0, -800.0]))
    assert out[0] == -np.inf and np.isnan(out[1]) and np.isnan(out[2]) and out[3] == np.inf and out[4] == 0.0
    assert e[0] == 0.0 and e[1] == np.inf and np.isnan(e[2]) and e[3] == 1.0 and e[4] == 0.0


def test_delta_thresholds_use_the_same_log():
    out = np.empty(3)
    log_into(out, np.array([1.25, 1.25**2, 1.25**3]))
    assert out.tolist() == list(LOG_DELTA_THRESHOLDS)  # |ln d - ln 1| at d = 1.25^k is not below its threshold
    assert all(ulps(t, math.log(1.25**k)) <= MAX_ULPS for k, t in enumerate(LOG_DELTA_THRESHOLDS, 1))

