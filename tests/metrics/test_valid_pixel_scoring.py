"""Aligning and scoring on the valid pixels only (DepthMetrics(space=...)), and the disparity fit
domain of SPEC 7 (g > 0 AND p > 0)."""

import logging
import math

import numpy as np
import pytest
import torch

from experiments.bench.metrics import DEPTH_RANGE, MASK_KINDS, make_batch, ref_align, ref_depth_metrics
from lightning_modules.metrics import DEPTH_METRIC_NAMES, DepthMetrics, align_depth, depth_metrics


def test_disparity_fit_excludes_nonpositive_predictions():
    """Hand-worked: on the pixels with p > 0, 1/g = p exactly (s = 1, t = 0). The pixels with a
    decoded value saturated at 0 (and one below it) must not enter the fit: with them the line
    through (p, 1/g) is no longer exact and the first three depths move."""
    g = np.array([1.0, 2.0, 4.0, 5.0, 8.0])
    p = np.array([1.0, 0.5, 0.25, 0.0, -0.1])
    v = np.ones(5, dtype=bool)
    t = [torch.from_numpy(x).reshape(1, 1, 1, 5) for x in (p, g, v)]
    out = align_depth(*t, "disparity", min_depth=1e-5, max_depth=10.0).flatten().numpy()
    # disparity s*p + t = p: 1, 0.5, 0.25, then 0 and -0.1 clipped to 1e-3 -> 1000 m -> max 10
    np.testing.assert_allclose(out, [1.0, 2.0, 4.0, 10.0, 10.0], rtol=1e-12)
    # the same through the metric: |d - g| / g = 0, 0, 0, 1, 0.25 -> abs_rel 0.25; rmse sqrt((25 + 4) / 5)
    m = depth_metrics(t[0], t[1], t[2], space="disparity", min_depth=1e-5, max_depth=10.0)
    assert float(m["abs_rel"][0]) == pytest.approx(1.25 / 5, rel=1e-12)
    assert float(m["rmse"][0]) == pytest.approx(math.sqrt(29.0 / 5), rel=1e-12)
    assert float(m["delta1"][0]) == pytest.approx(3 / 5, rel=1e-12)  # ratios 1, 1, 1, 2, 1.25 (not < 1.25)


def test_log_fit_excludes_nonpositive_gt_and_pred():
    """SPEC 7 log space: fit on g > 0 and p > 0 only. ln g = 2p - 1 on the good pixels; a valid
    pixel with p = 0 is aligned (exp(-1)) but not fitted; pixels with g <= 0 are invalid here."""
    g = np.exp(2.0 * np.array([0.5, 1.0, 1.5, 2.0]) - 1.0)
    p = np.array([0.5, 1.0, 1.5, 0.0])
    g[3] = 3.0  # would pull the fit if p = 0 were used
    v = np.ones(4, dtype=bool)
    t = [torch.from_numpy(x).reshape(1, 1, 1, 4) for x in (p, g, v)]
    out = align_depth(*t, "log", min_depth=1e-5, max_depth=100.0).flatten().numpy()
    np.testing.assert_allclose(out, [1.0, math.e, math.e**2, math.exp(-1.0)], rtol=1e-12)


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("space", ["depth", "disparity", "log", "none"])
def test_fused_equals_reference_on_every_mask_kind(kind, space, close):
    pred, gt, valid = make_batch(kind, 2, seed=3)
    pred, gt, valid = pred[..., ::4, ::4], gt[..., ::4, ::4], valid[..., ::4, ::4]  # small, still the masks' shapes
    if space == "none":
        pred = gt * 1.1 + 0.05
    lo, hi = DEPTH_RANGE[kind]
    metric = DepthMetrics(space=space, min_depth=lo, max_depth=hi)
    metric.update(pred, gt, valid)
    refs = []
    for i in range(2):
        p, g, v = pred[i, 0].numpy(), gt[i, 0].numpy(), valid[i, 0].numpy()
        ref = ref_depth_metrics(ref_align(p, g, v, space, lo, hi), g, v)
        refs.append(ref)
        for name in DEPTH_METRIC_NAMES:
            close(metric.batch_values[name][i], ref[name], 1e-9, f"{kind} {space} image {i} {name}")
    out = metric.compute()
    for name in DEPTH_METRIC_NAMES:
        close(out[name], np.mean([r[name] for r in refs]), 1e-9, f"{kind} {space} mean {name}")
    # and the map route (align_depth, then DepthMetrics on aligned depth) agrees
    two_step = DepthMetrics()
    two_step.update(align_depth(pred, gt, valid, space, lo, hi), gt, valid)
    for name, value in two_step.compute().items():
        close(value, out[name], 1e-9, f"{kind} {space} two-step {name}")


def test_scratch_reuse_across_sizes_and_dtypes(depth_case, close):
    """Images of different sizes and dtypes one after another: no value leaks between them."""
    results = []
    for seed, (h, w), dtype in ((0, (24, 32), torch.float64), (1, (7, 9), torch.float32), (0, (24, 32), torch.float64)):
        pred, gt, valid = depth_case(b=2, h=h, w=w, seed=seed, space="log")
        results.append(depth_metrics(pred.to(dtype), gt.to(dtype), valid, space="log"))
    for name in DEPTH_METRIC_NAMES:
        assert torch.equal(results[0][name], results[2][name]), name


def test_no_fit_pixel_is_a_named_bad_sample(caplog):
    p = torch.zeros(2, 1, 3, 3)
    p[1] = 0.5
    g = torch.full_like(p, 2.0)
    v = torch.ones_like(p, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"frame_a.*no pixel usable for the alignment fit"):
        DepthMetrics(space="log").update(p, g, v, names=["frame_a", "frame_b"])
    metric = DepthMetrics(space="log", on_bad_sample="skip")
    with caplog.at_level(logging.WARNING):
        metric.update(p, g, v, names=["frame_a", "frame_b"])
    assert int(metric.num_skipped) == 1 and int(metric.num_images) == 1
    assert math.isnan(float(metric.batch_values["abs_rel"][0]))
    assert float(metric.compute()["abs_rel"]) == pytest.approx(0.0, abs=1e-12)  # s = 0, t = ln 2: exact


def test_bad_space_and_range_arguments():
    with pytest.raises(ValueError, match="space"):
        DepthMetrics(space="inverse")
    with pytest.raises(ValueError, match="min_depth"):
        DepthMetrics(space="log", min_depth=5.0, max_depth=1.0)
    with pytest.raises(ValueError, match="space"):
        depth_metrics(torch.ones(1, 2, 2), torch.ones(1, 2, 2), torch.ones(1, 2, 2, dtype=torch.bool), space="inv")
