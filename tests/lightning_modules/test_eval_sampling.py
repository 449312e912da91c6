"""Evaluation draws: the image-posterior `sample` option (FE2E's released evaluation) and the
per-sample seeding of every evaluation draw."""

from __future__ import annotations

import torch

from experiments.config import CONFIG_DIR, load_experiment
from experiments.runner import build_module


def _module(tmp_path, *extra):
    cfg = load_experiment([CONFIG_DIR / "fe2e.yaml"], [f"runs_dir={tmp_path}", *extra])
    module = build_module(cfg)
    module.configure_model()
    return module.eval()


def test_image_latent_sample_draws_the_posterior_with_per_sample_seeds(tmp_path):
    mode = _module(tmp_path)
    sampled = _module(tmp_path, "evaluation.image_latent=sample")
    rgb = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    names = ["a.png", "b.png"]
    a = sampled.predict_geometry(rgb, generator=sampled.sample_generators("test", names))["depth"]
    b = sampled.predict_geometry(rgb, generator=sampled.sample_generators("test", names))["depth"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # seeded: repeatable
    m = mode.predict_geometry(rgb, generator=mode.sample_generators("test", names))["depth"]
    assert (a - m).abs().max() > 1e-6  # a posterior sample, not the mode
    # the draw of sample 'b.png' does not depend on its batch-mate
    alone = sampled.predict_geometry(rgb[1:], generator=sampled.sample_generators("test", names[1:]))["depth"]
    torch.testing.assert_close(alone, a[1:], rtol=1e-5, atol=1e-6)

    # independent check of what is drawn: mode + std * eps, eps from the sample's own generator
    bb = sampled.backbone
    dist = bb.vae.encode(rgb[:1]).latent_dist
    eps = torch.randn(dist.mean.shape, generator=sampled.sample_generators("test", names[:1])[0])
    expected = (dist.mean + dist.std * eps - bb.latent_shift) * bb.latent_scale
    got = bb.encode(rgb[:1], sample=True, generator=sampled.sample_generators("test", names[:1]))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_per_sample_seeds_differ_by_name_stage_and_seed(tmp_path):
    module = _module(tmp_path)
    draw = lambda gens: torch.cat([torch.rand(1, generator=g) for g in gens])  # noqa: E731
    x = draw(module.sample_generators("val", ["a", "b", "a"]))
    assert x[0] == x[2] and x[0] != x[1]
    assert draw(module.sample_generators("test", ["a"]))[0] != x[0]
    other = _module(tmp_path, "seed=1")
    assert draw(other.sample_generators("val", ["a"]))[0] != x[0]
