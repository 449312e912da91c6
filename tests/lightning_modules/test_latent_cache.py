"""The latent cache: draws from cached VAE posteriors equal direct encodes bit for bit (both flips),
it checks itself and turns off where that would not hold, and training with it is the same run."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from experiments.config import CONFIG_DIR, load_experiment
from experiments.datasets import build_datamodule
from experiments.runner import build_module, build_trainer, resolve_checkpoint
from lightning_modules.backbones import build_backbone
from lightning_modules.backbones.config import BackboneConfig
from lightning_modules.encoding import quantize_depth
from lightning_modules.latent_cache import LatentCache


@pytest.fixture(scope="module")
def backbone():
    bb = build_backbone(BackboneConfig(name="tiny-editor"))
    bb.requires_grad_(False)
    return bb


def images(n: int, seed: int = 0, size: tuple[int, int] = (32, 48)) -> torch.Tensor:
    """n smooth, left-right asymmetric images in [-1, 1] (B, 3, H, W)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size[0] // 8, size[1] // 8, generator=gen) * 2 - 1
    ramp = torch.linspace(-0.5, 0.5, size[1]).view(1, 1, 1, -1)
    return (torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False) + ramp).clamp(-1, 1)


def diffusers_sample(bb, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The reference draw, written out: diffusers' own posterior sampler, then FLUX's shift and scale."""
    dist = bb.vae.encode(x).latent_dist
    z = dist.sample(torch.Generator().manual_seed(seed))
    return (z - bb.latent_shift) * bb.latent_scale


def test_encode_is_diffusers_posterior_sample(backbone):
    x = images(2)
    with torch.no_grad():
        ref = diffusers_sample(backbone, x, seed=7)
        got = backbone.encode(x, sample=True, generator=torch.Generator().manual_seed(7))
        mode = backbone.encode(x, sample=False)
        mean = (backbone.vae.encode(x).latent_dist.mean - backbone.latent_shift) * backbone.latent_scale
    assert torch.equal(got, ref)
    assert torch.equal(mode, mean)


def test_cached_draws_equal_direct_draws_for_both_flips(backbone):
    """Batches of 2 over 3 images and their mirror images, in an order where later batches are
    made only of inputs seen before (in other batches): every draw equals the direct encode's."""
    x = images(3, seed=1)
    inputs = torch.cat([x, x.flip(-1)])  # 0-2 as read, 3-5 horizontally flipped
    order = [(0, 1), (2, 3), (4, 5), (1, 0), (3, 4), (5, 2), (0, 3), (4, 1)]
    cache = LatentCache(max_mb=16)
    with torch.no_grad():
        for step, (i, j) in enumerate(order):
            batch = inputs[[i, j]]
            got = cache.encode(backbone, batch, sample=True, generator=torch.Generator().manual_seed(step))
            ref = diffusers_sample(backbone, batch, seed=step)
            assert torch.equal(got, ref), (step, i, j)
    assert cache.enabled and cache.verified
    assert len(cache.entries) == 6  # each image and each mirror image is its own entry
    assert cache.hits >= 4  # some batches came from memory only
    # the flip of a latent is not the latent of the flipped image: both flips must be encoded
    with torch.no_grad():
        mean, _ = backbone.posterior(inputs[[0, 3]])
    assert not torch.equal(mean[1], mean[0].flip(-1))


def test_targets_keyed_by_their_sources_skip_the_quantization_on_hits(backbone):
    """The depth target keyed by (depth, mask): draws equal diffusers' sample of the quantized depth,
    the quantization runs only for batches with an input not yet cached, and another scheme's tag
    never meets these entries."""
    gen = torch.Generator().manual_seed(4)
    depth = torch.rand(3, 1, 32, 48, generator=gen) * 10 + 0.5
    valid = torch.rand(3, 1, 32, 48, generator=gen) > 0.1
    depth, valid = torch.cat([depth, depth.flip(-1)]), torch.cat([valid, valid.flip(-1)])
    calls = []

    def quantized(d, m, scheme="log"):
        calls.append(len(d))
        return quantize_depth(d, m, scheme)

    cache = LatentCache(max_mb=16)
    order = [(0, 1), (2, 3), (4, 5), (1, 0), (3, 4), (5, 2), (0, 3), (4, 1)]
    with torch.no_grad():
        for step, (i, j) in enumerate(order):
            d, m = depth[[i, j]], valid[[i, j]]
            got = cache.encode(backbone, lambda d=d, m=m: quantized(d, m), generator=torch.Generator().manual_seed(step),
                               sources=(d, m), tag="depth:log")
            assert torch.equal(got, diffusers_sample(backbone, quantize_depth(d, m, "log"), seed=step)), step
        assert len(calls) < len(order) and cache.hits >= 4
        hits = cache.hits
        cache.encode(backbone, lambda: quantized(depth[:2], valid[:2], "inverse"), sources=(depth[:2], valid[:2]),
                     tag="depth:inverse", generator=torch.Generator().manual_seed(0))
    assert cache.hits == hits and calls[-1] == 2  # a new recipe: encoded, not served


def test_mismatching_posteriors_turn_the_cache_off(backbone, monkeypatch):
    """A VAE whose output depends on the rest of its batch (here made so by hand) fails the check:
    the cache turns off and never serves those moments; draws stay the direct ones."""
    honest = type(backbone).posterior

    def batch_dependent(x):
        mean, std = honest(backbone, x)
        return mean + 1e-4 * x.mean(), std

    monkeypatch.setattr(backbone, "posterior", batch_dependent)
    x = images(3, seed=2)
    cache = LatentCache(max_mb=16)
    with torch.no_grad():
        for step, idx in enumerate([(0, 1), (1, 2), (0, 1)]):
            batch = x[list(idx)]
            got = cache.encode(backbone, batch, sample=True, generator=torch.Generator().manual_seed(step))
            ref = backbone.encode(batch, sample=True, generator=torch.Generator().manual_seed(step))
            assert torch.equal(got, ref), step
    assert not cache.enabled and cache.hits == 0 and not cache.entries


def test_a_training_set_over_the_budget_turns_the_cache_off(backbone):
    x = images(4, seed=3)  # one entry: mean + std of 16 x 4 x 6 float32 = 3 KiB
    cache = LatentCache(max_mb=5 / 1024)  # 5 KiB: one entry fits, a second does not
    with torch.no_grad():
        got = cache.encode(backbone, x[:2], sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(got, diffusers_sample(backbone, x[:2], seed=0))
    assert not cache.enabled and cache.nbytes == 0
    off = LatentCache(max_mb=0)
    with torch.no_grad():
        off.encode(backbone, x[:2], generator=torch.Generator().manual_seed(0))
    assert not off.enabled and off.misses == 0  # off from the start: backbone.encode directly


class WeightsAndLosses(L.Callback):
    def __init__(self):
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = float(outputs["loss"])


def _fit(tmp_path, data_overrides, run, *extra):
    cfg = load_experiment([CONFIG_DIR / "fe2e.yaml"],
                          [*data_overrides, f"runs_dir={tmp_path}", f"run={run}", "evaluation.benchmarks=[]",
                           "features.blocks=[]", "trainer.max_epochs=4", "data.batches_per_epoch=3", *extra])
    L.seed_everything(cfg.seed, workers=True)
    rec = WeightsAndLosses()
    module = build_module(cfg)
    build_trainer(cfg, callbacks=[rec]).fit(module, datamodule=build_datamodule(cfg), ckpt_path=resolve_checkpoint(cfg))
    state = torch.load(cfg.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return rec.losses, state, module.latent_cache


@pytest.mark.slow
def test_training_with_the_cache_is_the_same_run_and_resumes_exactly(tmp_path, data_overrides):
    """FE2E (joint normals: image, depth and normal targets) with random flips, 4 epochs: the cache
    on serves most inputs from memory and gives the losses and weights of the cache off, bit for
    bit; stopped after 2 epochs and resumed with the cache on, the same weights again."""
    off_losses, off_state, off_cache = _fit(tmp_path, data_overrides, "off", "data.latent_cache_mb=0")
    on_losses, on_state, cache = _fit(tmp_path, data_overrides, "on")
    assert off_cache is None and cache.enabled and cache.verified and cache.hits > cache.misses / 2
    assert on_losses == off_losses and len(on_losses) == 12
    assert on_state.keys() == off_state.keys()
    for key, value in off_state.items():
        assert torch.equal(on_state[key], value), key

    _fit(tmp_path, data_overrides, "resumed", "trainer.max_epochs=2")
    losses, state, _ = _fit(tmp_path, data_overrides, "resumed", "resume=last")
    assert sorted(losses) == list(range(7, 13))
    assert all(losses[s] == off_losses[s] for s in losses)
    for key, value in off_state.items():
        assert torch.equal(state[key], value), key


def test_validation_with_the_cache_scores_the_same(tmp_path, data_overrides):
    """Three validations of one model: with the validation cache on, the second and third serve every
    image's posterior from memory (after one comparison with a fresh encode) and every metric equals
    the cache-off model's exactly, with seeded per-sample posterior draws (image_latent: sample; the
    mode is the same path without the draw)."""
    from experiments.runner import build_scorer

    cfg = load_experiment([CONFIG_DIR / "fe2e.yaml"],
                          [*data_overrides, f"runs_dir={tmp_path}", "evaluation.benchmarks=[kitti]",
                           "evaluation.image_latent=sample"])

    def validate_three_times(module):
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                            use_distributed_sampler=False, callbacks=[build_scorer(cfg)])
        datamodule = build_datamodule(cfg)
        return [trainer.validate(module, datamodule=datamodule, verbose=False) for _ in range(3)]

    on = build_module(cfg)
    off = build_module(cfg)
    off.val_latent_cache = None
    on_results, off_results = validate_three_times(on), validate_three_times(off)
    cache = on.val_latent_cache
    assert cache.enabled and cache.verified and cache.misses > 0
    assert cache.hits >= cache.misses  # the third validation at least is served from memory
    assert on_results == off_results and "val/kitti/abs_rel" in on_results[0][0]
