"""Qwen-Image (generator) and Qwen-Image-Edit (editor) on QwenImageTransformer2DModel + AutoencoderKLQwenImage.

Latents: the Qwen VAE is a (causal 3D) video VAE, used here on one frame; normalisation is per channel,
z = (E(x) - latents_mean) / latents_std with the 16-vector pairs of its config (the Qwen-Image pipelines'
convention). Image conditioning follows QwenImageEditPipeline: target tokens then image tokens along
the sequence, `img_shapes = [[(1, h/2, w/2), (1, h/2, w/2)]] * B`, so the rope gives the image tokens
frame index 1 (the generator is fed the same way: Qwen's rope takes shapes, not explicit ids, so the
Step1X "same ids" variant is not expressible without patching diffusers). Text: the cached empty-prompt
Qwen2.5-VL states (T, 3584), no pooled vector, all tokens valid. The timestep is sigma in [0, 1].
Blocks are named "block.i"; their outputs are captured as [text ; target ; image].
"""

from __future__ import annotations

import os

import torch
from torch import nn

from . import tokens
from .common import DiTBackbone, widen_input_projection


class QwenImageBackbone(DiTBackbone):
    """GeometryBackbone on a QwenImageTransformer2DModel (see module docstring)."""

    def __init__(self, transformer: nn.Module, vae: nn.Module, text: nn.Module, *,
                 is_editor: bool, conditioning: str = "sequence", dit_dtype: torch.dtype = torch.bfloat16):
        mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32)
        std = torch.tensor(vae.config.latents_std, dtype=torch.float32)
        super().__init__(transformer, vae, text, mean, 1.0 / std, is_editor=is_editor,
                         conditioning=conditioning, dit_dtype=dit_dtype, video_vae=True)
        if conditioning == "channel":
            transformer.img_in = widen_input_projection(transformer.img_in)

    @classmethod
    def block_classes(cls) -> set[type[nn.Module]]:
        from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformerBlock

        return {QwenImageTransformerBlock}

    def _blocks(self) -> list[tuple[str, nn.Module]]:
        return [(f"block.{i}", b) for i, b in enumerate(self.transformer.transformer_blocks)]

    def _dit(self, target, image, sigma):
        b, _, h, w = target.shape
        shape = (1, h // 2, w // 2)
        if image is None:  # target tokens only (GenPercept)
            hidden, img_shapes = tokens.pack(target), [[shape]] * b
        elif self.has_image_tokens:
            hidden = torch.cat([tokens.pack(target), tokens.pack(image)], dim=1)
            img_shapes = [[shape, shape]] * b
        else:
            hidden = torch.cat([tokens.pack(target), tokens.pack(image)], dim=2)
            img_shapes = [[shape]] * b
        emb, _ = self.text_embeds(sigma)
        out = self.transformer(hidden_states=hidden, encoder_hidden_states=emb, timestep=sigma.float(),
                               img_shapes=img_shapes, return_dict=False)[0]
        n = (h // 2) * (w // 2)
        out_target = tokens.unpack(out[:, :n], h, w)
        out_image = tokens.unpack(out[:, n:], h, w) if self.has_image_tokens and image is not None else None
        return out_target, out_image


def load_qwen_image(folder: str, dtype: torch.dtype):
    """(transformer, vae) from `<folder>/transformer` and `<folder>/vae` (diffusers layout, local only)."""
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel

    parts = {}
    for sub, cls in (("transformer", QwenImageTransformer2DModel), ("vae", AutoencoderKLQwenImage)):
        path = os.path.join(folder, sub)
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"backbone.weights: {path}/config.json not found; expected a diffusers "
                                    f"{cls.__name__} folder")
        parts[sub] = cls.from_pretrained(path, local_files_only=True,
                                         torch_dtype=torch.float32 if sub == "vae" else dtype)
    return parts["transformer"], parts["vae"]
