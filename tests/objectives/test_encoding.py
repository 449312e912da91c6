"""Depth quantization (SPEC section 4) and normal encoding (SPEC section 5) against NumPy references."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from lightning_modules.encoding import (
    affine_invariant_to_space,
    decode_normals,
    dequantize_depth,
    encode_normals,
    latent_valid_mask,
    quantile_linear,
    quantize_depth,
)

BF16_HALF_ULP_NEAR_1 = 2.0 ** -9  # bf16 has 8 significant bits: ulp 2^-8 on [0.5, 1)


def _q(d, scheme):
    d = np.asarray(d, dtype=np.float64)
    return {"direct": d, "inverse": 1.0 / d, "log": np.log(d + 1e-6)}[scheme]


def _reference_y(depth, valid, scheme):
    """NumPy y (float64, before bf16) for one (H,W) image: percentiles over valid pixels, invalid -> +1."""
    q = _q(np.where(valid, depth, 1.0), scheme)
    p2, p98 = np.percentile(q[valid], [2, 98])  # numpy's default 'linear' method
    y = np.clip(((q - p2) / (p98 - p2) - 0.5) * 2, -1, 1)
    return np.where(valid, y, 1.0)


def _bf16(x: np.ndarray) -> np.ndarray:
    return torch.tensor(x, dtype=torch.float32).to(torch.bfloat16).float().numpy()


def _as_batch(*images):
    return torch.tensor(np.stack(images)[:, None], dtype=torch.float32)


@pytest.mark.parametrize("scheme", ["direct", "inverse", "log"])
def test_percentiles_over_valid_pixels_only(scheme):
    depth = np.full((10, 12), 1000.0)
    depth.flat[:100] = np.arange(1, 101)  # valid depths 1..100 m, the other 20 pixels invalid (1000 m)
    valid = np.zeros((10, 12), bool)
    valid.flat[:100] = True
    y = quantize_depth(_as_batch(depth), torch.tensor(valid)[None, None], scheme)
    assert y.shape == (1, 3, 10, 12) and y.dtype == torch.float32
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 0], y[:, 2])
    ref = _reference_y(depth, valid, scheme)
    np.testing.assert_allclose(y[0, 0].numpy(), ref, atol=BF16_HALF_ULP_NEAR_1 + 1e-7, rtol=0)
    assert torch.equal(y, y.to(torch.bfloat16).float())  # bf16-representable values
    assert torch.all(y[0, :, ~torch.tensor(valid)] == 1.0)  # invalid -> +1 exactly
    # the invalid pixels' values must not influence the valid ones
    depth2 = np.where(valid, depth, 1e-3)
    y2 = quantize_depth(_as_batch(depth2), torch.tensor(valid)[None, None], scheme)
    assert torch.equal(y, y2)


def test_direct_hand_values():
    # valid 1..100 m: p2 = 1 + 0.02*99 = 2.98, p98 = 98.02, span 95.04
    # D = 50: (47.02/95.04 - 0.5)*2 = -0.0105219 ; D = 75: (72.02/95.04 - 0.5)*2 = 0.5155724
    depth = np.arange(1, 101, dtype=np.float64).reshape(10, 10)
    y = quantize_depth(_as_batch(depth), torch.ones(1, 1, 10, 10, dtype=torch.bool), "direct")[0, 0].flatten()
    assert y[49].item() == pytest.approx(-0.0105219, abs=1e-4)
    assert y[74].item() == pytest.approx(0.5155724, abs=2 ** -9)
    assert y[99].item() == 1.0 and y[1].item() == -1.0  # 100 > p98 and 2 < p2 clip


def test_per_image_normalisation_in_a_batch():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.5, 10.0, size=(8, 8))
    y = quantize_depth(_as_batch(d, 10 * d), torch.ones(2, 1, 8, 8, dtype=torch.bool), "direct")
    assert torch.equal(y[0], y[1])  # direct is scale invariant per image; a pooled percentile is not
    assert y[0].min() == -1 and y[0].max() == 1


def test_inverse_near_side_is_plus_one():
    depth = np.linspace(1.0, 10.0, 64).reshape(8, 8)
    y = quantize_depth(_as_batch(depth), torch.ones(1, 1, 8, 8, dtype=torch.bool), "inverse")[0, 0]
    assert y[0, 0].item() == 1.0 and y[-1, -1].item() == -1.0  # nearest -> +1 (like invalid), farthest -> -1
    y = quantize_depth(_as_batch(depth), torch.ones(1, 1, 8, 8, dtype=torch.bool), "log")[0, 0]
    assert y[0, 0].item() == -1.0 and y[-1, -1].item() == 1.0


def test_degenerate_and_empty_and_nonfinite(caplog):
    valid = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    valid[0, 0, 0, 0] = False
    y = quantize_depth(torch.full((1, 1, 4, 4), 3.0), valid, "log")
    assert torch.all(y[0, :, 0, 0] == 1.0) and torch.count_nonzero(y[0, :, 1:, :]) == 0  # constant -> 0
    with caplog.at_level(logging.WARNING):
        y = quantize_depth(torch.full((1, 1, 4, 4), 3.0), torch.zeros(1, 1, 4, 4, dtype=torch.bool), "direct")
    assert torch.all(y == 1.0) and "no valid pixel" in caplog.text
    d = torch.linspace(1, 4, 16).view(1, 1, 4, 4).clone()
    d[0, 0, 1, 1] = 0.0  # 1/0 = inf under 'inverse'
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        y = quantize_depth(d, torch.ones(1, 1, 4, 4, dtype=torch.bool), "inverse")
    assert torch.all(y[0, :, 1, 1] == 1.0) and torch.isfinite(y).all() and "non-finite" in caplog.text


@pytest.mark.parametrize("scheme", ["direct", "inverse", "log"])
def test_round_trip_gives_normalised_encoded_quantity(scheme):
    rng = np.random.default_rng(1)
    depth = np.exp(rng.uniform(np.log(0.3), np.log(60.0), size=(2, 16, 16)))
    valid = rng.uniform(size=(2, 16, 16)) > 0.1
    y = quantize_depth(_as_batch(*depth), torch.tensor(valid)[:, None], scheme)
    p = dequantize_depth(y)
    assert p.shape == (2, 1, 16, 16)
    for i in range(2):
        ref = (_reference_y(depth[i], valid[i], scheme) + 1) / 2
        np.testing.assert_allclose(p[i, 0].numpy(), ref, atol=BF16_HALF_ULP_NEAR_1 / 2 + 1e-7, rtol=0)


def _spec_range_depth():
    """1-D depth with p2 = 0.1 m and p98 = 80 m exactly: 500 pixels at each end, 10000 log-spaced between."""
    mid = np.geomspace(0.1, 80.0, 10000)
    return np.concatenate([np.full(500, 0.1), mid, np.full(500, 80.0)]), mid


def _reconstruct(p, scheme):
    """Invert the quantization with the known percentiles (0.1 m, 80 m) in float64."""
    lo, hi = sorted([_q(0.1, scheme), _q(80.0, scheme)])
    q = lo + p * (hi - lo)
    return {"direct": q, "inverse": 1.0 / q, "log": np.exp(q) - 1e-6}[scheme]


def _errors(scheme):
    depth, mid = _spec_range_depth()
    d = torch.tensor(depth, dtype=torch.float32).view(1, 1, 1, -1)
    p = dequantize_depth(quantize_depth(d, torch.ones_like(d, dtype=torch.bool), scheme))
    d_hat = _reconstruct(p.numpy().ravel().astype(np.float64), scheme)[500:-500]
    return mid, np.abs(d_hat - mid)


def test_bf16_error_direct_is_absolute():
    # bf16 step near |y| = 1 is 2^-8 -> (80 - 0.1)/2 * 2^-8 = 0.156 m (SPEC "~0.16 m"); error <= half a step
    mid, err = _errors("direct")
    assert 0.06 < err.max() <= 0.0785
    near = mid < 0.3
    assert (err[near] / mid[near]).max() > 0.2  # huge relative error near the camera (SPEC: AbsRel 1.6 at 0.1 m)


def test_bf16_error_log_is_relative():
    # log step near |y| = 1: ln(800)/2 * 2^-8 = 1.31% relative (SPEC "~1.3%"); error <= half a step, ~0.65%
    mid, err = _errors("log")
    rel = err / mid
    near, far = rel[mid < 0.2].max(), rel[mid > 40].max()
    half_step = math.exp(math.log(800.0) / 2 * 2 ** -9) - 1
    assert 0.004 < near <= half_step + 1e-4 and 0.004 < far <= half_step + 1e-4
    assert 0.7 < near / far < 1.4  # the same relative error at 0.1 m and at 80 m
    assert rel.max() < 0.007


def test_bf16_error_inverse_explodes_far():
    mid, err = _errors("inverse")
    assert err[mid > 40].max() > 20.0  # tens of metres at the far end (SPEC: ~125 m step at 80 m)
    assert (err[mid < 0.2] / mid[mid < 0.2]).max() < 0.01  # but fine near the camera


def test_quantile_linear_matches_numpy():
    rng = np.random.default_rng(2)
    v = rng.normal(size=101)
    got = quantile_linear(torch.tensor(v), [0.0, 0.02, 0.5, 0.98, 1.0]).numpy()
    np.testing.assert_allclose(got, np.percentile(v, [0, 2, 50, 98, 100]), rtol=1e-12)
    assert quantile_linear(torch.tensor([4.0]), [0.02, 0.98]).tolist() == [4.0, 4.0]


def test_dequantize_clamps_and_averages():
    rgb = torch.tensor([[0.2, 3.0, -2.0], [0.4, 3.0, 0.0], [0.9, 3.0, 0.5]]).view(1, 3, 1, 3)
    p = dequantize_depth(rgb)[0, 0, 0]
    # means: 0.5 -> 0.75 ; clamped 1 -> 1 ; (-1 + 0 + 0.5)/3 = -1/6 -> 5/12
    torch.testing.assert_close(p, torch.tensor([0.75, 1.0, 5 / 12]))


def test_alignment_space_and_bad_scheme():
    assert [affine_invariant_to_space(s) for s in ("direct", "inverse", "log")] == ["depth", "disparity", "log"]
    with pytest.raises(ValueError, match="scheme"):
        quantize_depth(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2, dtype=torch.bool), "sqrt")


def test_latent_valid_mask_excludes_cells_with_any_invalid_pixel():
    valid = torch.ones(1, 1, 16, 24, dtype=torch.bool)
    valid[0, 0, 3, 10] = False  # latent cell (0, 1)
    m = latent_valid_mask(valid)
    assert m.shape == (1, 1, 2, 3) and m.dtype == torch.bool
    assert m.sum() == 5 and not m[0, 0, 0, 1]


# --- normals ---------------------------------------------------------------------------------
def test_encode_normals_identity_and_zero():
    n = torch.tensor([[0.0, 0.0, 1.0], [0.6, -0.8, 0.0], [0.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 3)
    torch.testing.assert_close(encode_normals(n), n)


def test_decode_normals_normalises_after_clamp_and_keeps_zero():
    rgb = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.3, 0.0, 0.4]]).T.reshape(1, 3, 1, 3)
    n = decode_normals(rgb)[0, :, 0].T
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(n, torch.tensor([[s, s, 0.0], [0.0, 0.0, 0.0], [0.6, 0.0, 0.8]]))


def test_decode_normals_resize_and_round_trip():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(2, 3, 5, 7))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    n = torch.tensor(v, dtype=torch.float32)
    torch.testing.assert_close(decode_normals(encode_normals(n)), n, atol=1e-6, rtol=0)
    const = torch.tensor([0.0, 0.6, 0.8]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    out = decode_normals(const * 0.5, size=(4, 6))  # shrunk vectors, resized: back to the unit normal
    assert out.shape == (1, 3, 4, 6)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.6, 0.8]).view(1, 3, 1, 1).expand(1, 3, 4, 6))
    two = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).T.reshape(1, 3, 1, 2)
    mid = decode_normals(two, size=(1, 4))[0, :, 0]  # bilinear between x and y: unit length everywhere
    torch.testing.assert_close(mid.norm(dim=0), torch.ones(4))
