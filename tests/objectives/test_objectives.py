"""Objectives of SPEC section 3 against a linear fake backbone with hand-derived losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_modules.objectives import (
    ObjectiveConfig,
    build_objective,
    inference_sigmas,
    sample_sigma,
    shift_sigma,
)

B, C, H, W = 2, 16, 2, 2


def _cfg(**kw):
    base = {"kind": "consistent_velocity", "fixed_start": True, "dispersive_weight": 0.0}
    base.update(kw)
    return ObjectiveConfig(**base)


def _checker(h=H, w=W):
    """(B,16,h,w) latent whose cells alternate +1 / -1 (half the elements each)."""
    z = torch.ones(B, C, h, w)
    z[..., 0, 1] = -1.0
    z[..., 1, 0] = -1.0
    return z


# --- fixed start ----------------------------------------------------------------------------
def test_fixed_start_loss_closed_form(fake_backbone):
    # input target = 0, sigma = 1: f = b*z_I + c = 0.5*1 + 0.25 = 0.75; target velocity -z_D = -2
    # -> (0.75 + 2)^2 = 7.5625 everywhere.
    bb = fake_backbone(a=3.0, b=0.5, c=0.25)
    out = build_objective(_cfg()).loss(bb, {"image": torch.ones(B, C, H, W), "depth": 2 * torch.ones(B, C, H, W)})
    assert out["loss_depth"].item() == pytest.approx(7.5625)
    assert out["loss"].item() == pytest.approx(7.5625)
    assert set(out) == {"loss", "loss_depth"}
    call = bb.calls[0]
    assert torch.count_nonzero(call["target"]) == 0
    assert torch.all(call["sigma"] == 1.0) and call["sigma"].shape == (B,)


def test_fixed_start_predict_is_minus_f(fake_backbone):
    # f = 0.5*z_I + 0.25 -> z_D = -f = -0.5*z_I - 0.25, from ONE forward on zeros at sigma 1
    bb = fake_backbone(a=3.0, b=0.5, c=0.25)
    z_i = _checker()
    depth, normal = build_objective(_cfg()).predict(bb, z_i)
    assert normal is None
    assert len(bb.calls) == 1 and torch.all(bb.calls[0]["sigma"] == 1.0)
    torch.testing.assert_close(depth, -0.5 * z_i - 0.25)


# --- consistent velocity ----------------------------------------------------------------------
def test_consistent_velocity_loss_closed_form(fake_backbone):
    # input = noise n at sigma 1; f = n + 0.5*z_I; target n - z_D -> residual 0.5*z_I + z_D,
    # z_I = 1, z_D = +-1 -> residuals 1.5 / -0.5 half each -> (2.25 + 0.25)/2 = 1.25, for any noise.
    bb = fake_backbone(a=1.0, b=0.5)
    g = torch.Generator().manual_seed(3)
    out = build_objective(_cfg(fixed_start=False)).loss(bb, {"image": torch.ones(B, C, H, W), "depth": _checker()},
                                                        generator=g)
    assert out["loss_depth"].item() == pytest.approx(1.25)
    call = bb.calls[0]
    assert torch.all(call["sigma"] == 1.0)
    assert 0.5 < call["target"].std().item() < 1.6  # the input really is noise, not zeros


def test_consistent_velocity_predict_one_step(fake_backbone):
    # z_D = noise - f = noise - (noise + 0.5*z_I) = -0.5*z_I
    bb = fake_backbone(a=1.0, b=0.5)
    z_i = _checker()
    depth, _ = build_objective(_cfg(fixed_start=False)).predict(bb, z_i, generator=torch.Generator().manual_seed(0))
    assert len(bb.calls) == 1
    torch.testing.assert_close(depth, -0.5 * z_i, atol=1e-6, rtol=0)


def test_consistent_velocity_reproducible_with_generator(fake_backbone):
    obj = build_objective(_cfg(fixed_start=False))
    lat = {"image": torch.ones(B, C, H, W), "depth": _checker()}
    bb = fake_backbone(a=0.3, b=0.5)  # a != 1: the loss depends on the noise
    l1 = obj.loss(bb, lat, generator=torch.Generator().manual_seed(7))["loss"]
    l2 = obj.loss(bb, lat, generator=torch.Generator().manual_seed(7))["loss"]
    l3 = obj.loss(bb, lat, generator=torch.Generator().manual_seed(8))["loss"]
    assert l1.item() == l2.item() and l1.item() != l3.item()


# --- direct adapt -----------------------------------------------------------------------------
def test_direct_adapt_loss_matches_regenerated_draws(fake_backbone):
    a, b, c = 0.7, -0.4, 0.3
    z_i = torch.linspace(-1, 1, B * C * H * W).reshape(B, C, H, W)
    z_d = torch.cos(torch.arange(B * C * H * W, dtype=torch.float32)).reshape(B, C, H, W)
    bb = fake_backbone(a=a, b=b, c=c)
    out = build_objective(_cfg(kind="direct_adapt", fixed_start=False)).loss(
        bb, {"image": z_i, "depth": z_d}, generator=torch.Generator().manual_seed(11))
    # documented draw order: sigma (uniform) first, then the noise
    g = torch.Generator().manual_seed(11)
    s = torch.rand(B, generator=g).numpy().reshape(B, 1, 1, 1).astype(np.float64)
    n = torch.randn(B, C, H, W, generator=g).numpy().astype(np.float64)
    zd, zi = z_d.numpy().astype(np.float64), z_i.numpy().astype(np.float64)
    x = (1 - s) * zd + s * n
    expected = np.mean((a * x + b * zi + c * s - (n - zd)) ** 2)
    assert out["loss_depth"].item() == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(bb.calls[0]["target"].numpy(), x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bb.calls[0]["sigma"].numpy(), s.ravel(), rtol=1e-6)


def test_direct_adapt_euler_recovers_x0(fake_backbone):
    x0 = torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(5))
    bb = fake_backbone(velocity_to=x0)  # v(x, s) = (x - x0)/s, the straight path to x0
    obj = build_objective(_cfg(kind="direct_adapt", fixed_start=False, num_inference_steps=28))
    depth, normal = obj.predict(bb, torch.zeros(B, C, H, W), generator=torch.Generator().manual_seed(1))
    assert normal is None and len(bb.calls) == 28
    torch.testing.assert_close(depth, x0, atol=1e-5, rtol=0)
    sig = [c["sigma"][0].item() for c in bb.calls]
    # FLUX's dynamic schedule for L = 2*2/4 = 1 target token (transcribed from SPEC 3 here):
    mu = 0.5 + (1.15 - 0.5) * (1 - 256) / (4096 - 256)
    t = 1 / 28
    assert sig[0] == 1.0 and sig[-1] == pytest.approx(math.exp(mu) / (math.exp(mu) + (1 / t - 1)), rel=1e-6)
    assert all(np.diff(sig) < 0)


def _flux_schedule_reference(n_steps: int, num_tokens: int) -> list[float]:
    """FE2E's released sampler, transcribed from SPEC section 3 (pure Python, independent of the code)."""
    mu = 0.5 + (1.15 - 0.5) * (num_tokens - 256) / (4096 - 256)
    ts = [1 - i / n_steps for i in range(n_steps + 1)]
    return [0.0 if t == 0 else math.exp(mu) / (math.exp(mu) + (1 / t - 1)) for t in ts]


def test_direct_adapt_inference_follows_flux_dynamic_schedule(fake_backbone):
    # a 1024x768 image: latent 96x128 -> L = 48*64 = 3072 target tokens, e^mu ~ 2.656
    obj = build_objective(_cfg(kind="direct_adapt", fixed_start=False, num_inference_steps=28))
    sig = obj.inference_schedule(96 * 128).tolist()
    ref = _flux_schedule_reference(28, 3072)
    np.testing.assert_allclose(sig, ref, rtol=1e-6, atol=1e-7)
    linear = [1 - i / 28 for i in range(29)]
    assert max(abs(a - b) for a, b in zip(sig, linear)) > 0.2  # SPEC: up to ~0.24 from linear
    # the Euler loop really walks these sigmas, for the latent size it is given
    bb = fake_backbone(a=0.0, b=0.0)
    obj.predict(bb, torch.zeros(1, C, 8, 12), generator=torch.Generator().manual_seed(0))
    walked = [c["sigma"][0].item() for c in bb.calls]
    np.testing.assert_allclose(walked, _flux_schedule_reference(28, 4 * 6)[:-1], rtol=1e-6)
    # a fixed shift stays available (1 = linear)
    fixed = build_objective(_cfg(kind="direct_adapt", fixed_start=False, num_inference_steps=4, inference_shift=1.0))
    torch.testing.assert_close(fixed.inference_schedule(96 * 128), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))


def test_inference_sigmas_linspace_and_shift():
    torch.testing.assert_close(inference_sigmas(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    # shift 3: 3*0.5/(1+2*0.5) = 0.75
    assert inference_sigmas(2, shift=3.0)[1].item() == pytest.approx(0.75)


def test_shifted_sampler_is_step1x_recipe():
    # Step1X-Edit: u = sigmoid(n), n ~ N(0, 1), then sigma = 3.1582 u / (1 + 2.1582 u); same draws here
    sh = sample_sigma(5, "shifted", torch.device("cpu"), torch.Generator().manual_seed(4), shift=3.1582)
    n = torch.randn(5, generator=torch.Generator().manual_seed(4)).double().numpy()
    u = 1 / (1 + np.exp(-n))
    np.testing.assert_allclose(sh.numpy(), 3.1582 * u / (1 + 2.1582 * u), rtol=1e-6)


def test_per_sample_generators_make_draws_independent_of_batching():
    from lightning_modules.objectives.sampling import randn_like

    def gens(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    x = torch.zeros(3, C, H, W)
    whole = randn_like(x, gens([10, 11, 12]))
    halves = torch.cat([randn_like(x[:2], gens([10, 11])), randn_like(x[2:], gens([12]))])
    torch.testing.assert_close(whole, halves, rtol=0, atol=0)
    torch.testing.assert_close(whole[1], torch.randn(C, H, W, generator=torch.Generator().manual_seed(11)))
    sig = sample_sigma(3, "uniform", torch.device("cpu"), gens([1, 2, 3]))
    assert sig[2].item() == torch.rand(1, generator=torch.Generator().manual_seed(3)).item()
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        randn_like(x, gens([1, 2]))


def test_sigma_samplers_distribution():
    n = 40000
    dev = torch.device("cpu")
    u = sample_sigma(n, "uniform", dev, torch.Generator().manual_seed(0))
    assert u.median().item() == pytest.approx(0.5, abs=0.01) and 0 <= u.min() and u.max() <= 1
    sh = sample_sigma(n, "shifted", dev, torch.Generator().manual_seed(0), shift=3.1582)
    # median of shift*s/(1+(shift-1)s) is its value at s=0.5: 1.5791/2.0791 = 0.75951
    assert sh.median().item() == pytest.approx(1.5791 / 2.0791, abs=0.01)
    ln = sample_sigma(n, "logit_normal", dev, torch.Generator().manual_seed(0))
    # P(sigmoid(N(0,1)) < sigmoid(1)) = Phi(1) = 0.8413
    assert (ln < 1 / (1 + math.exp(-1))).float().mean().item() == pytest.approx(0.8413, abs=0.01)
    assert shift_sigma(torch.tensor(0.0), 3.0) == 0 and shift_sigma(torch.tensor(1.0), 3.0) == 1


# --- joint estimation -------------------------------------------------------------------------
def test_joint_estimation_loss_and_normal_sign(fake_backbone):
    # FS: target input 0 -> image_out = d*z_I = 2 ; z_N = 1.5 -> (2 - 1.5)^2 = 0.25
    # depth: f = 0.5 ; -z_D = -1 -> 1.5^2 = 2.25 ; total 2.5
    bb = fake_backbone(b=0.5, d=2.0, e=7.0)
    obj = build_objective(_cfg(joint_estimation=True))
    lat = {"image": torch.ones(B, C, H, W), "depth": torch.ones(B, C, H, W), "normal": 1.5 * torch.ones(B, C, H, W)}
    out = obj.loss(bb, lat)
    assert out["loss_normal"].item() == pytest.approx(0.25)
    assert out["loss_depth"].item() == pytest.approx(2.25)
    assert out["loss"].item() == pytest.approx(2.5)
    depth, normal = obj.predict(bb, torch.ones(B, C, H, W))
    torch.testing.assert_close(normal, 2.0 * torch.ones(B, C, H, W))  # +f_image, no sign flip
    torch.testing.assert_close(depth, -0.5 * torch.ones(B, C, H, W))  # -f_target


def test_joint_estimation_needs_image_tokens(fake_backbone):
    obj = build_objective(_cfg(joint_estimation=True))
    lat = {"image": torch.ones(B, C, H, W), "depth": torch.ones(B, C, H, W), "normal": torch.ones(B, C, H, W)}
    with pytest.raises(ValueError, match="joint_estimation"):
        obj.loss(fake_backbone(has_image_tokens=False), lat)
    with pytest.raises(ValueError, match="joint_estimation"):
        obj.predict(fake_backbone(has_image_tokens=False), lat["image"])
    with pytest.raises(KeyError, match="normal"):
        obj.loss(fake_backbone(), {"image": lat["image"], "depth": lat["depth"]})


# --- dispersive term inside the objective -------------------------------------------------------
def test_total_loss_with_dispersive(fake_backbone):
    bb = fake_backbone(b=0.5)
    z_i = torch.stack([torch.zeros(C, H, W), torch.full((C, H, W), 0.25)])
    z_d = torch.ones(B, C, H, W)
    out = build_objective(_cfg(dispersive_weight=0.5)).loss(bb, {"image": z_i, "depth": z_d})
    assert bb.calls[0]["capture"] == ("single.9",)
    # features = [target tokens (zeros under FS) ; image tokens]: the two samples differ by 0.25 on
    # half of the 2*h*w*16 = 128 elements -> D_01 = 64 * 0.0625 / 128 = 1/32
    d01 = 1 / 32
    disp = math.log((2 + 2 * math.exp(-d01)) / 4)
    assert out["loss_disp"].item() == pytest.approx(disp, rel=1e-5)
    # loss_depth: f = 0.5*z_I, target -1 -> residuals 1 (sample 0) and 1.125 (sample 1)
    fm = (1.0 + 1.125 ** 2) / 2
    assert out["loss_depth"].item() == pytest.approx(fm)
    assert out["loss"].item() == pytest.approx(fm + 0.5 * disp, rel=1e-6)


def test_missing_dispersive_block_names_key(fake_backbone):
    obj = build_objective(_cfg(dispersive_weight=0.5, dispersive_block="single.99"))
    with pytest.raises(KeyError, match="dispersive_block"):
        obj.loss(fake_backbone(), {"image": torch.ones(B, C, H, W), "depth": torch.ones(B, C, H, W)})


# --- latent mask ------------------------------------------------------------------------------
def test_latent_mask_averages_over_valid_cells(fake_backbone):
    # f = 0, target -z_D: squared residual = z_D^2 = cell values 1,2,3,4 squared = 1,4,9,16
    z_d = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(1, C, 2, 2).clone()
    lat = {"image": torch.zeros(1, C, 2, 2), "depth": z_d,
           "latent_valid": torch.tensor([[True, False], [True, True]]).view(1, 1, 2, 2)}
    masked = build_objective(_cfg(latent_mask=True)).loss(fake_backbone(), lat)
    plain = build_objective(_cfg(latent_mask=False)).loss(fake_backbone(), lat)
    assert masked["loss"].item() == pytest.approx(26 / 3)
    assert plain["loss"].item() == pytest.approx(7.5)
    with pytest.raises(KeyError, match="latent_valid"):
        build_objective(_cfg(latent_mask=True)).loss(fake_backbone(), {"image": lat["image"], "depth": z_d})


# --- config validation ------------------------------------------------------------------------
@pytest.mark.parametrize("kw,key", [
    ({"kind": "direct_adapt", "fixed_start": True}, "fixed_start"),
    ({"kind": "flow"}, "kind"),
    ({"kind": "direct_adapt", "fixed_start": False, "sigma_sampling": "cosine"}, "sigma_sampling"),
    ({"dispersive_tau": 0.0}, "dispersive_tau"),
    ({"dispersive_weight": -1.0}, "dispersive_weight"),
    ({"num_inference_steps": 0}, "num_inference_steps"),
])
def test_config_errors_name_the_key(kw, key):
    with pytest.raises(ValueError, match=key):
        ObjectiveConfig(**kw)


def test_build_objective_from_mapping():
    assert build_objective({"kind": "consistent_velocity", "fixed_start": False}).cfg.fixed_start is False
    with pytest.raises(ValueError, match="dispersive_wieght"):
        build_objective({"dispersive_wieght": 0.5})
