"""Tiny presets end to end: forward/backward in both dtypes, features, VAE normalisation, loading, errors."""

import json
from pathlib import Path

import pytest
import torch

from lightning_modules.backbones import BackboneConfig, build_backbone, tiny, tokens
from lightning_modules.backbones.config import MINI_NAMES, TINY_NAMES
from lightning_modules.backbones.prompt import random_prompt_embeds, save_prompt_embeds

SMALL_NAMES = [n for n in TINY_NAMES if n not in MINI_NAMES]  # the miniature priors: tests/experiments/test_priors.py


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("name", SMALL_NAMES)
def test_tiny_forward_backward(make_backbone, latents, name, dtype):
    bb = make_backbone(name, dit_dtype=dtype)
    target, image = latents
    names = bb.block_names()
    first, last = names[0], names[-1]
    out = bb(target, image, torch.tensor([1.0, 0.25]), capture=[first, last])
    n_tok, n_txt = 12, 8
    assert out.target.shape == target.shape and out.image.shape == image.shape
    assert out.target.dtype == torch.float32 and out.num_text_tokens == n_txt
    assert set(out.features) == {first, last}
    for f in out.features.values():
        assert f.shape == (2, n_txt + 2 * n_tok, 32) and f.dtype == torch.float32
    loss = out.target.square().mean() + out.image.square().mean() + out.features[last].square().mean()
    loss.backward()
    lora = [p for n, p in bb.named_parameters() if "lora_" in n]
    assert lora and all(p.requires_grad and p.dtype == torch.float32 for p in lora)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lora)
    assert any(p.grad.abs().sum() > 0 for p in lora)  # lora_A grads are zero at init (B = 0); B's are not
    base = [p for n, p in bb.transformer.named_parameters() if "lora_" not in n]
    assert all(not p.requires_grad and p.dtype == getattr(torch, dtype) for p in base)
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in bb.vae.parameters())
    expected_blocks = ["block.0", "block.1", "block.2"] if "qwen" in name else \
        ["double.0", "double.1", "single.0", "single.1", "single.2", "single.3"]
    assert names == expected_blocks
    assert bb.is_editor == ("editor" in name or "kontext" in name)


def test_features_are_text_then_target_then_image(make_backbone, latents):
    bb = make_backbone("tiny-editor")
    target, image = latents
    seen = {}
    blk = bb.transformer.single_transformer_blocks[1]
    handle = blk.register_forward_hook(lambda m, a, o: seen.update(text=o[0], img=o[1]))
    out = bb(target, image, torch.ones(2), capture=["single.1"])
    handle.remove()
    f = out.features["single.1"]
    assert torch.equal(f[:, :8], seen["text"]) and torch.equal(f[:, 8:], seen["img"])
    assert f.shape[1] == 8 + 12 + 12


def test_vae_normalisation_flux_and_qwen(make_backbone):
    rgb = torch.rand(1, 3, 32, 48) * 2 - 1
    bb = make_backbone("tiny-editor")
    meta = json.loads(Path(tiny.TINY_VAE_ASSET + ".json").read_text())  # the pretrained tiny VAE's constants
    shift, scale = meta["shift_factor"], meta["scaling_factor"]
    assert (shift, scale) != (0.1159, 0.3611)
    raw = bb.vae.encode(rgb).latent_dist.mode()
    torch.testing.assert_close(bb.encode(rgb), (raw - shift) * scale)
    z = torch.randn(1, 16, 4, 6)
    torch.testing.assert_close(bb.decode(z), bb.vae.decode(z / scale + shift).sample)
    q = make_backbone("tiny-qwen-editor")
    mean = torch.tensor(q.vae.config.latents_mean).view(1, 16, 1, 1)
    std = torch.tensor(q.vae.config.latents_std).view(1, 16, 1, 1)
    raw = q.vae.encode(rgb[:, :, None]).latent_dist.mode()[:, :, 0]
    torch.testing.assert_close(q.encode(rgb), (raw - mean) / std)
    torch.testing.assert_close(q.decode(z), q.vae.decode((z * std + mean)[:, :, None]).sample[:, :, 0])
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(bb.encode(rgb, sample=True, generator=g), bb.encode(rgb))


def test_channel_concat_widened_projection(make_backbone, latents):
    seq = make_backbone("tiny-generator")
    ch = make_backbone("tiny-generator", conditioning="channel")
    w0 = seq.transformer.x_embedder.weight
    w1 = ch.transformer.x_embedder.weight
    assert w1.shape == (32, 128) and ch.transformer.x_embedder.weight.requires_grad
    torch.testing.assert_close(w1, torch.cat([w0, w0], dim=1) / 2)
    target, _ = latents
    out = ch(target, target, torch.ones(2))
    assert out.image is None and not ch.has_image_tokens
    emb, pooled = seq.text_embeds(torch.ones(2))
    with torch.no_grad():  # equal inputs through [W, W]/2 == the original model on the target alone
        ref = seq.transformer(hidden_states=tokens.pack(target), encoder_hidden_states=emb,
                              pooled_projections=pooled, timestep=torch.ones(2),
                              img_ids=tokens.position_ids(6, 8), txt_ids=torch.zeros(8, 3),
                              guidance=torch.ones(2), return_dict=False)[0]
    torch.testing.assert_close(out.target, tokens.unpack(ref, 6, 8), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="conditioning"):
        make_backbone("tiny-editor", conditioning="channel")


def test_gradient_checkpointing_same_outputs_and_grads(make_backbone, latents):
    target, image = latents
    results = []
    for ckpt in (False, True):
        bb = make_backbone("tiny-generator", gradient_checkpointing=ckpt, finetune="full")
        out = bb(target, image, torch.ones(2), capture=["single.2"])
        (out.target.square().mean() + out.features["single.2"].square().mean()).backward()
        results.append((out.target.detach(), bb.transformer.transformer_blocks[0].attn.to_q.weight.grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_load_flux_folder_and_prompt_file(make_backbone, latents, tmp_path):
    tiny = make_backbone("tiny-generator", finetune="full")
    tiny.transformer.save_pretrained(tmp_path / "transformer")
    tiny.vae.save_pretrained(tmp_path / "vae")
    emb, pooled = random_prompt_embeds(8, 32, 32, seed=0)
    save_prompt_embeds(str(tmp_path / "empty.safetensors"), emb, pooled)
    loaded = build_backbone(BackboneConfig(name="flux-dev", weights=str(tmp_path), finetune="full",
                                           dit_dtype="float32", prompt_embeds=str(tmp_path / "empty.safetensors")))
    target, image = latents
    with torch.no_grad():
        torch.testing.assert_close(loaded(target, image, torch.ones(2)).target, tiny(target, image, torch.ones(2)).target)
    with pytest.raises(ValueError, match="guidance_embeds"):  # a guidance model is not a Step1X-Edit folder
        build_backbone(BackboneConfig(name="step1x-edit", weights=str(tmp_path), dit_dtype="float32",
                                      prompt_embeds=str(tmp_path / "empty.safetensors")))


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="random_init"):
        build_backbone(BackboneConfig(name="flux-dev"))
    with pytest.raises(ValueError, match="backbone.name"):
        build_backbone(BackboneConfig(name="flux-schnell"))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        build_backbone(BackboneConfig(name="flux-dev", weights=str(tmp_path / "nope")))
    (tmp_path / "w").mkdir()
    with pytest.raises(FileNotFoundError, match="transformer"):
        build_backbone(BackboneConfig(name="flux-kontext", weights=str(tmp_path / "w")))
    with pytest.raises(FileNotFoundError, match="step1x-edit"):
        build_backbone(BackboneConfig(name="step1x-edit", weights=str(tmp_path / "w")))


@pytest.mark.parametrize("name", ["tiny-editor", "tiny-generator", "tiny-qwen-editor", "mini-random"])
def test_block_classes_known_from_the_preset_without_building(make_backbone, name):
    """FSDP's wrap policy is read before the backbone is built: the class-level answer must be the
    classes of the blocks a built backbone really has (checked by the diffusers class names)."""
    from lightning_modules.backbones import backbone_class

    from_class = backbone_class(name).block_classes()
    built = make_backbone(name, finetune="full")
    assert from_class == {type(block) for _, block in built._blocks()} == built.block_classes()
    expected = {"QwenImageTransformerBlock"} if "qwen" in name else {"FluxTransformerBlock", "FluxSingleTransformerBlock"}
    assert {cls.__name__ for cls in from_class} == expected
