"""MergeBackbone: a frozen FLUX generator + MERGE's converters behind the GeometryBackbone interface.

Geometry path (`forward`, what the objectives call): [noisy target ; image] latents concatenated along
CHANNELS, packed to 2x64-channel tokens, through the converters' input projection, every base block
preceded by its group's converter, and the converters' output norm/projection (merge_converters.py).
Generation path (`generator_velocity`, `sample_images`): the untouched base model alone, as a
text-to-image generator, on the empty prompt; training can never change it, since only converter
tensors require gradients.
"""

from __future__ import annotations

import hashlib

import torch

from ..objectives.sampling import flux_dynamic_shift, inference_sigmas
from . import tokens
from .flux import FluxBackbone
from .merge_converters import MergeConverters, flux_forward


class MergeBackbone(FluxBackbone):
    """FluxBackbone whose DiT is frozen and whose trainable part is `self.converters`.

    Build with `MergeBackbone.from_flux(flux_backbone, converters_per_section, seed)`; the base
    transformer, VAE and text conditioning are taken over as they are (all frozen). `has_image_tokens`
    is False: the image enters as extra input channels, so `forward` returns no image-token output.
    """

    def __init__(self, transformer, vae, text, *, guidance: float | None, dit_dtype: torch.dtype,
                 converters_per_section: int = 5, seed: int = 0):
        super().__init__(transformer, vae, text, is_editor=False, image_frame=0.0, guidance=guidance,
                         conditioning="sequence", dit_dtype=dit_dtype)
        self.conditioning = "channel"
        self.has_image_tokens = False
        transformer.requires_grad_(False)
        self.converters = MergeConverters(transformer, converters_per_section, seed)

    @classmethod
    def from_flux(cls, backbone: FluxBackbone, converters_per_section: int = 5, seed: int = 0) -> MergeBackbone:
        """Converters around the (frozen) transformer of a sequence-conditioned FLUX generator backbone."""
        if backbone.is_editor or backbone.conditioning != "sequence":
            raise ValueError("MERGE needs a FLUX text-to-image generator with backbone.conditioning='sequence' "
                             f"(its own input projection takes the image channels); got is_editor="
                             f"{backbone.is_editor}, conditioning={backbone.conditioning!r}")
        return cls(backbone.transformer, backbone.vae, backbone.text, guidance=backbone.guidance,
                   dit_dtype=backbone.dit_dtype, converters_per_section=converters_per_section, seed=seed)

    def _dit(self, target, image, sigma):
        _, _, h, w = target.shape
        img_ids, _ = self.position_ids(h, w, target.device)
        hidden = torch.cat([tokens.pack(target), tokens.pack(image)], dim=2)
        emb, pooled, txt_ids, guidance = self.conditioning_inputs(sigma)
        out = flux_forward(self.transformer, hidden, emb, pooled, sigma.float(), img_ids, txt_ids, guidance,
                           converters=self.converters)
        return tokens.unpack(out, h, w), None

    # --- the generator, converters off ------------------------------------------------------------
    def generator_velocity(self, x: torch.Tensor, sigma: torch.Tensor, guidance: float | None = None) -> torch.Tensor:
        """The frozen base model's flow-matching velocity (B,16,h,w) float32 at latent x and sigma (B,),
        empty prompt, converters off; guidance: the embedding's value (None = the backbone's)."""
        _, _, h, w = x.shape
        img_ids, _ = self.position_ids(h, w, x.device)
        emb, pooled, txt_ids, vector = self.conditioning_inputs(sigma, guidance)
        with self._autocast(x.device):
            out = flux_forward(self.transformer, tokens.pack(x), emb, pooled, sigma.float(), img_ids, txt_ids,
                               vector)
        return tokens.unpack(out.float(), h, w)

    def base_fingerprint(self) -> str:
        """sha256 (hex) over the names, dtypes, shapes and raw bytes of every base-transformer tensor."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.transformer.state_dict().items()):
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
        return digest.hexdigest()


@torch.no_grad()
def sample_images(backbone: MergeBackbone, num_images: int, size: int, num_steps: int = 20,
                  guidance: float | None = None, seed: int = 0) -> torch.Tensor:
    """Text-to-image samples of the frozen generator (converters off): (num_images, 3, size, size) in [-1, 1].

    Euler from seeded N(0, I) latents over FLUX's dynamic schedule (objectives.sampling), empty prompt,
    decoded by the VAE.
    size: pixels, a multiple of 16 (the VAE's x8 times the 2x2 token patches).
    """
    if size < 16 or size % 16:
        raise ValueError(f"--size {size}: expected a multiple of 16 pixels")
    if num_images < 1 or num_steps < 1:
        raise ValueError(f"expected num_images >= 1 and num_steps >= 1, got {num_images} and {num_steps}")
    device = next(backbone.converters.parameters()).device
    h = w = size // backbone.vae_scale_factor
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn((num_images, backbone.latent_channels, h, w), generator=gen, dtype=torch.float32).to(device)
    sigmas = inference_sigmas(num_steps, flux_dynamic_shift((h // 2) * (w // 2))).tolist()
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        v = backbone.generator_velocity(x, torch.full((num_images,), s, device=device), guidance)
        x = x + (s_next - s) * v
    return backbone.decode(x).clamp(-1.0, 1.0)
