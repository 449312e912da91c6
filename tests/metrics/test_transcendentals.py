"""pixels.log_into / exp_inplace (torch's vectorised log and exp on NumPy buffers) against the
correctly rounded values of Python's math module, special values included."""

import math

import numpy as np

from lightning_modules.metrics.pixels import LOG_DELTA_THRESHOLDS, exp_inplace, log_into


def ulps(a: float, b: float) -> float:
    """|a - b| in units of the last place of b (float64)."""
    return abs(a - b) / math.ulp(b) if b else abs(a)


def test_log_into_casts_first_and_is_within_one_ulp():
    rng = np.random.default_rng(0)
    g32 = rng.uniform(1e-3, 80.0, size=(37, 29)).astype(np.float32)  # a 2-D float32 block, as a box crop
    out = np.empty(g32.size)
    assert log_into(out, g32) is out
    exact = [math.log(float(v)) for v in g32.reshape(-1)]  # the float32 value, widened exactly, then ln
    assert max(ulps(a, b) for a, b in zip(out.tolist(), exact)) <= 1.0


def test_exp_inplace_is_within_one_ulp():
    x = np.linspace(-20.0, 5.0, 4099)
    expected = [math.exp(v) for v in x.tolist()]
    assert exp_inplace(x) is x
    assert max(ulps(a, b) for a, b in zip(x.tolist(), expected)) <= 1.0


def test_special_values_follow_ieee():
    out = np.empty(5)
    log_into(out, np.array([0.0, -1.0, np.nan, np.inf, 1.0]))
    assert out[0] == -np.inf and np.isnan(out[1]) and np.isnan(out[2]) and out[3] == np.inf and out[4] == 0.0
    e = exp_inplace(np.array([-np.inf, np.inf, np.nan, 0.0, -800.0]))
    assert e[0] == 0.0 and e[1] == np.inf and np.isnan(e[2]) and e[3] == 1.0 and e[4] == 0.0


def test_delta_thresholds_use_the_same_log():
    out = np.empty(3)
    log_into(out, np.array([1.25, 1.25**2, 1.25**3]))
    assert out.tolist() == list(LOG_DELTA_THRESHOLDS)  # |ln d - ln 1| at d = 1.25^k is not below its threshold
    assert all(ulps(t, math.log(1.25**k)) <= 1.0 for k, t in enumerate(LOG_DELTA_THRESHOLDS, 1))
