"""MergeModule on the tiny generator and procedural data: the frozen base stays bit-identical (and so
do its generated images) while the converters train, checkpoints hold the converters only,
fast_dev_run and 2-process DDP run, the generate command, and config errors."""

from __future__ import annotations

import hashlib
import json
import math
import shutil

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from experiments.__main__ import main
from experiments.config import CONFIG_DIR, load_experiment
from experiments.datasets import build_datamodule
from experiments.runner import build_module, build_scorer, write_run_metadata
from lightning_modules.backbones.merge_backbone import sample_images

MERGE = CONFIG_DIR / "merge.yaml"
FAST = ["objective.num_inference_steps=2", "evaluation.benchmarks=[kitti]", "features.blocks=[]"]


def merge_cfg(tmp_path, data_overrides, *extra):
    return load_experiment([MERGE], [*data_overrides, f"runs_dir={tmp_path}", *FAST, *extra])


def state_hash(module: torch.nn.Module) -> str:
    """sha256 over the raw bytes of every tensor of the state dict (written here, independently of the code)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_recipe_config_and_real_weights_files():
    cfg = load_experiment([MERGE])
    assert (cfg.method, cfg.backbone.name, cfg.backbone.finetune, cfg.backbone.guidance) == (
        "merge", "tiny-generator", "frozen", 0.0)
    o = cfg.objective
    assert (o.kind, o.sigma_sampling, o.fixed_start, o.joint_estimation, o.dispersive_weight, o.latent_mask,
            o.num_inference_steps) == ("direct_adapt", "uniform", False, False, 0.0, False, 20)
    assert cfg.quantization == "direct" and cfg.merge.converters_per_section == 5
    real = load_experiment([MERGE, CONFIG_DIR / "backbone/flux-dev.yaml", CONFIG_DIR / "merge/flux-dev.yaml"],
                           ["backbone.weights=/w"])
    b, opt = real.backbone, real.optim
    assert (b.name, b.finetune, b.dit_dtype, b.guidance, b.gradient_checkpointing) == (
        "flux-dev", "frozen", "bfloat16", 0.0, True)
    assert (opt.lr, opt.schedule, opt.warmup_steps) == (3e-4, "linear", 500)


def test_frozen_base_bit_identical_and_generation_unchanged_after_training(tmp_path, data_overrides):
    cfg = merge_cfg(tmp_path, data_overrides)
    module = build_module(cfg)
    module.configure_model()
    dm = build_datamodule(cfg)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    base_before = state_hash(module.backbone.transformer)
    conv_before = {k: v.clone() for k, v in module.backbone.converters.state_dict().items()}
    images_before = sample_images(module.backbone, 2, 32, num_steps=3, seed=5)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    for step in range(3):
        latents = module.encode_batch(batch, torch.Generator().manual_seed(step))
        loss = module.objective.loss(module.backbone, latents, generator=torch.Generator().manual_seed(step))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert state_hash(module.backbone.transformer) == base_before
    changed = [k for k, v in module.backbone.converters.state_dict().items() if not torch.equal(v, conv_before[k])]
    assert "x_embedder.weight" in changed and len(changed) > 10
    assert torch.equal(sample_images(module.backbone, 2, 32, num_steps=3, seed=5), images_before)
    assert not torch.equal(sample_images(module.backbone, 2, 32, num_steps=3, seed=6), images_before)


def test_fit_checkpoint_holds_converters_only_and_generate_is_unchanged(tmp_path, data_overrides, capsys):
    cfg = merge_cfg(tmp_path, data_overrides, "trainer.max_epochs=1", "evaluation.benchmarks=[]")
    assert main(["train", "--config", str(MERGE), *data_overrides, f"runs_dir={tmp_path}", *FAST,
                 "trainer.max_epochs=1", "evaluation.benchmarks=[]"]) == 0
    run = cfg.run_dir
    frozen = json.loads((run / "merge_frozen_base.json").read_text())
    assert frozen["identical"] and frozen["sha256_before"] == frozen["sha256_after"] and frozen["global_step"] == 2
    ckpt = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    module = build_module(cfg)
    module.configure_model()
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert set(ckpt["state_dict"]) == trainable and all(k.startswith("backbone.converters.") for k in trainable)
    exported = load_file(run / "checkpoints/converters.safetensors")
    assert {f"backbone.converters.{k}" for k in exported} == trainable
    # the trained run and the same config untrained (a run folder without checkpoints) generate the same PNG
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    shutil.copy(run / "config.yaml", untrained / "config.yaml")
    assert main(["generate", "--checkpoint", str(run), "--out", str(tmp_path / "g1"), "--num-images", "3",
                 "--size", "32", "--steps", "3"]) == 0
    assert main(["generate", "--checkpoint", str(untrained), "--out", str(tmp_path / "g0"), "--num-images", "3",
                 "--size", "32", "--steps", "3"]) == 0
    png1, png0 = (tmp_path / "g1/generate.png").read_bytes(), (tmp_path / "g0/generate.png").read_bytes()
    assert png1 == png0
    meta1, meta0 = (json.loads((tmp_path / d / "generate.json").read_text()) for d in ("g1", "g0"))
    assert (meta1["trained_steps"], meta0["trained_steps"]) == (2, 0) and meta1["base_sha256"] == meta0["base_sha256"]
    from PIL import Image

    assert Image.open(tmp_path / "g1/generate.png").size == (64, 64)  # 3 images -> 2x2 grid of 32 px


def test_generate_rejects_other_methods_and_bad_sizes(tmp_path, data_overrides, capsys):
    cfg = load_experiment([CONFIG_DIR / "fe2e.yaml"], [*data_overrides, f"runs_dir={tmp_path}"])
    write_run_metadata(cfg)
    assert main(["generate", "--checkpoint", str(cfg.run_dir), "--out", str(tmp_path / "g")]) == 2
    assert "method: merge" in capsys.readouterr().err
    mcfg = merge_cfg(tmp_path, data_overrides)
    write_run_metadata(mcfg)
    assert main(["generate", "--checkpoint", str(mcfg.run_dir), "--out", str(tmp_path / "g"), "--size", "40"]) == 2
    assert "--size 40" in capsys.readouterr().err


def test_fast_dev_run(tmp_path, data_overrides):
    cfg = merge_cfg(tmp_path, data_overrides)
    trainer = L.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        use_distributed_sampler=False, enable_model_summary=False,
                        callbacks=[build_scorer(cfg)])
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    assert trainer.state.finished and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert "val/kitti/abs_rel" in trainer.callback_metrics


def test_ddp_two_processes(ddp_results):
    """Trainer.fit, max_steps=2, on 2 processes (the suite's one DDP launch, tests/conftest.py `ddp_results`,
    with this module's FAST overrides): every rank finishes both steps with a finite loss."""
    assert ddp_results.specs["merge_fit"]["configs"] == [MERGE.name] and set(FAST) <= set(
        ddp_results.specs["merge_fit"]["overrides"])
    for fit in ddp_results.get("merge_fit"):
        assert fit["finished"] and fit["global_step"] == 2 and math.isfinite(fit["train/loss"]), fit


@pytest.mark.parametrize("override, message", [
    ("backbone.finetune=lora", "backbone.finetune='lora'.*frozen"),
    ("backbone.name=tiny-editor", "backbone.name='tiny-editor'"),
    ("backbone.conditioning=channel", "backbone.conditioning='channel'"),
    ("objective.joint_estimation=true", "joint_estimation"),
])
def test_config_errors_name_the_key(tmp_path, data_overrides, override, message):
    with pytest.raises(ValueError, match=message):
        build_module(merge_cfg(tmp_path, data_overrides, override))



def test_linear_schedule_as_diffusers_get_scheduler_linear():
    from lightning_modules.optim import OptimConfig, lr_factor

    cfg = OptimConfig(lr=1.0, schedule="linear", warmup_steps=2)
    # worked by hand: warm-up (step+1)/2, then 1 - (step - 2)/(10 - 2) down to 0 at step 10
    assert [lr_factor(s, cfg, 10) for s in (0, 1, 2, 6, 9, 10, 12)] == pytest.approx(
        [0.5, 1.0, 1.0, 0.5, 0.125, 0.0, 0.0])
