"""The two-pass scoring (`fused.score_image`) on the paths its speed comes from, against the
per-image NumPy reference (boolean-indexed float64, np.linalg.lstsq) or hand-derived values:
several blocks per image, box masks read in place, the fit's indicator for p = 0 and its exact
fallback, per-block clipping, and bad samples found in a later block."""

import math

import numpy as np
import pytest
import torch

from experiments.bench.metrics import ref_align, ref_depth_metrics
from lightning_modules.metrics import DEPTH_METRIC_NAMES, pixels
from lightning_modules.metrics.fused import score_image
from lightning_modules.metrics.pixels import valid_box

SIZE = (60, 90)
BOX = (slice(7, 53), slice(11, 83))  # 46 x 72 pixels


@pytest.fixture(params=[None, 700], ids=["one-block", "many-blocks"])
def chunk(request, monkeypatch):
    """Default CHUNK (one block per test image) or 700 valid pixels per block (not a multiple of
    any row width here), so that every path also runs across many blocks."""
    if request.param:
        monkeypatch.setattr(pixels, "CHUNK", request.param)
    return request.param


def make_case(kind: str, space: str, seed: int = 0):
    """(pred, gt, valid) float64 maps of SIZE: gt in (0.5, 10) m with 0 where invalid; mask
    'full', 'box' (BOX, read in place), 'holes' (BOX with ~10% holes: gathered) or 'sparse' (~7%);
    pred an affine-invariant noisy value in the space's domain."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 10.0, size=SIZE)
    valid = np.zeros(SIZE, dtype=bool)
    if kind == "full":
        valid[:] = True
    elif kind in ("box", "holes"):
        valid[BOX] = True
        if kind == "holes":
            valid &= rng.uniform(size=SIZE) > 0.1
    else:
        valid = rng.uniform(size=SIZE) < 0.07
    domain = {"log": np.log(gt), "disparity": 1.0 / gt, "depth": gt, "none": gt}[space]
    lo, hi = float(domain.min()), float(domain.max())
    pred = (domain - lo) / (hi - lo) * 0.8 + 0.1 + rng.normal(0, 0.03, size=SIZE)
    if space == "none":
        pred = gt * rng.uniform(0.8, 1.25, size=SIZE)
    gt[~valid] = 0.0
    return pred, gt, valid


def reference(pred, gt, valid, space, lo, hi):
    """The 8 metrics of one image by the NumPy reference."""
    aligned = pred if space is None else ref_align(pred, gt, valid, space, lo, hi)
    return np.array([ref_depth_metrics(aligned, gt, valid)[name] for name in DEPTH_METRIC_NAMES])


def check(pred, gt, valid, space, lo=1e-3, hi=10.0, dtype=np.float64):
    row, why = score_image(pred.astype(dtype), gt.astype(dtype), valid, space, lo, hi)
    assert why is None, why
    p, g = pred.astype(dtype).astype(np.float64), gt.astype(dtype).astype(np.float64)
    np.testing.assert_allclose(row, reference(p, g, valid, space, lo, hi), rtol=1e-9, atol=1e-13)
    return row


@pytest.mark.parametrize("kind", ["full", "box", "holes", "sparse"])
@pytest.mark.parametrize("space", ["log", "disparity", "depth", "none", None])
def test_every_mask_kind_and_space_matches_reference(kind, space, chunk):
    pred, gt, valid = make_case(kind, space or "none", seed=1)
    check(pred, gt, valid, space)
    check(pred, gt, valid, space, dtype=np.float32)  # the cast inside the ufuncs


def test_box_masks_are_detected_exactly():
    v = np.zeros(SIZE, dtype=bool)
    v[BOX] = True
    assert valid_box(v, int(v.sum())) == BOX
    v[20, 30] = False  # a hole: gathered instead
    assert valid_box(v, int(v.sum())) is None
    w = np.zeros(SIZE, dtype=bool)
    w[3, 5:9] = True
    w[4, 0:4] = True  # same count as a 2 x 4 box starting at (3, 5), another shape
    assert valid_box(w, 8) is None
    row = np.zeros(SIZE, dtype=bool)
    row[5, 2:] = True  # to the end of the row
    assert valid_box(row, int(row.sum())) == (slice(5, 6), slice(2, SIZE[1]))
    one = np.zeros(SIZE, dtype=bool)
    one[-1, -1] = True
    assert valid_box(one, 1) == (slice(SIZE[0] - 1, SIZE[0]), slice(SIZE[1] - 1, SIZE[1]))


def test_box_wider_than_a_block(monkeypatch):
    """A box row longer than CHUNK: one row per block, buffers of the row's length."""
    monkeypatch.setattr(pixels, "CHUNK", 50)
    pred, gt, valid = make_case("box", "log", seed=2)
    check(pred, gt, valid, "log")


@pytest.mark.parametrize("where", ["first block", "last block", "everywhere"])
@pytest.mark.parametrize("space", ["log", "disparity"])
def test_saturated_zero_predictions_left_out_of_the_fit(where, space, chunk):
    """Valid pixels with p = 0 are scored but not fitted (SPEC 7); the fit leaves them out with
    an indicator, in the blocks that hold them."""
    pred, gt, valid = make_case("holes", space, seed=3)
    flat = pred.reshape(-1)
    idx = np.flatnonzero(valid)
    pick = {"first block": idx[:40], "last block": idx[-40:], "everywhere": idx[::25]}[where]
    flat[pick] = 0.0
    check(pred, gt, valid, space)


@pytest.mark.parametrize("space", ["log", "disparity"])
def test_negative_predictions_take_the_exact_fit(space, chunk):
    pred, gt, valid = make_case("full", space, seed=4)
    pred.reshape(-1)[-30:] = -0.2  # in the last block only
    pred.reshape(-1)[100] = 0.0
    check(pred, gt, valid, space)


def test_constant_prediction_with_zeros_gives_s_0(chunk):
    """p = 0.55 wherever it is not saturated at 0: the sums about 0 leave var(x) ~ 1e-12 instead
    of 0 (rounding), which must not be divided into; the fit is redone exactly: s = 0,
    t = mean(ln g) over p > 0, d = e^t at every valid pixel (the zeros too). Reference values
    derived here (lstsq is rank-deficient on a constant x)."""
    rng = np.random.default_rng(5)
    gt = rng.uniform(0.5, 10.0, size=SIZE)
    valid = np.ones(SIZE, dtype=bool)
    pred = np.full(SIZE, 0.55)
    pred[::7] = 0.0
    row, why = score_image(pred, gt, valid, "log", 1e-3, 100.0)
    assert why is None
    t = np.log(gt[pred > 0]).mean()
    d = np.full(gt.size, math.exp(t))
    g = gt.reshape(-1)
    ratio = np.maximum(d / g, g / d)
    expected = [np.mean(np.abs(d - g) / g), np.mean((d - g) ** 2 / g), math.sqrt(np.mean((d - g) ** 2)),
                math.sqrt(np.mean((t - np.log(g)) ** 2)), np.mean(np.abs(t - np.log(g))) / math.log(10.0),
                *(np.mean(ratio < 1.25**k) for k in (1, 2, 3))]
    np.testing.assert_allclose(row, expected, rtol=1e-9)


@pytest.mark.parametrize("space", ["log", "disparity", "depth", "none"])
def test_clipping_in_some_blocks_only(space, chunk):
    """The first rows align inside [lo, hi], the last rows far outside it (and below the
    disparity floor): only their blocks need the clip, and the result is the reference's."""
    pred, gt, valid = make_case("full", space, seed=6)
    pred[-8:] = -3.0 if space == "disparity" else 40.0
    pred[:6] = {"log": 1e-4, "depth": -4.0}.get(space, pred[:6])  # log: p > 0 keeps the fast fit
    check(pred, gt, valid, space, lo=0.7, hi=8.0)
    check(pred, gt, valid, space, lo=0.7, hi=math.inf)


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (lambda p, g: p.__setitem__((-2, -3), np.nan), "prediction NaN/inf"),
        (lambda p, g: p.__setitem__((-2, -3), np.inf), "prediction NaN/inf"),
        (lambda p, g: g.__setitem__((-2, -3), 0.0), "ground truth NaN/inf or <= 0"),
        (lambda p, g: g.__setitem__((-2, -3), np.nan), "ground truth NaN/inf or <= 0"),
    ],
)
@pytest.mark.parametrize("space", ["log", "depth", None])
def test_bad_pixel_in_a_later_block_is_named(corrupt, reason, space, chunk):
    pred, gt, valid = make_case("full", space or "none", seed=7)
    corrupt(pred, gt)
    row, why = score_image(pred, gt, valid, space, 1e-3, 10.0)
    assert np.isnan(row).all() and reason in why


def test_no_positive_ground_truth_is_no_fit():
    """Log space fits on g > 0 and p > 0: with g <= 0 at every valid pixel there is none (the
    reason the per-pixel path gave before the indicator fit)."""
    pred = np.full(SIZE, 0.55)
    pred[0, 0] = 0.0
    row, why = score_image(pred, np.zeros(SIZE), np.ones(SIZE, dtype=bool), "log")
    assert np.isnan(row).all() and why.startswith("no pixel usable for the alignment fit")


def test_half_and_integer_inputs_through_the_metric(close):
    """float16 predictions (converted to float32) and integer ground truth (decimetre codes)
    scored as the reference scores their float64 values."""
    from lightning_modules.metrics import DepthMetrics

    pred, gt, valid = make_case("holes", "log", seed=8)
    gt_codes = np.round(gt * 10.0).astype(np.int32)
    metric = DepthMetrics(space="log", min_depth=1e-3, max_depth=1000.0)
    p16 = torch.from_numpy(pred.astype(np.float16))
    metric.update(p16[None, None], torch.from_numpy(gt_codes)[None, None], torch.from_numpy(valid)[None, None])
    ref = reference(pred.astype(np.float16).astype(np.float64), gt_codes.astype(np.float64), valid, "log", 1e-3, 1000.0)
    for k, name in enumerate(DEPTH_METRIC_NAMES):
        close(metric.batch_values[name][0], ref[k], 1e-9, name)
