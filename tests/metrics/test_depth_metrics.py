"""depth_metrics / DepthMetrics against the per-image NumPy reference, hand cases, bad inputs."""

import logging
import math

import numpy as np
import pytest
import torch

from experiments.bench.metrics import ref_align, ref_depth_metrics
from lightning_modules.metrics import (
    DEPTH_METRIC_NAMES,
    DepthMetrics,
    align_depth,
    depth_metrics,
)


@pytest.mark.parametrize("space", ["depth", "disparity", "log"])
def test_functional_matches_reference_after_alignment(space, depth_case, close):
    pred, gt, valid = depth_case(b=4, seed=11, space=space)
    aligned = align_depth(pred, gt, valid, space, min_depth=1e-3, max_depth=10.0)
    ours = depth_metrics(aligned, gt, valid)
    assert set(ours) == set(DEPTH_METRIC_NAMES)
    for i in range(4):
        a = ref_align(pred[i, 0].numpy(), gt[i, 0].numpy(), valid[i, 0].numpy(), space, 1e-3, 10.0)
        ref = ref_depth_metrics(a, gt[i, 0].numpy(), valid[i, 0].numpy())
        for name in DEPTH_METRIC_NAMES:
            close(ours[name][i], ref[name], 1e-9, f"{space} image {i} {name}")
    assert 0.3 < float(ours["delta1"].mean()) < 1.0  # non-trivial case


def test_hand_made_values(close):
    # ratios 1.0, 1.3, 1.7, 2.5 (two as p > g, two as g > p); one invalid pixel with gt 0
    g = torch.tensor([2.0, 1.0, 1.7, 4.0, 0.0], dtype=torch.float64)
    p = torch.tensor([2.0, 1.3, 1.0, 10.0, 7.0], dtype=torch.float64)
    v = g > 0
    m = depth_metrics(p.reshape(1, 1, 1, 5), g.reshape(1, 1, 1, 5), v.reshape(1, 1, 1, 5))
    d = np.array([0.0, 0.3, -0.7, 6.0])
    gg = np.array([2.0, 1.0, 1.7, 4.0])
    pp = gg + d
    close(m["abs_rel"], np.mean(np.abs(d) / gg), 1e-12, "abs_rel")
    close(m["sq_rel"], np.mean(d**2 / gg), 1e-12, "sq_rel")
    close(m["rmse"], math.sqrt((0.09 + 0.49 + 36.0) / 4), 1e-12, "rmse")
    close(m["rmse_log"], math.sqrt(np.mean(np.log(pp / gg) ** 2)), 1e-12, "rmse_log")
    close(m["log10"], np.mean(np.abs(np.log10(pp / gg))), 1e-12, "log10")
    assert [float(m[f"delta{k}"]) for k in (1, 2, 3)] == [0.25, 0.5, 0.75]


def test_exact_threshold_is_not_below():
    g = torch.tensor([1.0, 1.0]).reshape(1, 1, 1, 2)
    p = torch.tensor([1.25, 1.0]).reshape(1, 1, 1, 2)
    m = depth_metrics(p, g, torch.ones_like(g, dtype=torch.bool))
    assert float(m["delta1"]) == 0.5  # max(p/g, g/p) < 1.25 is strict


def test_metric_is_mean_over_images_not_pixels(depth_case, close):
    """Images weigh the same: the reference is the mean of per-image values; batches of different
    sizes and (B,H,W) vs (B,1,H,W) layouts are accepted."""
    metric = DepthMetrics()
    per_image = {k: [] for k in DEPTH_METRIC_NAMES}
    pooled = []
    for seed, b in ((0, 3), (1, 1), (2, 2)):
        pred, gt, valid = depth_case(b=b, seed=seed, space="depth")
        aligned = align_depth(pred, gt, valid, "depth", 1e-3, 10.0)
        if seed == 1:
            aligned, gt, valid = aligned[:, 0], gt[:, 0], valid[:, 0]
        metric.update(aligned.float(), gt.float(), valid)
        for i in range(b):
            ref = ref_depth_metrics(aligned.reshape(b, -1)[i].float().numpy(), gt.reshape(b, -1)[i].float().numpy(),
                                    valid.reshape(b, -1)[i].numpy())
            for k in DEPTH_METRIC_NAMES:
                per_image[k].append(ref[k])
            vi = valid.reshape(b, -1)[i]
            pi, gi = aligned.reshape(b, -1)[i][vi].float().double(), gt.reshape(b, -1)[i][vi].float().double()
            pooled.extend(((pi - gi).abs() / gi).tolist())
    out = metric.compute()
    assert int(metric.num_images) == 6 and int(metric.num_skipped) == 0
    for k in DEPTH_METRIC_NAMES:
        close(out[k], np.mean(per_image[k]), 1e-9, k)
    # pixel-pooled abs_rel differs on this ragged data: the test can tell them apart
    assert abs(float(out["abs_rel"]) - np.mean(pooled)) > 1e-4 * np.mean(pooled)
    assert out["abs_rel"].dtype == torch.float64


def test_garbage_outside_valid_is_ignored(depth_case):
    pred, gt, valid = depth_case(b=2, seed=4, space="depth")
    a = align_depth(pred, gt, valid, "depth", 1e-3, 10.0)
    clean = depth_metrics(a, gt, valid)
    a2, g2 = a.clone(), gt.clone()
    inv = ~valid
    a2[inv] = torch.nan
    g2[inv] = 0.0
    g2[inv & (torch.arange(gt.shape[-1]) % 2 == 0)] = torch.inf
    dirty = depth_metrics(a2, g2, valid)
    for k in DEPTH_METRIC_NAMES:
        assert torch.allclose(clean[k], dirty[k], rtol=1e-13, atol=0), k


def _batch():
    g = torch.full((3, 1, 4, 5), 2.0)
    p = torch.full((3, 1, 4, 5), 2.2)
    v = torch.ones_like(g, dtype=torch.bool)
    return p, g, v


def test_shape_mismatch_always_raises():
    p, g, v = _batch()
    for policy in ("raise", "skip"):
        with pytest.raises(ValueError, match=r"\(3, 1, 4, 6\).*\(3, 1, 4, 5\)"):
            DepthMetrics(on_bad_sample=policy).update(torch.ones(3, 1, 4, 6), g, v)
    with pytest.raises(ValueError, match="names"):
        DepthMetrics().update(p, g, v, names=["a"])
    with pytest.raises(ValueError, match="on_bad_sample"):
        DepthMetrics(on_bad_sample="ignore")


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (lambda p, g, v: v[1].fill_(False), "no valid pixel"),
        (lambda p, g, v: p[1, 0, 2, 3].fill_(float("nan")), "prediction"),
        (lambda p, g, v: p[1, 0, 0, 0].fill_(float("inf")), "prediction"),
        (lambda p, g, v: p[1, 0, 0, 0].fill_(0.0), "prediction"),
        (lambda p, g, v: g[1, 0, 1, 1].fill_(-1.0), "ground truth"),
    ],
)
def test_bad_sample_raises_naming_it_or_is_skipped(corrupt, reason, caplog):
    p, g, v = _batch()
    corrupt(p, g, v)
    names = ["scene_a/0001", "scene_b/0002", "scene_c/0003"]
    with pytest.raises(ValueError, match=rf"scene_b/0002.*{reason}"):
        DepthMetrics().update(p, g, v, names=names)
    with pytest.raises(ValueError, match=r"batch item 1"):
        DepthMetrics().update(p, g, v)
    metric = DepthMetrics(on_bad_sample="skip")
    with caplog.at_level(logging.WARNING):
        metric.update(p, g, v, names=names)
    assert "scene_b/0002" in caplog.text
    assert int(metric.num_skipped) == 1 and int(metric.num_images) == 2
    out = metric.compute()
    assert float(out["abs_rel"]) == pytest.approx(0.1, rel=1e-6)  # the two good images only
    assert all(math.isfinite(float(x)) for x in out.values())


def test_all_skipped_compute_raises():
    p, g, v = _batch()
    metric = DepthMetrics(on_bad_sample="skip")
    metric.update(p, g, torch.zeros_like(v))
    assert int(metric.num_skipped) == 3
    with pytest.raises(ValueError, match="3 skipped"):
        metric.compute()


def test_cropped_masks_with_garbage_outside(close):
    """Eigen-crop style masks (different boxes per image, garbage outside): align + score match the
    reference; the border skipping must not change anything."""
    rng = np.random.default_rng(9)
    gt = rng.uniform(0.5, 10.0, size=(3, 1, 30, 40))
    valid = np.zeros(gt.shape, dtype=bool)
    valid[0, 0, 5:20, 7:33] = True
    valid[1, 0, 9:28, 2:30] = rng.uniform(size=(19, 28)) < 0.8
    valid[2, 0, 12:13, 20:22] = True  # two pixels only
    pred = (np.log(gt) + 1.0) / 3.0 + rng.normal(0, 0.05, size=gt.shape)
    pred[~valid] = -7.0
    gt_dirty = gt.copy()
    gt_dirty[~valid] = 0.0
    t = [torch.from_numpy(x) for x in (pred, gt_dirty, valid)]
    aligned = align_depth(*t, "log", 1e-3, 10.0)
    ours = depth_metrics(aligned, t[1], t[2])
    for i in range(3):
        a = ref_align(pred[i, 0], gt_dirty[i, 0], valid[i, 0], "log", 1e-3, 10.0)
        np.testing.assert_allclose(aligned[i, 0].numpy(), a, rtol=1e-9)  # incl. pixels outside the box
        ref = ref_depth_metrics(a, gt_dirty[i, 0], valid[i, 0])
        for name in DEPTH_METRIC_NAMES:
            close(ours[name][i], ref[name], 1e-9, f"image {i} {name}")
