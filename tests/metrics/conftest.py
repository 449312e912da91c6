"""Shared helpers of the metric tests: random depth / normal batches with ragged valid masks."""

import math

import numpy as np
import pytest
import torch


def random_depth_case(b=3, h=24, w=32, seed=0, space="log"):
    """(pred, gt, valid) float64 torch tensors (B,1,H,W): gt in (0.5, 10) m, ~70% valid with very
    different valid counts per image, pred an affine-invariant noisy value in the space's domain."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 10.0, size=(b, 1, h, w))
    valid = rng.uniform(size=(b, 1, h, w)) < 0.7
    valid[0, 0, : h // 2] = False  # ragged counts: image 0 has about half the pixels of the others
    if space == "log":
        pred = (np.log(gt) + 0.7) / 3.0 + rng.normal(0, 0.05, size=gt.shape)
    elif space == "disparity":
        pred = 2.0 / gt - 0.05 + rng.normal(0, 0.02, size=gt.shape)
    else:
        pred = 0.3 * gt + 1.0 + rng.normal(0, 0.3, size=gt.shape)
    return torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(valid)


def random_normal_case(b=3, h=20, w=24, seed=0, noise=0.3):
    """(pred, gt, valid): gt unit normals (B,3,H,W), pred = gt + noise (not normalised), valid
    (B,H,W) with ragged counts; float64."""
    rng = np.random.default_rng(seed)
    gt = rng.normal(size=(b, 3, h, w))
    gt /= np.linalg.norm(gt, axis=1, keepdims=True)
    pred = gt + rng.normal(0, noise, size=gt.shape) * rng.uniform(0.1, 3.0, size=(b, 1, h, w))
    pred *= rng.uniform(0.5, 2.0, size=(b, 1, h, w))  # lengths differ: must not matter
    valid = rng.uniform(size=(b, h, w)) < 0.8
    valid[-1, : h // 3] = False
    return torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(valid)


def assert_rel(actual, expected, rel=1e-9, what="", atol=1e-13):
    """|a - e| <= rel * |e| + atol (atol: values that are 0 up to rounding), readable message."""
    a, e = float(actual), float(expected)
    assert math.isfinite(a), f"{what}: got {a}"
    assert abs(a - e) <= rel * abs(e) + atol, f"{what}: {a} vs reference {e}"


@pytest.fixture
def depth_case():
    return random_depth_case


@pytest.fixture
def normal_case():
    return random_normal_case


@pytest.fixture
def close():
    return assert_rel
