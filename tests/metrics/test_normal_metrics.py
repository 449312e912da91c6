"""angular_error / normal_metrics / NormalMetrics against a pooled NumPy reference (DSINE)."""

import logging
import math

import numpy as np
import pytest
import torch

from experiments.bench.metrics import ref_angular_errors, ref_normal_metrics
from lightning_modules.metrics import (
    NORMAL_METRIC_NAMES,
    NormalMetrics,
    angular_error,
    normal_metrics,
)


def _unit(deg):
    r = math.radians(deg)
    return [math.sin(r), 0.0, math.cos(r)]


def test_angular_error_hand_made():
    gt = torch.tensor([[0.0, 0.0, 1.0]] * 5, dtype=torch.float64).T.reshape(1, 3, 1, 5)
    pred = torch.tensor(
        [[0.0, 0.0, 5.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64
    ).T.reshape(1, 3, 1, 5)
    valid = torch.tensor([[[True, True, True, True, False]]])
    err = angular_error(pred, gt, valid)[0, 0]
    assert err.shape == (5,)
    np.testing.assert_allclose(err[:4].numpy(), [0.0, 90.0, 180.0, 45.0], atol=1e-6)
    assert torch.isnan(err[4])  # outside the mask: no value


def test_angular_error_matches_reference(normal_case):
    pred, gt, valid = normal_case(seed=1)
    err = angular_error(pred, gt, valid)
    for i in range(pred.shape[0]):
        ref = ref_angular_errors(pred[i].numpy(), gt[i].numpy(), valid[i].numpy())
        np.testing.assert_allclose(err[i][valid[i]].numpy(), ref, rtol=1e-9, atol=1e-9)


def test_metric_is_pooled_over_pixels(normal_case, close):
    metric = NormalMetrics()
    errors = []
    for seed, b in ((0, 3), (1, 1), (2, 2)):
        pred, gt, valid = normal_case(b=b, seed=seed)
        v = valid[:, None] if seed == 1 else valid  # (B,1,H,W) masks accepted too
        metric.update(pred.float() if seed == 2 else pred, gt, v)
        for i in range(b):
            p = pred[i].float().double().numpy() if seed == 2 else pred[i].numpy()
            errors.append(ref_angular_errors(p, gt[i].numpy(), valid[i].numpy()))
    pooled = np.concatenate(errors)
    ref = ref_normal_metrics(pooled)
    out = metric.compute()
    assert set(out) == set(NORMAL_METRIC_NAMES)
    assert abs(float(out["median"]) - ref["median"]) <= 0.01
    for k in NORMAL_METRIC_NAMES:
        if k != "median":
            close(out[k], ref[k], 1e-9, k)
    per_image_mean = np.mean([e.mean() for e in errors])  # the test tells pooled from per-image
    assert abs(float(out["mean"]) - per_image_mean) > 1e-3
    assert 0.05 < float(out["a11_25"]) < 0.95
    exact = normal_metrics(torch.from_numpy(pooled))
    for k in NORMAL_METRIC_NAMES:
        close(exact[k], ref[k], 1e-12, f"functional {k}")


def test_median_hand_made_even_and_odd():
    angles = [10.0, 20.0, 31.0, 40.0]  # no value on a threshold: acos rounding would decide
    gt = torch.tensor([_unit(0.0)] * 4, dtype=torch.float64).T.reshape(1, 3, 1, 4)
    pred = torch.tensor([_unit(a) for a in angles], dtype=torch.float64).T.reshape(1, 3, 1, 4)
    metric = NormalMetrics()
    metric.update(pred, gt, torch.ones(1, 1, 4, dtype=torch.bool))
    out = metric.compute()
    assert abs(float(out["median"]) - 25.5) <= 0.01
    assert float(out["mean"]) == pytest.approx(25.25, rel=1e-9)
    assert float(out["rmse"]) == pytest.approx(math.sqrt((100 + 400 + 961 + 1600) / 4), rel=1e-9)
    assert [float(out[k]) for k in ("a5", "a7_5", "a11_25", "a22_5", "a30")] == [0.0, 0.0, 0.25, 0.5, 0.5]
    metric.update(pred[..., :1], gt[..., :1], torch.ones(1, 1, 1, dtype=torch.bool))  # 5 values: 10,10,20,31,40
    assert abs(float(metric.compute()["median"]) - 20.0) <= 0.01


def test_median_extremes_and_bin_resolution():
    """0 and 180 degrees land in the first/last bins; a coarse histogram is coarser."""
    gt = torch.tensor([_unit(0.0)] * 3, dtype=torch.float64).T.reshape(1, 3, 1, 3)
    pred = torch.tensor([_unit(0.0), _unit(180.0), _unit(180.0)], dtype=torch.float64).T.reshape(1, 3, 1, 3)
    v = torch.ones(1, 1, 3, dtype=torch.bool)
    fine = NormalMetrics()
    fine.update(pred, gt, v)
    assert abs(float(fine.compute()["median"]) - 180.0) <= 0.01
    coarse = NormalMetrics(bin_deg=1.0)
    pred2 = torch.tensor([_unit(12.3)] * 3, dtype=torch.float64).T.reshape(1, 3, 1, 3)
    coarse.update(pred2, gt, v)
    assert abs(float(coarse.compute()["median"]) - 12.3) <= 1.0
    assert abs(float(coarse.compute()["median"]) - 12.3) > 0.01


def _batch():
    gt = torch.zeros(3, 3, 4, 5)
    gt[:, 2] = 1.0
    pred = gt.clone()
    pred[:, 0] = 0.1
    return pred, gt, torch.ones(3, 4, 5, dtype=torch.bool)


def test_shape_mismatch_always_raises():
    pred, gt, v = _batch()
    for policy in ("raise", "skip"):
        with pytest.raises(ValueError, match=r"\(3, 3, 4, 5\).*\(3, 3, 4, 6\)"):
            NormalMetrics(on_bad_sample=policy).update(pred, torch.zeros(3, 3, 4, 6), v)
        with pytest.raises(ValueError, match=r"\(3, 3, 4, 5\).*\(3, 4, 6\)"):
            NormalMetrics(on_bad_sample=policy).update(pred, gt, torch.ones(3, 4, 6, dtype=torch.bool))


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (lambda p, g, v: v[2].fill_(False), "no valid pixel"),
        (lambda p, g, v: p[2, 1, 3, 4].fill_(float("nan")), "prediction"),
        (lambda p, g, v: g[2, 0, 0, 0].fill_(float("inf")), "ground truth"),
    ],
)
def test_bad_sample_raises_naming_it_or_is_skipped(corrupt, reason, caplog):
    pred, gt, v = _batch()
    corrupt(pred, gt, v)
    names = ["a", "b", "img_c"]
    with pytest.raises(ValueError, match=rf"img_c.*{reason}"):
        NormalMetrics().update(pred, gt, v, names=names)
    metric = NormalMetrics(on_bad_sample="skip")
    with caplog.at_level(logging.WARNING):
        metric.update(pred, gt, v, names=names)
    assert "img_c" in caplog.text
    assert int(metric.num_skipped) == 1 and int(metric.num_images) == 2 and int(metric.num_pixels) == 40
    out = metric.compute()
    assert float(out["mean"]) == pytest.approx(math.degrees(math.atan(0.1)), rel=1e-6)


def test_nan_outside_valid_is_fine():
    pred, gt, v = _batch()
    v[0, 0, 0] = False
    pred[0, :, 0, 0] = float("nan")
    metric = NormalMetrics()
    metric.update(pred, gt, v)
    assert int(metric.num_pixels) == 59 and math.isfinite(float(metric.compute()["mean"]))


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_empty_compute_raises():
    with pytest.raises(ValueError, match="no pixel"):
        NormalMetrics().compute()


def test_functional_median_even_count():
    out = normal_metrics(torch.tensor([4.0, 1.0, 3.0, 2.0]))
    assert float(out["median"]) == 2.5 and float(out["mean"]) == 2.5
    assert float(normal_metrics(torch.tensor([7.0, 1.0, 3.0]))["median"]) == 3.0
