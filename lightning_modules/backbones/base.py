"""The one interface every backbone adapter implements.

A backbone owns everything model-family specific: the VAE (float32), latent packing into tokens,
position ids, guidance, and the (always empty) text conditioning. LightningModules and objectives
see only latents of shape (B, 16, h, w) with h = H/8, w = W/8 of the RGB input, already shifted
and scaled (z = (E(x) - shift) * scale), so they are model agnostic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class BackboneOutput:
    """What one DiT forward pass returns.

    target: (B, 16, h, w) float32, the prediction at the target-token positions (the velocity).
    image: (B, 16, h, w) float32 at the image-token positions (sequence concatenation only; FE2E's
        joint estimation supervises it with the normal latent), or None where the backbone has no
        image tokens (channel concatenation).
    features: block name -> (B, L, C) float32 output hidden states of that block, for every token the
        block outputs, ordered [text ; target ; image] (image absent for channel concatenation).
    num_text_tokens: how many leading tokens of each feature tensor are text tokens.
    """

    target: torch.Tensor
    image: torch.Tensor | None
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    num_text_tokens: int = 0


class GeometryBackbone(nn.Module):
    """Abstract adapter: editor or generator DiT + VAE behind one small interface.

    Attributes:
        is_editor: True for image-editing models (Step1X-Edit, FLUX.1-Kontext, Qwen-Image-Edit).
        latent_channels: VAE latent channels (16 for FLUX/Qwen-Image).
        vae_scale_factor: pixels per latent cell (8).
        has_image_tokens: False for the channel-concatenation generator variant.
    """

    is_editor: bool = False
    latent_channels: int = 16
    vae_scale_factor: int = 8
    has_image_tokens: bool = True

    # --- VAE -------------------------------------------------------------------------------
    def encode(self, rgb: torch.Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """RGB (B,3,H,W) in [-1,1] -> latent (B,16,H/8,W/8) float32, shifted and scaled.

        sample=True draws from the posterior (training, as FE2E); False takes its mode (evaluation).
        """
        raise NotImplementedError

    def posterior(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE's diagonal Gaussian posterior of RGB (B,3,H,W) in [-1,1]: (mean, std), float32, in the
        VAE's own latent layout and units (before shift and scale; Qwen-Image's keep their frame axis).

        `encode(rgb, sample, generator)` equals `latent_from_posterior(*posterior(rgb), sample, generator)`,
        so a frozen VAE's posterior can be computed once and sampled many times (latent_cache.py).
        Backbones without this split raise NotImplementedError (their latents are then never cached).
        """
        raise NotImplementedError

    def latent_from_posterior(self, mean: torch.Tensor, std: torch.Tensor, sample: bool = False,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """The latent (B,16,H/8,W/8) of `encode` from a `posterior`: sample=True draws mean + std * eps
        with eps from ONE randn call of the posterior's shape on `generator` (as diffusers' sampler),
        False takes the mean; then shifted and scaled."""
        raise NotImplementedError

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent (B,16,h,w) -> RGB (B,3,8h,8w) float32, nominally in [-1,1] (not clamped)."""
        raise NotImplementedError

    # --- DiT -------------------------------------------------------------------------------
    def forward(self, target: torch.Tensor, image: torch.Tensor | None, sigma: torch.Tensor,
                capture: Sequence[str] = ()) -> BackboneOutput:
        """One DiT pass on the target latent conditioned on the image latent.

        target, image: (B,16,h,w) latents; image=None runs the target tokens alone (sequence
        conditioning only; GenPercept feeds the image latent AS the target), and the output's `image`
        is then None; sigma: (B,) flow-matching time in [0,1] (1 = noise);
        capture: block names (see `block_names`) whose outputs to return in `features`.
        """
        raise NotImplementedError

    def block_names(self) -> list[str]:
        """Ordered names of the transformer blocks, e.g. ['double.0', ..., 'single.0', ...]."""
        raise NotImplementedError

    @classmethod
    def block_classes(cls) -> set[type[nn.Module]]:
        """Transformer block classes: FSDP auto-wrap and activation-checkpointing policy. A classmethod:
        the strategy is chosen before the model is built, so it must not need weights."""
        raise NotImplementedError

    def lora_target_modules(self) -> list[str]:
        """Fully-qualified names (within the DiT) of every Linear LoRA adapts."""
        raise NotImplementedError
