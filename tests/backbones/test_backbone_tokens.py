"""Packing, unpacking and position ids against diffusers' FluxKontextPipeline helpers; feature maps against NumPy."""

import numpy as np
import pytest
import torch
from diffusers import FluxKontextPipeline

from lightning_modules.backbones import tokens
from lightning_modules.backbones.tokens import feature_norm_map

P = FluxKontextPipeline


def test_pack_unpack_match_diffusers(latents):
    z, _ = latents
    b, c, h, w = z.shape
    ours = tokens.pack(z)
    ref = P._pack_latents(z, b, c, h, w)
    assert ours.shape == (b, h // 2 * w // 2, 64)
    assert torch.equal(ours, ref)
    back = tokens.unpack(ref, h, w)
    assert torch.equal(back, P._unpack_latents(ref, h * 8, w * 8, 8))
    assert torch.equal(back, z)


def test_pack_token_layout_by_hand():
    z = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    t = tokens.pack(z)
    # token 1 = patch (row 0, col 1); channels ordered (c, dy, dx)
    assert t[0, 1].tolist() == [2, 3, 6, 7, 18, 19, 22, 23]


def test_position_ids_match_diffusers():
    ids = tokens.position_ids(6, 8)
    ref = P._prepare_latent_image_ids(1, 3, 4, "cpu", torch.float32)
    assert ids.dtype == torch.float32 and ids.shape == (12, 3)
    assert torch.equal(ids, ref)
    kontext = ref.clone()
    kontext[..., 0] = 1
    assert torch.equal(tokens.position_ids(6, 8, frame=1), kontext)


def test_position_ids_exact_beyond_bf16_range():
    ids = tokens.position_ids(2, 2 * 600)
    assert ids[-1, 2].item() == 599.0


def _ids_seen_by_transformer(backbone, latents):
    seen = {}

    def pre_hook(module, args, kwargs):
        seen["img_ids"] = kwargs["img_ids"].clone()
        seen["guidance"] = kwargs["guidance"]

    handle = backbone.transformer.register_forward_pre_hook(pre_hook, with_kwargs=True)
    target, image = latents
    backbone(target, image, torch.full((2,), 0.5))
    handle.remove()
    return seen


def test_editor_ids_equal_target_ids_and_kontext_ids_use_frame_one(make_backbone, latents):
    n = 12
    target_ids = P._prepare_latent_image_ids(1, 3, 4, "cpu", torch.float32)
    step1x = _ids_seen_by_transformer(make_backbone("tiny-editor"), latents)
    assert torch.equal(step1x["img_ids"][:n], target_ids)
    assert torch.equal(step1x["img_ids"][n:], target_ids)  # Step1X-Edit: same ids as the target
    assert step1x["guidance"] is None
    kontext = _ids_seen_by_transformer(make_backbone("tiny-kontext"), latents)
    assert torch.equal(kontext["img_ids"][:n], target_ids)
    assert torch.all(kontext["img_ids"][n:, 0] == 1)
    assert torch.equal(kontext["img_ids"][n:, 1:], target_ids[:, 1:])
    assert torch.equal(kontext["guidance"], torch.ones(2))
    gen = _ids_seen_by_transformer(make_backbone("tiny-generator", guidance=3.5), latents)
    assert torch.equal(gen["img_ids"][n:], target_ids)
    assert torch.equal(gen["guidance"], torch.full((2,), 3.5))


def _tokens():
    # B=2, text T=3, grid h2=2 x w2=3 (n=6), C=4; L = 3 + 6 + 6 = 15
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 15, 4)).astype(np.float32)


def test_feature_norm_map_target_and_image_offsets():
    f = _tokens()
    ref_target = np.sqrt((f[:, 3:9] ** 2).sum(-1)).reshape(2, 2, 3)
    ref_image = np.sqrt((f[:, 9:15] ** 2).sum(-1)).reshape(2, 2, 3)
    got = feature_norm_map(torch.from_numpy(f), num_text_tokens=3, token_hw=(2, 3))
    np.testing.assert_allclose(got.numpy(), ref_target, rtol=1e-6)
    got_np = feature_norm_map(f, 3, (2, 3), part="image")
    np.testing.assert_allclose(got_np, ref_image, rtol=1e-6)
    # raster order: token k of the target part sits at row k // 3, col k % 3
    assert got[1, 1, 0] == pytest.approx(float(np.linalg.norm(f[1, 3 + 3])), rel=1e-6)


def test_feature_norm_map_shape_errors():
    f = _tokens()
    with pytest.raises(ValueError, match="L=15"):
        feature_norm_map(f, 2, (2, 3))
    with pytest.raises(ValueError, match="part='image'"):
        feature_norm_map(f[:, :9], 3, (2, 3), part="image")
