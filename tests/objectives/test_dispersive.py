"""Dispersive loss against a brute-force NumPy double loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_modules.objectives import dispersive_loss


def _reference(feats: np.ndarray, tau: float) -> float:
    b = feats.shape[0]
    eta = feats.reshape(b, -1).astype(np.float64)
    dim = eta.shape[1]
    total = 0.0
    for i in range(b):
        for j in range(b):
            d = np.sum((eta[i] - eta[j]) ** 2) / dim
            total += math.exp(-d / tau)
    return math.log(total / (b * b))


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_matches_double_loop(tau):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(5, 7, 3)) * rng.uniform(0.2, 1.5, size=(5, 1, 1))
    got = dispersive_loss(torch.tensor(feats, dtype=torch.float32), tau).item()
    assert got == pytest.approx(_reference(feats, tau), rel=1e-5, abs=1e-6)


def test_large_common_offset_is_stable():
    # float32 Gram trick without centring would lose the small differences under a 1e3 offset
    rng = np.random.default_rng(1)
    feats = 1e3 + 0.1 * rng.normal(size=(4, 64, 32))
    got = dispersive_loss(torch.tensor(feats, dtype=torch.float32)).item()
    assert got == pytest.approx(_reference(feats.astype(np.float32), 1.0), rel=1e-3)


def test_zero_for_single_sample_and_identical_samples():
    one = torch.randn(1, 10, 4, requires_grad=True)
    out = dispersive_loss(one)
    assert out.item() == 0.0
    out.backward()  # still part of the graph
    same = torch.randn(1, 10, 4).expand(3, 10, 4).contiguous()
    assert dispersive_loss(same).item() == pytest.approx(0.0, abs=1e-7)  # log(1)


def test_far_apart_samples_approach_minus_log_b():
    feats = torch.tensor([[0.0], [100.0], [-100.0]])  # D_ij = 1e4, 4e4 off-diagonal
    assert dispersive_loss(feats).item() == pytest.approx(-math.log(3), rel=1e-6)


def test_gradient_pushes_samples_apart():
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0]], requires_grad=True)
    dispersive_loss(feats).backward()
    # descending the loss moves sample 0 to -x and sample 1 to +x
    assert feats.grad[0, 0] > 0 and feats.grad[1, 0] < 0


def test_across_two_gloo_processes_equals_one_process_on_the_global_batch(ddp_results, monkeypatch):
    """One sample per process: per-device the loss would be exactly 0; gathered with gradients it
    equals the single-process loss on the concatenated batch, and so do the DDP-averaged gradients.
    The 2 ranks run in the suite's one DDP launch (tests/conftest.py `ddp_results`, kind `dispersive`)."""
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    import dispersive_ddp_worker as worker

    block, x, target = worker.make_problem(batch=2)
    total, disp = worker.loss_of(block, x, target, gather=False)
    total.backward()
    ref_grads = [p.grad.flatten().tolist() for p in block.parameters()]
    with torch.no_grad():
        ref_disp = _reference(block(x).numpy(), 1.0)  # independent double loop on the global batch
    assert disp.item() == pytest.approx(ref_disp, rel=1e-5) and ref_disp < -1e-3
    for got in ddp_results.get("dispersive_gather"):
        assert got["disp"] == pytest.approx(ref_disp, rel=1e-5)
        for g, r in zip(got["grads"], ref_grads):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-7)
