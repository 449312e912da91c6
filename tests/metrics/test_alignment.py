"""align_depth / resize_to against the per-image NumPy reference and hand-made cases (SPEC 7)."""

import logging
import math

import numpy as np
import pytest
import torch

from experiments.bench.metrics import ref_align
from lightning_modules.metrics import (
    align_depth,
    depth_metrics,
    fit_scale_shift,
    resize_to,
)


@pytest.mark.parametrize("space", ["depth", "disparity", "log", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_align_matches_numpy_reference(space, seed, depth_case):
    pred, gt, valid = depth_case(seed=seed, space=space)
    out = align_depth(pred, gt, valid, space, min_depth=1e-3, max_depth=10.0)
    assert out.shape == pred.shape and out.dtype == torch.float64
    for i in range(pred.shape[0]):
        ref = ref_align(pred[i, 0].numpy(), gt[i, 0].numpy(), valid[i, 0].numpy(), space, 1e-3, 10.0)
        np.testing.assert_allclose(out[i, 0].numpy(), ref, rtol=1e-9, atol=1e-12)


def test_align_float32_input_and_bhw_layout(depth_case):
    pred, gt, valid = depth_case(seed=3, space="log")
    out = align_depth(pred[:, 0].float(), gt[:, 0].float(), valid[:, 0], "log")
    assert out.shape == pred[:, 0].shape
    for i in range(pred.shape[0]):
        ref = ref_align(pred[i, 0].float().numpy(), gt[i, 0].float().numpy(), valid[i, 0].numpy(), "log")
        np.testing.assert_allclose(out[i].numpy(), ref, rtol=1e-9)


@pytest.mark.parametrize("space", ["depth", "disparity", "log"])
def test_affine_in_own_domain_is_recovered_exactly(space):
    """A prediction equal to GT up to scale and shift in the space's domain scores perfectly."""
    rng = np.random.default_rng(7)
    gt = rng.uniform(0.5, 10.0, size=(2, 1, 16, 20))
    valid = rng.uniform(size=gt.shape) < 0.8
    domain = {"depth": gt, "disparity": 1.0 / gt, "log": np.log(gt)}[space]
    pred = (domain - np.array([-0.8, -1.5]).reshape(2, 1, 1, 1)) / np.array([2.5, 0.7]).reshape(2, 1, 1, 1)
    if space == "log":
        assert (pred > 0).all()
    pred[~valid] = 1e6  # garbage where invalid must not matter
    pred_t, gt_t, valid_t = torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(valid)
    aligned = align_depth(pred_t, gt_t, valid_t, space, min_depth=1e-3, max_depth=10.0)
    m = depth_metrics(aligned, gt_t, valid_t)
    assert float(m["abs_rel"].abs().max()) < 1e-12
    assert float(m["rmse"].max()) < 1e-10
    assert torch.equal(m["delta1"], torch.ones(2, dtype=torch.float64))
    # and a plain affine prediction in DEPTH is not recovered in log space (the fit is in-domain)
    if space == "log":
        lin = torch.from_numpy((gt - 0.4) / 2.5)
        m2 = depth_metrics(align_depth(lin, gt_t, valid_t, "log"), gt_t, valid_t)
        assert float(m2["abs_rel"].min()) > 1e-3


def test_hand_made_depth_fit():
    p = torch.tensor([[[[0.0, 1.0, 2.0, 9.0]]]], dtype=torch.float64)
    g = torch.tensor([[[[1.0, 3.0, 5.0, 0.0]]]], dtype=torch.float64)
    v = torch.tensor([[[[True, True, True, False]]]])
    out = align_depth(p, g, v, "depth")  # s = 2, t = 1; the invalid pixel gets 19
    np.testing.assert_allclose(out.flatten().numpy(), [1.0, 3.0, 5.0, 19.0], rtol=1e-12)
    # constant prediction: s = 0, t = mean(g) over the fit
    out = align_depth(torch.full_like(p, 4.0), g, v, "depth")
    np.testing.assert_allclose(out.flatten().numpy(), [3.0, 3.0, 3.0, 3.0], rtol=1e-12)


def test_log_space_ignores_nonpositive_pred_and_caps_at_exp5():
    # fit pixels: p > 0 and g > 0; on them ln g = p exactly (s=1, t=0)
    g = np.array([1.0, math.e, math.e**2, math.e**6, 2.0, 3.0])
    p = np.array([0.0 + 1e-300, 1.0, 2.0, 6.0, -3.0, 0.0])  # last two are excluded (p <= 0)
    v = np.ones(6, dtype=bool)
    t = [torch.from_numpy(x).reshape(1, 1, 1, 6) for x in (p, g, v)]
    out = align_depth(*t, "log", min_depth=1e-5, max_depth=math.inf).flatten().numpy()
    np.testing.assert_allclose(out[:3], [1.0, math.e, math.e**2], rtol=1e-9)
    assert out[3] == pytest.approx(math.exp(5.0), rel=1e-12)  # ln g = 6 capped at 5
    np.testing.assert_allclose(out[4:], [math.exp(-3.0), 1.0], rtol=1e-9)
    ref = ref_align(p, g, v, "log", 1e-5, math.inf)
    np.testing.assert_allclose(out, ref, rtol=1e-9)
    # and then the dataset range clip
    out80 = align_depth(*t, "log", min_depth=0.5, max_depth=80.0).flatten().numpy()
    assert out80[3] == 80.0 and out80[4] == 0.5


def test_disparity_clip_and_range_clip():
    g = np.array([1.0, 2.0, 4.0, 5.0, 5.0])
    p = np.array([1.0, 0.5, 0.25, -2.0, 0.0005])  # fit: disp = p exactly; pixels 3, 4 invalid
    v = np.array([True, True, True, False, False])
    t = [torch.from_numpy(x).reshape(1, 1, 1, 5) for x in (p, g, v)]
    out = align_depth(*t, "disparity", min_depth=1e-5, max_depth=math.inf).flatten().numpy()
    np.testing.assert_allclose(out, [1.0, 2.0, 4.0, 1000.0, 1000.0], rtol=1e-9)  # disp >= 1e-3
    out = align_depth(*t, "disparity", min_depth=1.5, max_depth=80.0).flatten().numpy()
    np.testing.assert_allclose(out, [1.5, 2.0, 4.0, 80.0, 80.0], rtol=1e-12)
    np.testing.assert_allclose(out, ref_align(p, g, v, "disparity", 1.5, 80.0), rtol=1e-12)


def test_depth_floor_and_none_space():
    p = torch.tensor([-5.0, 0.0, 2.0, 50.0], dtype=torch.float64).reshape(1, 1, 1, 4)
    v = torch.ones_like(p, dtype=torch.bool)
    out = align_depth(p, p.abs() + 1, v, "none", min_depth=0.0, max_depth=10.0).flatten().tolist()
    assert out == [1e-6, 1e-6, 2.0, 10.0]
    assert p.flatten().tolist() == [-5.0, 0.0, 2.0, 50.0]  # input untouched


def test_inputs_are_not_modified(depth_case):
    pred, gt, valid = depth_case(seed=5, space="log")
    before = (pred.clone(), gt.clone(), valid.clone())
    for space in ("depth", "disparity", "log", "none"):
        align_depth(pred, gt, valid, space)
    assert all(torch.equal(a, b) for a, b in zip(before, (pred, gt, valid)))


def test_no_fit_pixel_gives_nan_and_warns(caplog):
    p = torch.zeros(2, 1, 3, 3, dtype=torch.float64)  # p <= 0 everywhere: log fit impossible
    p[1] = 0.5
    g = torch.ones_like(p)
    v = torch.ones_like(p, dtype=torch.bool)
    with caplog.at_level(logging.WARNING):
        out = align_depth(p, g * 2, v, "log")
    assert torch.isnan(out[0]).all() and torch.isfinite(out[1]).all()
    assert "[0]" in caplog.text


def test_nan_outside_mask_does_not_leak():
    rng = np.random.default_rng(2)
    g = rng.uniform(1, 5, size=(1, 1, 8, 8))
    p = np.log(g) * 0.5 + 0.1
    v = np.ones_like(g, dtype=bool)
    v[..., 0] = False
    p_bad, g_bad = p.copy(), g.copy()
    p_bad[..., 0, 0], g_bad[..., 1, 0], g_bad[..., 2, 0] = np.nan, np.inf, np.nan
    a = align_depth(torch.from_numpy(p_bad), torch.from_numpy(g_bad), torch.from_numpy(v), "log")
    b = align_depth(torch.from_numpy(p), torch.from_numpy(g), torch.from_numpy(v), "log")
    assert torch.allclose(a[..., 1:], b[..., 1:], rtol=1e-12)


def test_fit_scale_shift_far_from_origin():
    """Cancellation check: x = 1e6 + small, exact line recovered (two-pass shift)."""
    x = 1e6 + torch.linspace(0, 1, 1000, dtype=torch.float64)[None]
    y = 3.0 * x - 2.0
    s, t, n = fit_scale_shift(x, y, torch.ones_like(x, dtype=torch.bool))
    assert float(n) == 1000
    assert float(s) == pytest.approx(3.0, rel=1e-9) and float(t) == pytest.approx(-2.0, abs=1e-3)


def test_bad_arguments():
    p = torch.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match="space"):
        align_depth(p, p, p > 0, "inverse")
    with pytest.raises(ValueError, match=r"\(1, 1, 4, 4\).*\(1, 1, 4, 5\)"):
        align_depth(p, torch.ones(1, 1, 4, 5), p > 0, "log")
    with pytest.raises(ValueError, match="min_depth"):
        align_depth(p, p, p > 0, "log", min_depth=5.0, max_depth=1.0)


def _np_bilinear(img, out_h, out_w):
    """Independent half-pixel bilinear resize (align_corners=False) of a 2-D array."""
    in_h, in_w = img.shape

    def coords(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    r0, r1, fr = coords(out_h, in_h)
    c0, c1, fc = coords(out_w, in_w)
    top = img[r0][:, c0] * (1 - fc) + img[r0][:, c1] * fc
    bot = img[r1][:, c0] * (1 - fc) + img[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bot * fr[:, None]


def test_resize_to():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=torch.float64)
    out = resize_to(x[None, None], (4, 4))[0, 0]
    np.testing.assert_allclose(out[0].numpy(), [0.0, 0.25, 0.75, 1.0])
    rng = np.random.default_rng(0)
    img = rng.normal(size=(2, 6, 9))
    out = resize_to(torch.from_numpy(img), (10, 14))  # (B,H,W) layout kept
    assert out.shape == (2, 10, 14)
    for i in range(2):
        np.testing.assert_allclose(out[i].numpy(), _np_bilinear(img[i], 10, 14), rtol=1e-12, atol=1e-12)
    same = torch.from_numpy(img)
    assert resize_to(same, (6, 9)) is same
