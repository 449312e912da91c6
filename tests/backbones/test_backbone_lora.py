"""LoRA targets (full-size FLUX on meta), frozen base, adapter files, kohya-format LoRA loading."""

import copy

import pytest
import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel
from safetensors.torch import save_file
from torch import nn

from lightning_modules.backbones.flux import FLUX_DIT_CONFIG, FluxBackbone
from lightning_modules.backbones.lora import (
    adapted_module_names,
    apply_lora,
    convert_kohya_lora,
    load_adapter,
    load_kohya_lora,
    save_adapter,
)
from lightning_modules.backbones.text import FixedText
from lightning_modules.backbones.tiny import TINY_VAE_CONFIG

DOUBLE = ["norm1.linear", "norm1_context.linear", "attn.to_q", "attn.to_k", "attn.to_v", "attn.add_q_proj",
          "attn.add_k_proj", "attn.add_v_proj", "attn.to_out.0", "attn.to_add_out", "ff.net.0.proj", "ff.net.2",
          "ff_context.net.0.proj", "ff_context.net.2"]
SINGLE = ["norm.linear", "attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out"]


def test_full_size_flux_lora_targets_exactly_the_block_linears():
    with torch.device("meta"):
        transformer = FluxTransformer2DModel(**FLUX_DIT_CONFIG, guidance_embeds=True)
    expected = {f"transformer_blocks.{i}.{n}" for i in range(19) for n in DOUBLE}
    expected |= {f"single_transformer_blocks.{i}.{n}" for i in range(38) for n in SINGLE}
    # the hand list is complete: every other Linear lies outside the blocks
    others = {n for n, m in transformer.named_modules() if isinstance(m, nn.Linear)} - expected
    assert all(not n.startswith(("transformer_blocks", "single_transformer_blocks")) for n in others)
    assert {"x_embedder", "context_embedder", "proj_out", "norm_out.linear"} <= others
    backbone = FluxBackbone(transformer, AutoencoderKL(**TINY_VAE_CONFIG), FixedText(torch.zeros(4, 4096), torch.zeros(768)),
                            is_editor=False, guidance=1.0)
    with torch.device("meta"):
        targets = apply_lora(backbone, rank=64, alpha=32)
    assert len(expected) == 19 * 14 + 38 * 6 == 494
    assert set(targets) == expected
    assert adapted_module_names(transformer) == expected
    assert set(backbone.lora_target_modules()) == expected  # still right after injection
    trainable = {n: p for n, p in transformer.named_parameters() if p.requires_grad}
    assert trainable and all("lora_A.default" in n or "lora_B.default" in n for n in trainable)
    assert all(p.dtype == torch.float32 for p in trainable.values())
    assert transformer.peft_config["default"].lora_alpha == 32 and transformer.peft_config["default"].r == 64
    dims = {n: m for n, m in transformer.named_modules() if n in expected}
    n_lora = sum(64 * (m.in_features + m.out_features) for m in dims.values())
    assert sum(p.numel() for p in trainable.values()) == n_lora


def _randomize_lora(backbone, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in backbone.transformer.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def _out(backbone, latents):
    target, image = latents
    with torch.no_grad():
        return backbone(target, image, torch.tensor([0.2, 0.9])).target


def test_adapter_roundtrip_and_diffusers_can_read_it(make_backbone, latents, tmp_path):
    trained = make_backbone("tiny-editor")
    plain = _out(trained, latents)
    assert all(not p.requires_grad for n, p in trained.transformer.named_parameters() if "lora_" not in n)
    _randomize_lora(trained)
    want = _out(trained, latents)
    assert not torch.allclose(want, plain)
    path = tmp_path / "adapter.safetensors"
    save_adapter(trained, str(path))
    fresh = make_backbone("tiny-editor")
    load_adapter(fresh, str(path))
    torch.testing.assert_close(_out(fresh, latents), want, rtol=0, atol=0)
    # diffusers' own reader (metadata carries r and alpha) gives the same transformer
    other = make_backbone("tiny-editor", finetune="full")
    other.transformer.load_lora_adapter(str(tmp_path), weight_name="adapter.safetensors", prefix="transformer")
    torch.testing.assert_close(_out(other, latents), want, rtol=1e-5, atol=1e-6)


def test_load_adapter_rejects_wrong_rank(make_backbone, tmp_path):
    path = tmp_path / "a.safetensors"
    save_adapter(make_backbone("tiny-editor"), str(path))
    with pytest.raises(ValueError, match="a.safetensors"):
        load_adapter(make_backbone("tiny-editor", lora_rank=8), str(path))


def _kohya(h, rank=4, alpha=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    spec = {"lora_unet_double_blocks_0_img_attn_qkv": 3 * h, "lora_unet_double_blocks_1_txt_mod_lin": 6 * h,
            "lora_unet_single_blocks_1_linear1": 7 * h, "lora_unet_single_blocks_0_linear2": h}
    ins = {"lora_unet_single_blocks_0_linear2": 5 * h}
    sd = {}
    for k, out in spec.items():
        sd[k + ".lora_down.weight"] = torch.randn(rank, ins.get(k, h), generator=g) * 0.3
        sd[k + ".lora_up.weight"] = torch.randn(out, rank, generator=g) * 0.3
        sd[k + ".alpha"] = torch.tensor(alpha)
    return sd


def test_kohya_lora_changes_output_as_hand_applied_delta(make_backbone, latents, tmp_path):
    backbone = make_backbone("tiny-editor", finetune="full")
    reference = copy.deepcopy(backbone)
    h, scale = 32, 2.0 / 4
    sd = _kohya(h)
    save_file(sd, tmp_path / "fe2e.safetensors")
    n = load_kohya_lora(backbone, str(tmp_path / "fe2e.safetensors"))
    assert n == 2 * (3 + 1 + 4 + 1)
    t = reference.transformer
    delta = {k: scale * sd[k + ".lora_up.weight"] @ sd[k + ".lora_down.weight"]
             for k in {k.split(".")[0] for k in sd}}
    with torch.no_grad():
        d = delta["lora_unet_double_blocks_0_img_attn_qkv"]
        for j, name in enumerate(("to_q", "to_k", "to_v")):
            getattr(t.transformer_blocks[0].attn, name).weight += d[j * h:(j + 1) * h]
        t.transformer_blocks[1].norm1_context.linear.weight += delta["lora_unet_double_blocks_1_txt_mod_lin"]
        d = delta["lora_unet_single_blocks_1_linear1"]
        blk = t.single_transformer_blocks[1]
        for j, mod in enumerate((blk.attn.to_q, blk.attn.to_k, blk.attn.to_v)):
            mod.weight += d[j * h:(j + 1) * h]
        blk.proj_mlp.weight += d[3 * h:]
        t.single_transformer_blocks[0].proj_out.weight += delta["lora_unet_single_blocks_0_linear2"]
    got, want = _out(backbone, latents), _out(reference, latents)
    assert not torch.allclose(want, _out(make_backbone("tiny-editor", finetune="full"), latents))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_kohya_conversion_full_width_single_block_through_diffusers():
    h, r = 3072, 4
    g = torch.Generator().manual_seed(0)
    down, up = torch.randn(r, h, generator=g), torch.randn(7 * h, r, generator=g)
    out = convert_kohya_lora({"lora_unet_single_blocks_5_linear1.lora_down.weight": down,
                              "lora_unet_single_blocks_5_linear1.lora_up.weight": up,
                              "lora_unet_single_blocks_5_linear1.alpha": torch.tensor(2.0)}, hidden=h)
    # delta W = (alpha / r) up @ down, compared on 16 random probe columns: B (A V) = 0.5 up (down V)
    # row block by row block (the same matrices with probability 1, without forming 21504x3072 products)
    probes = torch.randn(h, 16, generator=g, dtype=torch.float64)
    full = 0.5 * up.double() @ (down.double() @ probes)
    rows = {"attn.to_q": (0, h), "attn.to_k": (h, 2 * h), "attn.to_v": (2 * h, 3 * h), "proj_mlp": (3 * h, 7 * h)}
    assert len(out) == 8
    for name, (a, b) in rows.items():
        p = f"transformer.single_transformer_blocks.5.{name}."
        lora_a, lora_b = out[p + "lora_A.weight"], out[p + "lora_B.weight"]
        assert lora_a.shape == (r, h) and lora_b.shape == (b - a, r)
        torch.testing.assert_close(lora_b.double() @ (lora_a.double() @ probes), full[a:b], rtol=1e-5, atol=1e-5)
