"""Shared machinery of the DiT adapters: VAE normalisation, dtype policy, block-output capture."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import torch
from torch import nn

from .base import BackboneOutput, GeometryBackbone

logger = logging.getLogger(__name__)


class DiTBackbone(GeometryBackbone):
    """A diffusers transformer + VAE with the empty-prompt conditioning as a module of sigma.

    Subclasses implement `_blocks()` (ordered name -> block) and `_dit(target, image, sigma)`,
    which returns token predictions for the target and (sequence conditioning) the image.

    Args:
        transformer: the diffusers DiT. vae: the diffusers VAE (kept float32, frozen).
        text: sigma (B,) -> (tokens (B, T, D), pooled (B, P) or None), float32 (text.py: FixedText,
            or ConnectorText for Step1X-Edit); has `num_tokens`.
        latent_shift, latent_scale: (16,) per-channel normalisation, z = (E(x) - shift) * scale.
        is_editor: role of the model. conditioning: "sequence" | "channel".
        dit_dtype: autocast dtype of the DiT forward (torch.bfloat16 or torch.float32).
        video_vae: the VAE takes (B, C, T, H, W) (Qwen-Image) instead of (B, C, H, W).
    """

    def __init__(self, transformer: nn.Module, vae: nn.Module, text: nn.Module,
                 latent_shift: torch.Tensor, latent_scale: torch.Tensor, *,
                 is_editor: bool, conditioning: str = "sequence", dit_dtype: torch.dtype = torch.bfloat16,
                 video_vae: bool = False):
        super().__init__()
        self.transformer = transformer
        self.vae = vae
        self.is_editor = is_editor
        self.conditioning = conditioning
        self.has_image_tokens = conditioning == "sequence"
        self.dit_dtype = dit_dtype
        self.video_vae = video_vae
        self.text = text
        self.register_buffer("latent_shift", latent_shift.float().view(1, -1, 1, 1), persistent=False)
        self.register_buffer("latent_scale", latent_scale.float().view(1, -1, 1, 1), persistent=False)

    # --- VAE (always float32, never autocast) ----------------------------------------------------
    def encode(self, rgb: torch.Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        return self.latent_from_posterior(*self.posterior(rgb), sample=sample, generator=generator)

    def posterior(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with _no_autocast(rgb.device):
            x = rgb.float()
            dist = self.vae.encode(x[:, :, None] if self.video_vae else x).latent_dist
            return dist.mean, dist.std

    def latent_from_posterior(self, mean: torch.Tensor, std: torch.Tensor, sample: bool = False,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        from diffusers.utils.torch_utils import randn_tensor

        with _no_autocast(mean.device):
            # diffusers' DiagonalGaussianDistribution.sample: one randn_tensor call, mean + std * eps
            z = mean + std * randn_tensor(mean.shape, generator=generator, device=mean.device,
                                          dtype=mean.dtype) if sample else mean
            if self.video_vae:
                z = z[:, :, 0]
            return (z - self.latent_shift) * self.latent_scale

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        with _no_autocast(latent.device):
            z = latent.float() / self.latent_scale + self.latent_shift
            out = self.vae.decode(z[:, :, None] if self.video_vae else z).sample
            return out[:, :, 0] if self.video_vae else out

    # --- DiT ------------------------------------------------------------------------------------
    def _blocks(self) -> list[tuple[str, nn.Module]]:
        raise NotImplementedError

    def _dit(self, target: torch.Tensor, image: torch.Tensor | None, sigma: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def block_names(self) -> list[str]:
        return [name for name, _ in self._blocks()]

    def lora_target_modules(self) -> list[str]:
        from .lora import block_linear_names

        return block_linear_names(self)

    def text_embeds(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The empty-prompt conditioning at sigma (B,): tokens (B, T, D) and pooled (B, P) or None, float32."""
        return self.text(sigma)

    def forward(self, target: torch.Tensor, image: torch.Tensor | None, sigma: torch.Tensor,
                capture: Sequence[str] = ()) -> BackboneOutput:
        if image is None and not self.has_image_tokens:
            raise ValueError("image=None (target tokens only) needs backbone.conditioning='sequence'; the "
                             "channel-concatenation input projection expects [target, image] channels")
        if ((image is not None and target.shape != image.shape) or target.ndim != 4
                or target.shape[1] != self.latent_channels):
            raise ValueError(f"target and image latents must both be (B, {self.latent_channels}, h, w); got "
                             f"{tuple(target.shape)} and {None if image is None else tuple(image.shape)}")
        blocks = dict(self._blocks())
        unknown = [name for name in capture if name not in blocks]
        if unknown:
            raise KeyError(f"capture: unknown block names {unknown}; expected names like {self.block_names()[:3]}")
        sigma = sigma.reshape(-1).expand(target.shape[0]) if sigma.numel() == 1 else sigma.reshape(-1)
        features: dict[str, torch.Tensor] = {}
        handles = [blocks[name].register_forward_hook(_capture_hook(features, name)) for name in capture]
        try:
            with self._autocast(target.device):
                out_target, out_image = self._dit(target, image, sigma)
        finally:
            for handle in handles:
                handle.remove()
        return BackboneOutput(target=out_target.float(),
                              image=None if out_image is None else out_image.float(),
                              features=features, num_text_tokens=self.text.num_tokens)

    def _autocast(self, device: torch.device):
        if self.dit_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dit_dtype)


def _capture_hook(store: dict, name: str):
    """Forward hook storing a block's (text, image-stream) outputs as one (B, L, C) float32 tensor."""

    def hook(module, args, output):
        text, tokens = output
        store[name] = torch.cat([text, tokens], dim=1).float()

    return hook


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


def widen_input_projection(linear: nn.Linear) -> nn.Linear:
    """Marigold-style channel concatenation: Linear(d, n) -> Linear(2d, n) with W' = [W, W] / 2.

    For equal inputs x = [a, a] the widened layer reproduces the original output exactly.
    """
    wide = nn.Linear(2 * linear.in_features, linear.out_features, bias=linear.bias is not None,
                     device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        wide.weight.copy_(torch.cat([linear.weight, linear.weight], dim=1) / 2)
        if linear.bias is not None:
            wide.bias.copy_(linear.bias)
    return wide
