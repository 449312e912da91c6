"""FLUX-family adapter on diffusers' FluxTransformer2DModel + AutoencoderKL (16 latent channels).

Covers flux-dev (generator, guidance embedding), flux-kontext (editor, image ids' first coordinate 1,
guidance embedding) and step1x-edit (editor, image ids equal to the target ids, no guidance
embedding), and their tiny presets. Tokens: [target ; image] packed 2x2 patches (64 channels);
text tokens are prepended inside the transformer, so every block's output is [text ; target ; image]
(diffusers' single-stream blocks also return (text, image-stream) separately; we concatenate).
The timestep is sigma in [0, 1] (the transformer multiplies by 1000); guidance likewise.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from . import tokens
from .common import DiTBackbone, widen_input_projection

FLUX_SHIFT = 0.1159
FLUX_SCALE = 0.3611

FLUX_DIT_CONFIG = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                       num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                       axes_dims_rope=(16, 56, 56))
"""FluxTransformer2DModel arguments of FLUX.1-dev / Kontext / Step1X-Edit (add guidance_embeds)."""

FLUX_VAE_CONFIG = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                       up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                       layers_per_block=2, act_fn="silu", latent_channels=16, norm_num_groups=32,
                       sample_size=1024, scaling_factor=FLUX_SCALE, shift_factor=FLUX_SHIFT,
                       use_quant_conv=False, use_post_quant_conv=False)
"""AutoencoderKL arguments of the FLUX autoencoder (used by FLUX.1 and Step1X-Edit)."""


class FluxBackbone(DiTBackbone):
    """GeometryBackbone on a FluxTransformer2DModel.

    Args (beyond DiTBackbone's): image_frame: first position-id coordinate of the image tokens
    (0 = Step1X-Edit / generators fed the editor's way, 1 = FLUX.1-Kontext); guidance: value of the
    guidance embedding, or None for a transformer without one.
    """

    def __init__(self, transformer: nn.Module, vae: nn.Module, text: nn.Module, *, is_editor: bool,
                 image_frame: float = 0.0, guidance: float | None = None, conditioning: str = "sequence",
                 dit_dtype: torch.dtype = torch.bfloat16):
        shift = torch.full((16,), float(vae.config.shift_factor or 0.0))
        scale = torch.full((16,), float(vae.config.scaling_factor))
        super().__init__(transformer, vae, text, shift, scale, is_editor=is_editor,
                         conditioning=conditioning, dit_dtype=dit_dtype)
        has_guidance = bool(transformer.config.guidance_embeds)
        if has_guidance != (guidance is not None):
            raise ValueError(f"guidance={guidance} but the transformer has guidance_embeds={has_guidance}")
        self.image_frame = float(image_frame)
        self.guidance = guidance
        if conditioning == "channel":
            transformer.x_embedder = widen_input_projection(transformer.x_embedder)

    @classmethod
    def block_classes(cls) -> set[type[nn.Module]]:
        from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock, FluxTransformerBlock

        return {FluxTransformerBlock, FluxSingleTransformerBlock}

    def _blocks(self) -> list[tuple[str, nn.Module]]:
        t = self.transformer
        return ([(f"double.{i}", b) for i, b in enumerate(t.transformer_blocks)]
                + [(f"single.{i}", b) for i, b in enumerate(t.single_transformer_blocks)])

    def position_ids(self, h: int, w: int, device: torch.device | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """float32 ids (N, 3) of the target tokens and of the image tokens (None for channel concat)."""
        target_ids = tokens.position_ids(h, w, 0.0, device)
        if not self.has_image_tokens:
            return target_ids, None
        return target_ids, tokens.position_ids(h, w, self.image_frame, device)

    def conditioning_inputs(self, sigma: torch.Tensor, guidance: float | None = None):
        """The transformer's non-image inputs at sigma (B,): text tokens (B, T, D), pooled (B, P) or None,
        txt_ids (T, 3) zeros, and the guidance vector (B,) (`guidance`, else the backbone's value) or None
        for a transformer without a guidance embedding. All float32."""
        emb, pooled = self.text_embeds(sigma)
        txt_ids = torch.zeros(emb.shape[1], 3, device=sigma.device, dtype=torch.float32)
        value = self.guidance if guidance is None else guidance
        vector = None
        if self.guidance is not None:
            vector = torch.full((sigma.shape[0],), float(value), device=sigma.device, dtype=torch.float32)
        return emb, pooled, txt_ids, vector

    def _dit(self, target, image, sigma):
        _, _, h, w = target.shape
        target_ids, image_ids = self.position_ids(h, w, target.device)
        if image is None:  # target tokens only (GenPercept)
            hidden, img_ids = tokens.pack(target), target_ids
        elif self.has_image_tokens:
            hidden = torch.cat([tokens.pack(target), tokens.pack(image)], dim=1)
            img_ids = torch.cat([target_ids, image_ids], dim=0)
        else:
            hidden = torch.cat([tokens.pack(target), tokens.pack(image)], dim=2)
            img_ids = target_ids
        emb, pooled, txt_ids, guidance = self.conditioning_inputs(sigma)
        out = self.transformer(hidden_states=hidden, encoder_hidden_states=emb, pooled_projections=pooled,
                               timestep=sigma.float(), img_ids=img_ids, txt_ids=txt_ids, guidance=guidance,
                               return_dict=False)[0]
        n = (h // 2) * (w // 2)
        out_target = tokens.unpack(out[:, :n], h, w)
        out_image = tokens.unpack(out[:, n:], h, w) if self.has_image_tokens and image is not None else None
        return out_target, out_image


def load_flux_vae(folder: str):
    """AutoencoderKL from `<folder>/vae` (diffusers layout), local files only; checks it is 16-channel."""
    from diffusers import AutoencoderKL

    path = os.path.join(folder, "vae")
    _require(os.path.join(path, "config.json"), "a diffusers AutoencoderKL folder (config.json + weights)")
    vae = AutoencoderKL.from_pretrained(path, local_files_only=True, torch_dtype=torch.float32)
    if vae.config.latent_channels != 16:
        raise ValueError(f"{path}: expected a 16-channel FLUX VAE, got latent_channels={vae.config.latent_channels}")
    return vae


def load_flux_transformer(folder: str, dtype: torch.dtype, guidance_embeds: bool):
    """FluxTransformer2DModel from `<folder>/transformer` (diffusers layout), local files only."""
    from diffusers import FluxTransformer2DModel

    path = os.path.join(folder, "transformer")
    _require(os.path.join(path, "config.json"), "a diffusers FluxTransformer2DModel folder (config.json + weights)")
    model = FluxTransformer2DModel.from_pretrained(path, local_files_only=True, torch_dtype=dtype)
    if bool(model.config.guidance_embeds) != guidance_embeds:
        raise ValueError(f"{path}: expected guidance_embeds={guidance_embeds}, config has "
                         f"{model.config.guidance_embeds} (wrong model for this preset?)")
    return model


def _require(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"backbone.weights: {path} not found; expected {what}")
