"""GenPercept's pixel losses against hand-worked examples and per-pixel NumPy re-implementations
written here from SPEC section 9 / the released code's behaviour (not from the code under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_modules.objectives.pixel_losses import (
    angular_loss,
    gradient_l1,
    masked_mse,
    median_scale,
    ssi_l1,
)


def _case(seed=0, b=2, h=5, w=7, channels=1):
    rng = np.random.default_rng(seed)
    pred = rng.uniform(1, 3, (b, channels, h, w))
    gt = rng.uniform(1, 3, (b, channels, h, w))
    mask = rng.random((b, 1, h, w)) > 0.3
    return pred, gt, mask


def _t(*arrays):
    return [torch.tensor(a, dtype=torch.float32) if a.dtype != bool else torch.tensor(a) for a in arrays]


# ------------------------------------------------------------------ NumPy references (per pixel, loops)
def ref_mse(p, g, m):
    vals = [(p[i, 0, y, x] - g[i, 0, y, x]) ** 2 for i, y, x in zip(*np.nonzero(m[:, 0]))]
    return float(np.mean(vals))


def ref_lower_median(v):
    return float(np.sort(v)[(len(v) - 1) // 2])


def ref_ssi(p, g, m):
    errs = []
    for i in range(p.shape[0]):
        keep = m[i, 0]
        pi, gi = p[i, 0][keep], g[i, 0][keep]
        a = np.stack([pi, np.ones_like(pi)], axis=1)
        (s, t), *_ = np.linalg.lstsq(a, gi, rcond=None)
        if s <= 0:
            aligned = pi * (ref_lower_median(gi) / (ref_lower_median(pi) + 1e-8))
        else:
            aligned = s * pi + t
        errs.extend(np.abs(aligned - gi).tolist())
    return float(np.mean(errs))


def ref_grad(p, g, m, both):
    b, _, h, w = p.shape
    d = (p - g) * m
    total = 0.0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                if y + 1 < h and m[i, 0, y, x] and m[i, 0, y + 1, x]:
                    total += abs(d[i, 0, y + 1, x] - d[i, 0, y, x])
                if both and x + 1 < w and m[i, 0, y, x] and m[i, 0, y, x + 1]:
                    total += abs(d[i, 0, y, x + 1] - d[i, 0, y, x])
    return total / m.sum()


def ref_angular(p, g, m, eps=1e-4):
    out = []
    for i, y, x in zip(*np.nonzero(m[:, 0])):
        a, b = p[i, :, y, x], g[i, :, y, x]
        cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
        out.append(math.acos(min(max(cos, -(1 - eps)), 1 - eps)))
    return float(np.mean(out))


# ------------------------------------------------------------------ tests
def test_mse_pools_over_valid_pixels_of_the_batch():
    p, g, m = _case(0)
    assert float(masked_mse(*_t(p, g, m))) == pytest.approx(ref_mse(p, g, m), rel=1e-5)


def test_ssi_hand_example_exact_affine_is_zero():
    g = torch.tensor([[[[1.0, 2.0], [3.0, 2.5]]]])
    pred = (g + 1.0) / 2.0  # s = 2, t = -1 recovers g exactly
    assert float(ssi_l1(pred, g, torch.ones_like(g, dtype=torch.bool))) == pytest.approx(0.0, abs=1e-5)


def test_ssi_falls_back_to_median_scaling_when_the_fitted_scale_is_not_positive():
    # pred anti-correlated with g -> least-squares s < 0 -> aligned = pred * med(g) / med(pred).
    g = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])
    pred = torch.tensor([[[[4.0, 3.0, 2.0, 1.0]]]])
    mask = torch.ones_like(g, dtype=torch.bool)
    # lower medians: med(g) = 2, med(pred) = 2 -> ratio 1/(1+5e-9) ~ 1: |4-1|+|3-2|+|2-3|+|1-4| = 8, / 4 = 2
    assert float(median_scale(pred, g, mask)) == pytest.approx(1.0, abs=1e-6)
    assert float(ssi_l1(pred, g, mask)) == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssi_matches_numpy_least_squares(seed):
    p, g, m = _case(seed)
    p[1] = 4.0 - p[1]  # second image anti-correlated with random g: often exercises the median branch
    assert float(ssi_l1(*_t(p, g, m))) == pytest.approx(ref_ssi(p, g, m), rel=1e-4)


def test_ssi_gradient_flows_through_the_fitted_scale_and_shift():
    """Autograd (scale/shift NOT detached) equals central finite differences of the NumPy reference."""
    p, g, m = _case(3, b=1, h=4, w=5)
    p = 0.5 * g + 0.3 + 0.3 * (p - 2.0)  # correlated with g: the least-squares branch (s > 0)
    pt = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    ssi_l1(pt, torch.tensor(g), torch.tensor(m)).backward()
    grad = pt.grad.numpy()
    h = 1e-5
    num = np.zeros_like(p)
    for idx in zip(*np.nonzero(m)):
        up, dn = p.copy(), p.copy()
        up[idx] += h
        dn[idx] -= h
        num[idx] = (ref_ssi(up, g, m) - ref_ssi(dn, g, m)) / (2 * h)
    np.testing.assert_allclose(grad[m], num[m], rtol=2e-2, atol=2e-4)
    # with s, t detached the gradient would be sign(s p + t - g) * s / n: measurably different
    pi, gi = p[m], g[m]
    (s, t), *_ = np.linalg.lstsq(np.stack([pi, np.ones_like(pi)], 1), gi, rcond=None)
    assert s > 0
    detached = np.sign(s * pi + t - gi) * s / pi.size
    assert np.abs(grad[m] - detached).max() > 1e-3


def test_gradient_axes_hand_example():
    """d = pred - gt constant down each column, a ramp along each row (all valid, 2 x 3, count 6):
    released (H only) sees no difference; 'both' sees |1-0| + |2-1| per row = 4 / 6."""
    gt = torch.zeros(1, 1, 2, 3)
    pred = torch.tensor([[[[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]]])
    mask = torch.ones(1, 1, 2, 3, dtype=torch.bool)
    assert float(gradient_l1(pred, gt, mask, "released")) == 0.0
    assert float(gradient_l1(pred, gt, mask, "both")) == pytest.approx(4 / 6)
    ramp_down = pred.transpose(-1, -2)[..., :2, :]  # rows [0,0] / [1,1]: H differences only -> 2 / 4
    mask2 = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    assert float(gradient_l1(ramp_down, torch.zeros(1, 1, 2, 2), mask2, "released")) == pytest.approx(0.5)
    assert float(gradient_l1(ramp_down, torch.zeros(1, 1, 2, 2), mask2, "both")) == pytest.approx(0.5)


@pytest.mark.parametrize("axes", ["released", "both"])
def test_gradient_matches_numpy_loops(axes):
    p, g, m = _case(4)
    assert float(gradient_l1(*_t(p, g, m), axes)) == pytest.approx(ref_grad(p, g, m, axes == "both"), rel=1e-5)


def test_angular_loss_matches_numpy_and_clamps():
    p, g, m = _case(5, channels=3)
    p, g = p - 2.0, g - 2.0  # signed vectors, not unit length
    assert float(angular_loss(*_t(p, g, m))) == pytest.approx(ref_angular(p, g, m), rel=1e-5)
    n = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    one = torch.ones(1, 1, 1, 1, dtype=torch.bool)
    assert float(angular_loss(n, n, one)) == pytest.approx(math.acos(1 - 1e-4), rel=1e-4)  # clamped, not 0
    assert float(angular_loss(-n, n, one)) == pytest.approx(math.acos(-(1 - 1e-4)), rel=1e-6)


def test_losses_with_no_valid_pixel_are_zero_and_keep_the_graph():
    pred = torch.rand(1, 1, 3, 3, requires_grad=True)
    none = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
    for loss in (masked_mse(pred, pred.detach(), none), ssi_l1(pred, pred.detach(), none),
                 gradient_l1(pred, pred.detach(), none)):
        assert float(loss.detach()) == 0.0 and loss.requires_grad


def test_bad_shapes_and_axes_are_named():
    with pytest.raises(ValueError, match="grad_axes"):
        gradient_l1(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2, dtype=torch.bool), "x")
    with pytest.raises(ValueError, match="mask"):
        masked_mse(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 2, 2, dtype=torch.bool))
