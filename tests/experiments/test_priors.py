"""Miniature priors: pretraining code (smoke scale), the gate, shipping format, and the presets that load them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from experiments.priors.model import build_prior, dit_velocity
from experiments.priors.pretrain import LatentSet, PriorPlan, held_out_losses, save_prior, train_stage
from lightning_modules.backbones import BackboneConfig, build_backbone
from lightning_modules.backbones.tiny import MINI_FLUX_CONFIG


def _data(n=24, source=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(n, 16, 4, 4, generator=g) * 0.5 + torch.linspace(-1, 1, 16).view(1, 16, 1, 1)
    src = torch.randn(n, 16, 4, 4, generator=g) if source else None
    ids = torch.stack([torch.randint(0, 2, (n,), generator=g), torch.randint(0, 4, (n,), generator=g),
                       torch.randint(0, 6, (n,), generator=g), torch.full((n,), 4), torch.full((n,), 8)], dim=1)
    return LatentSet(target, src, ids)


PLAN = PriorPlan(batch_size=4, lr=3e-3, warmup_steps=3)


def test_pretraining_stage_learns_and_is_bit_reproducible():
    data = _data()
    runs = []
    for _ in range(2):
        transformer, embed = build_prior(3)
        losses = train_stage(transformer, embed, data, PLAN, 12, seed=5, dropout=0.1, identity=0.0)
        runs.append((losses, transformer.state_dict()))
    assert runs[0][0] == runs[1][0]  # same seeds -> identical losses and weights, bit for bit
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    assert np.mean(runs[0][0][-3:]) < 0.9 * np.mean(runs[0][0][:3])


def test_edit_stage_runs_on_pairs():
    transformer, embed = build_prior(0)
    losses = train_stage(transformer, embed, _data(source=True), PLAN, 4, seed=1, dropout=0.0, identity=0.5)
    assert len(losses) == 4 and all(np.isfinite(losses))


def test_gate_compares_with_the_mean_predictor():
    train, held = _data(seed=1), _data(n=8, seed=2)
    transformer, embed = build_prior(0)
    scores = held_out_losses(transformer, embed, held, train, PriorPlan(eval_sigmas=(0.5,)))
    # independent: the mean predictor's loss for the same noise draw (generator seeded plan.seed + 99)
    noise = torch.randn(held.target.shape, generator=torch.Generator().manual_seed(99)).double().numpy()
    x0, mean = held.target.double().numpy(), train.target.double().numpy().mean(0, keepdims=True)
    assert scores["mean_predictor"] == pytest.approx(np.mean((noise - x0 + mean) ** 2), rel=1e-5)
    assert scores["ratio"] == pytest.approx(scores["model"] / scores["mean_predictor"])


def test_shipped_format_loads_into_the_presets_with_the_pretraining_layout(tmp_path):
    transformer, embed = build_prior(7)
    with torch.no_grad():  # make the weights distinctive
        for p in transformer.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_prior(tmp_path, "editor", transformer, embed, {"arm": "editor"})
    meta = json.loads((tmp_path / "mini_prior_editor.json").read_text())
    assert meta["arm"] == "editor" and len(meta["sha256"]) == 64
    bb = build_backbone(BackboneConfig(name="mini-editor", weights=str(tmp_path), finetune="full", dit_dtype="float32"))
    assert bb.is_editor and bb.transformer.config.num_attention_heads == MINI_FLUX_CONFIG["num_attention_heads"]
    for k, v in transformer.state_dict().items():  # float16 on disk, float32 in the backbone
        torch.testing.assert_close(bb.transformer.state_dict()[k], v.half().float(), rtol=0, atol=0)
    # the fine-tuning forward = the pretraining forward under the null condition ("empty prompt")
    g = torch.Generator().manual_seed(0)
    target, image, sigma = torch.randn(2, 16, 4, 6, generator=g), torch.randn(2, 16, 4, 6, generator=g), torch.rand(2, generator=g)
    with torch.no_grad():
        tok, pooled = embed(embed.null_ids(2))
        ref = dit_velocity(bb.transformer, target, image, sigma, tok.half().float(), pooled.half().float())
        out = bb(target, image, sigma).target
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # generator arm: not in that folder -> the error names the file and how to make it
    with pytest.raises(FileNotFoundError, match="mini_prior_generator.safetensors.*make priors"):
        build_backbone(BackboneConfig(name="mini-generator", weights=str(tmp_path), finetune="full"))


def test_random_arm_has_the_same_architecture_and_no_file():
    bb = build_backbone(BackboneConfig(name="mini-random", finetune="full", dit_dtype="float32", seed=4))
    other = build_backbone(BackboneConfig(name="mini-random", finetune="full", dit_dtype="float32", seed=5))
    assert not bb.is_editor and bb.block_names() == ["double.0", "double.1", "single.0", "single.1", "single.2",
                                                     "single.3"]
    w = "transformer_blocks.0.attn.to_q.weight"
    assert not torch.equal(bb.transformer.state_dict()[w], other.transformer.state_dict()[w])
    assert sum(p.numel() for p in bb.transformer.parameters()) == sum(
        p.numel() for p in build_prior(0)[0].parameters())


def test_token_log_depth_by_hand():
    from experiments.probe import token_log_depth

    depth = np.full((1, 16, 32), np.nan)
    depth[0, :, :16] = np.e  # left token: log depth 1 everywhere
    depth[0, :8, 16:] = np.e ** 3  # right token: half valid at log 3
    np.testing.assert_allclose(token_log_depth(depth), [[1.0, 3.0]])
    assert np.isnan(token_log_depth(np.full((1, 16, 16), np.nan))).all()


def test_probe_runs_on_every_block():
    from experiments.probe import probe_backbone, probe_scenes

    rgb, depth = probe_scenes(n=6, hw=(32, 48))
    bb = build_backbone(BackboneConfig(name="mini-random", finetune="full", dit_dtype="float32"))
    r2 = probe_backbone(bb, rgb, depth)
    assert list(r2) == bb.block_names() and all(np.isfinite(v) and v <= 1 for v in r2.values())
