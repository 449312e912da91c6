"""GenPercept as a method (SPEC section 9) on tiny backbones and procedural data: one deterministic
forward on z_I, pixel-loss gradients that reach the DiT through a VAE that never changes, the latent
baseline, fast_dev_run of its variants, and its configs."""

from __future__ import annotations

import dataclasses
import hashlib

import lightning as L
import pytest
import torch

from experiments.config import CONFIG_DIR, METHODS, load_experiment
from experiments.datasets import build_datamodule
from experiments.runner import METHOD_MODULES, build_module, build_scorer
from lightning_modules.encoding import latent_valid_mask, quantize_depth
from lightning_modules.genpercept import GenPerceptModule
from lightning_modules.optim import build_optimizer

GP = CONFIG_DIR / "genpercept.yaml"


def _module(tmp_path, data_overrides, *extra, config=GP):
    cfg = load_experiment([config], [*data_overrides, f"runs_dir={tmp_path}", *extra])
    module = build_module(cfg)
    module.configure_model()
    return module, cfg


def _batch(cfg):
    dm = build_datamodule(cfg)
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_overrides):
    """(module, cfg, batch) of genpercept.yaml, shared: tests only change `objective.cfg` copies."""
    module, cfg = _module(tmp_path_factory.mktemp("runs"), data_overrides)
    return module, cfg, _batch(cfg)


def _with(module, **changes):
    """Point the module's objective at a modified copy of its config (returns the old one)."""
    old = module.objective.cfg
    module.objective.cfg = dataclasses.replace(old, **changes)
    return old


def _hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_every_method_has_a_module():
    assert set(METHODS) == set(METHOD_MODULES) and METHOD_MODULES["genpercept"] is GenPerceptModule


def test_config_is_genpercepts_recipe():
    cfg = load_experiment([GP])
    g = cfg.genpercept
    assert (cfg.method, cfg.quantization, cfg.backbone.finetune) == ("genpercept", "direct", "full")
    assert (g.task, g.head, g.loss_space, g.grad_axes) == ("depth", "vae_decoder", "pixel", "released")
    assert (g.mse_weight, g.ssi_weight, g.grad_weight, g.train_sigma, g.inference_sigma) == (1.0, 0.5, 2.0, None, 0.001)
    assert (cfg.optim.optimizer, cfg.optim.schedule, cfg.optim.final_ratio) == ("adam", "exponential", 0.01)
    assert cfg.trainer.gradient_clip_val is None
    real = load_experiment([GP, CONFIG_DIR / "backbone/flux-dev.yaml", CONFIG_DIR / "genpercept/lora.yaml"],
                           ["backbone.weights=/w"])
    o, b = real.optim, real.backbone
    assert (o.optimizer, o.lr, o.weight_decay, o.warmup_steps, o.decay_steps) == ("adam", 3e-5, 0.0, 100, 25000)
    assert (b.name, b.finetune, b.lora_rank, b.lora_alpha) == ("flux-dev", "lora", 64, 32)
    normal = load_experiment([CONFIG_DIR / "genpercept_normal.yaml"])
    assert (normal.run, normal.genpercept.task, normal.evaluation.benchmarks) == (
        "genpercept-normal", "normal", ["nyuv2_normal"])


def test_one_deterministic_forward_on_the_image_latent(built):
    module, _, batch = built
    rgb = batch["rgb"]
    calls = []
    hook = module.backbone.register_forward_pre_hook(lambda mod, args: calls.append([a for a in args]))
    try:
        a = module.predict_geometry(rgb, generator=torch.Generator().manual_seed(1))["depth"]
        b = module.predict_geometry(rgb, generator=torch.Generator().manual_seed(2))["depth"]
    finally:
        hook.remove()
    assert len(calls) == 2  # ONE DiT forward per prediction
    target, image, sigma = calls[0][:3]
    assert torch.equal(target, module.backbone.encode(rgb, sample=False))  # z_I itself: no noise
    assert image is None  # no concatenation
    assert torch.allclose(sigma, torch.full_like(sigma, 1e-3))
    assert torch.equal(a, b) and a.shape == (rgb.shape[0], 1, *rgb.shape[-2:])
    assert 0 <= float(a.min()) and float(a.max()) <= 1


def test_pixel_loss_reaches_the_dit_and_never_changes_the_vae(built):
    module, _, batch = built
    vae_before, dit_before = _hash(module.backbone.vae), _hash(module.backbone.transformer)
    params = [p for p in module.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in module.backbone.vae.parameters())
    opt = build_optimizer(params, module.optim_cfg, total_steps=10)["optimizer"]
    z_image = module.backbone.encode(batch["rgb"], sample=False)
    for step in range(3):
        losses = module.objective.loss(module.backbone, batch, z_image, generator=torch.Generator().manual_seed(step))
        assert set(losses) == {"loss", "loss_mse", "loss_ssi", "loss_grad"}  # pixel losses only, no latent term
        opt.zero_grad()
        losses["loss"].backward()
        # the only path from the loss to the DiT runs through the decoder; its FIRST layer gets gradient
        assert float(module.backbone.transformer.x_embedder.weight.grad.abs().sum()) > 0
        assert all(p.grad is None for p in module.backbone.vae.parameters())
        opt.step()
    assert _hash(module.backbone.vae) == vae_before
    assert _hash(module.backbone.transformer) != dit_before


def test_decoder_checkpointing_changes_memory_not_gradients(built):
    module, _, batch = built
    z_image = module.backbone.encode(batch["rgb"], sample=False)
    grads = []
    for flag in (True, False):
        old = _with(module, checkpoint_decoder=flag, train_sigma=0.3)
        try:
            module.zero_grad()
            module.objective.loss(module.backbone, batch, z_image)["loss"].backward()
        finally:
            module.objective.cfg = old
        grads.append(module.backbone.transformer.x_embedder.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-8)


def test_latent_baseline_is_masked_mse_of_f_against_minus_z_depth(built):
    module, _, batch = built
    bb = module.backbone
    z_image = bb.encode(batch["rgb"], sample=False)
    old = _with(module, loss_space="latent", train_sigma=0.5)
    try:
        with torch.no_grad():
            losses = module.objective.loss(bb, batch, z_image)
    finally:
        module.objective.cfg = old
    with torch.no_grad():
        f = bb(z_image, None, torch.full((z_image.shape[0],), 0.5)).target
        valid = batch["valid_mask"].bool()
        z_depth = bb.encode(quantize_depth(batch["depth"], valid, "direct"), sample=False)
        cells = latent_valid_mask(valid, 8).expand_as(f)
        expected = ((f - (-z_depth)) ** 2)[cells].mean()
    assert set(losses) == {"loss", "loss_latent"}
    assert float(losses["loss"]) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("variant", [
    ("genpercept.yaml",),
    ("genpercept_normal.yaml", "genpercept.head=dpt", "genpercept.dpt_features=16", "genpercept.dpt_neck=[8,8,8,8]",
     "genpercept.image_tokens=true", "backbone.name=tiny-editor"),
], ids=["depth-decoder", "normal-dpt-editor"])
def test_fast_dev_run(tmp_path, data_overrides, variant):
    cfg = load_experiment([CONFIG_DIR / variant[0]], [*data_overrides, f"runs_dir={tmp_path}", *variant[1:],
                                                      "evaluation.benchmarks=[kitti,nyuv2_normal]"])
    module = build_module(cfg)
    trainer = L.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        use_distributed_sampler=False, enable_model_summary=False,
                        callbacks=[build_scorer(cfg)])
    trainer.fit(module, datamodule=build_datamodule(cfg))
    metrics = trainer.callback_metrics
    assert trainer.state.finished and torch.isfinite(metrics["train/loss"])
    depth = cfg.genpercept.task == "depth"
    assert ("val/kitti/abs_rel" in metrics) == depth and ("val/nyuv2_normal/mean" in metrics) == (not depth)
    if cfg.genpercept.head == "dpt":
        assert module.objective.head is not None and module.objective.head_blocks == ["double.0", "single.0",
                                                                                      "single.1", "single.3"]


def test_channel_conditioning_is_refused(tmp_path, data_overrides):
    cfg = load_experiment([GP], [*data_overrides, f"runs_dir={tmp_path}", "backbone.conditioning=channel"])
    with pytest.raises(ValueError, match="conditioning='sequence'"):
        build_module(cfg).configure_model()


def test_dpt_head_is_checkpointed_and_restored(tmp_path, data_overrides):
    from experiments.runner import load_trained_weights

    extra = ("genpercept.head=dpt", "genpercept.dpt_features=16", "genpercept.dpt_neck=[8,8,8,8]")
    module, _ = _module(tmp_path, data_overrides, *extra)
    with torch.no_grad():
        for p in module.objective.head.parameters():
            p.add_(0.5)
    ckpt = {"state_dict": module.state_dict(), "global_step": 3}
    module.on_save_checkpoint(ckpt)
    head_keys = [k for k in ckpt["state_dict"] if k.startswith("objective.head.")]
    assert head_keys and not any(k.startswith("backbone.vae.") for k in ckpt["state_dict"])
    assert "backbone.transformer.proj_out.weight" not in ckpt["state_dict"]  # frozen: it never reaches the head
    torch.save(ckpt, tmp_path / "x.ckpt")
    fresh, _ = _module(tmp_path, data_overrides, *extra)
    assert load_trained_weights(fresh, tmp_path / "x.ckpt") == 3
    for key in head_keys:
        torch.testing.assert_close(fresh.state_dict()[key], module.state_dict()[key])
