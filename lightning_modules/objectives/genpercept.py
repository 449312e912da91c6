"""GenPercept's objective on a flow DiT (SPEC section 9): one deterministic forward, image-level losses.

The image latent z_I IS the input at the target tokens (no noise, no concatenation; optionally also
given as image tokens to an editor); the DiT runs once at a conditioning sigma (U(0, 1) in training,
`inference_sigma` at test time) and the prediction is z = -f at the target tokens. The losses live in
PIXEL space: z is decoded by the frozen VAE decoder (float32, gradient-checkpointed; its weights never
change, gradients flow through it into the DiT), or a trainable DPT head reads four block outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lightning_modules.backbones.base import GeometryBackbone
from lightning_modules.choices import check_choices
from lightning_modules.dpt_head import DPTHead
from lightning_modules.encoding import encode_normals, latent_valid_mask, quantize_depth
from lightning_modules.objectives.flow import masked_mse as latent_mse
from lightning_modules.objectives.pixel_losses import GradAxes, angular_loss, gradient_l1, masked_mse, ssi_l1

Task = Literal["depth", "normal"]
Head = Literal["vae_decoder", "dpt"]
LossSpace = Literal["pixel", "latent", "both"]
DEPTH_SHIFT = 2.0
"""Added to predicted and target depth encodings ([-1, 1] -> [1, 3]) before the depth losses, as the
released code does "to avoid negative values" (it matters for the median-scaling fallback)."""


@dataclass
class GenPerceptConfig:
    """Settings of method 'genpercept' (SPEC section 9); the defaults are the released depth recipe."""

    task: Task = "depth"
    """'depth' or 'normal': GenPercept trains one model per task."""
    head: Head = "vae_decoder"
    """'vae_decoder' (the frozen VAE decoder turns z = -f into pixels) or 'dpt' (a trainable DPT head
    on four block outputs; no decoder)."""
    loss_space: LossSpace = "pixel"
    """'pixel' (GenPercept), 'latent' (the baseline: MSE between f and -z_target over latent cells
    whose 8x8 pixels are all valid, as the released code masks it) or 'both' (their sum)."""
    grad_axes: GradAxes = "released"
    """Depth gradient loss: 'released' (differences along H only, the released code's behaviour) or
    'both' (H and W)."""
    mse_weight: float = 1.0
    """Weight of the pixel MSE (depth)."""
    ssi_weight: float = 0.5
    """Weight of the scale-and-shift-invariant L1 (depth)."""
    grad_weight: float = 2.0
    """Weight of the gradient L1 (depth)."""
    latent_weight: float = 1.0
    """Weight of the latent MSE when loss_space is 'latent' or 'both'."""
    train_sigma: float | None = None
    """Conditioning sigma in training: None = U(0, 1) per sample (the released t ~ U{0..999}); a number
    fixes it (the released ablations t = 1, 500, 900 are sigma 0.001, 0.5, 0.9)."""
    inference_sigma: float = 0.001
    """Conditioning sigma at inference (the released t = 1 of 1000)."""
    image_tokens: bool = False
    """Also give z_I as image tokens after the target tokens (an editor's own input path); False =
    target tokens only, as GenPercept's UNet input."""
    checkpoint_decoder: bool = True
    """Recompute the VAE decoder in the backward pass instead of storing its activations."""
    dpt_blocks: list[str] = field(default_factory=list)
    """head='dpt': the four block names it reads, shallow to deep; empty = four evenly spaced blocks
    (the last of each quarter of `block_names()`)."""
    dpt_features: int = 256
    """head='dpt': fusion width."""
    dpt_neck: list[int] = field(default_factory=lambda: [96, 192, 384, 768])
    """head='dpt': reassemble widths of the four levels."""

    def __post_init__(self) -> None:
        check_choices(self, "genpercept")
        if self.head == "dpt" and self.loss_space != "pixel":
            raise ValueError("genpercept.head='dpt' has no latent output: use genpercept.loss_space='pixel'")
        for key in ("mse_weight", "ssi_weight", "grad_weight", "latent_weight"):
            if getattr(self, key) < 0:
                raise ValueError(f"genpercept.{key}: expected >= 0, got {getattr(self, key)}")
        sigmas = [self.inference_sigma] + ([] if self.train_sigma is None else [self.train_sigma])
        if any(not 0.0 <= s <= 1.0 for s in sigmas):
            raise ValueError(f"genpercept.train_sigma / inference_sigma: expected in [0, 1], got "
                             f"{self.train_sigma} / {self.inference_sigma}")
        if self.dpt_blocks and len(self.dpt_blocks) != 4:
            raise ValueError(f"genpercept.dpt_blocks: expected 4 block names or [], got {self.dpt_blocks}")


class GenPerceptObjective(nn.Module):
    """Forward, losses and inference of GenPercept; owns the DPT head when head='dpt' (built by `setup`)."""

    def __init__(self, cfg: GenPerceptConfig, quantization: str = "direct") -> None:
        super().__init__()
        self.cfg = cfg
        self.quantization = quantization
        self.head: DPTHead | None = None
        self.head_blocks: list[str] = []

    @property
    def out_channels(self) -> int:
        return 1 if self.cfg.task == "depth" else 3

    def setup(self, backbone: GeometryBackbone) -> None:
        """Check the backbone can run GenPercept and build the DPT head (once) for its width."""
        if not getattr(backbone, "has_image_tokens", True):
            raise ValueError("method genpercept feeds the image latent as the target tokens: it needs "
                             "backbone.conditioning='sequence' (channel concatenation widens the input)")
        if self.cfg.head != "dpt" or self.head is not None:
            return
        names = backbone.block_names()
        blocks = list(self.cfg.dpt_blocks) or [names[(k + 1) * len(names) // 4 - 1] for k in range(4)]
        unknown = [b for b in blocks if b not in names]
        if unknown:
            raise ValueError(f"genpercept.dpt_blocks: unknown {unknown}; the backbone has {names}")
        self.head_blocks = blocks
        # The DiT's own output layers never reach the DPT head: freeze them so that no trainable
        # parameter goes without a gradient (DDP would stall). Blocks after the deepest listed block
        # get none either: list the last block (the default does) or use find_unused_parameters.
        for name in ("norm_out", "proj_out"):
            module = getattr(backbone.transformer, name, None)
            if module is not None:
                module.requires_grad_(False)
        width = backbone.transformer.config.num_attention_heads * backbone.transformer.config.attention_head_dim
        self.head = DPTHead(width, self.out_channels, self.cfg.dpt_features, self.cfg.dpt_neck)

    # ------------------------------------------------------------------------ forward
    def train_sigma(self, batch: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        """(batch,) float32 conditioning sigmas: fixed, or U(0, 1) drawn on the generator's device."""
        if self.cfg.train_sigma is not None:
            return torch.full((batch,), float(self.cfg.train_sigma), device=device)
        dev = generator.device if generator is not None else device
        return torch.rand(batch, generator=generator, device=dev, dtype=torch.float32).to(device)

    def dense(self, backbone: GeometryBackbone, z_image: torch.Tensor, sigma: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward: (pixel-space prediction (B, C, 8h, 8w) float32 in the [-1, 1] target encoding,
        not clamped; the DiT output f at the target tokens (B,16,h,w), None with the DPT head).

        C = 3 from the decoder (depth callers take the channel mean), out_channels from the DPT head.
        """
        image = z_image if self.cfg.image_tokens else None
        if self.cfg.head == "dpt":
            out = backbone(z_image, image, sigma, capture=self.head_blocks)
            hw = (z_image.shape[-2] // 2, z_image.shape[-1] // 2)
            n = hw[0] * hw[1]
            t = out.num_text_tokens
            maps = [out.features[b][:, t:t + n].transpose(1, 2).reshape(z_image.shape[0], -1, *hw)
                    for b in self.head_blocks]
            size = (z_image.shape[-2] * backbone.vae_scale_factor, z_image.shape[-1] * backbone.vae_scale_factor)
            return self.head(maps, size), None
        f = backbone(z_image, image, sigma).target
        z = -f
        if self.cfg.checkpoint_decoder and torch.is_grad_enabled():
            pixels = checkpoint(backbone.decode, z, use_reentrant=False)
        else:
            pixels = backbone.decode(z)
        return pixels, f

    # ------------------------------------------------------------------------ training
    def targets(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(pixel target, valid mask (B,1,H,W) bool): depth -> the quantized encoding (B,1,H,W) in
        [-1, 1]; normal -> unit normals (B,3,H,W), valid where the depth mask holds and ||n|| > 0.5."""
        valid = batch["valid_mask"].bool()
        if self.cfg.task == "depth":
            return quantize_depth(batch["depth"], valid, self.quantization)[:, :1], valid
        normal = batch["normal"].float()
        return encode_normals(normal), valid & (normal.norm(dim=1, keepdim=True) > 0.5)

    def loss(self, backbone: GeometryBackbone, batch: Mapping[str, torch.Tensor], z_image: torch.Tensor,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Training losses (float32 scalars): 'loss' (the total) and its unweighted terms
        'loss_mse', 'loss_ssi', 'loss_grad' (depth) or 'loss_angular' (normal, radians), plus
        'loss_latent' when loss_space is 'latent' or 'both'."""
        cfg = self.cfg
        target, mask = self.targets(batch)
        sigma = self.train_sigma(z_image.shape[0], z_image.device, generator)
        losses: dict[str, torch.Tensor] = {}
        total = z_image.new_zeros((), dtype=torch.float32)
        if cfg.loss_space == "latent":
            f = backbone(z_image, z_image if cfg.image_tokens else None, sigma).target
        else:
            pixels, f = self.dense(backbone, z_image, sigma)
            if cfg.task == "depth":
                pred = pixels.mean(dim=1, keepdim=True) + DEPTH_SHIFT
                gt = target + DEPTH_SHIFT
                losses["loss_mse"] = masked_mse(pred, gt, mask)
                losses["loss_ssi"] = ssi_l1(pred, gt, mask)
                losses["loss_grad"] = gradient_l1(pred, gt, mask, cfg.grad_axes)
                total = (total + cfg.mse_weight * losses["loss_mse"] + cfg.ssi_weight * losses["loss_ssi"]
                         + cfg.grad_weight * losses["loss_grad"])
            else:
                losses["loss_angular"] = angular_loss(pixels, target, mask)
                total = total + losses["loss_angular"]
        if cfg.loss_space in ("latent", "both"):
            image = target.expand(-1, 3, -1, -1) if cfg.task == "depth" else target
            with torch.no_grad():
                z_target = backbone.encode(image, sample=False)
            cells = latent_valid_mask(mask, backbone.vae_scale_factor)
            losses["loss_latent"] = latent_mse(f, -z_target, cells)
            total = total + cfg.latent_weight * losses["loss_latent"]
        return {"loss": total, **losses}

    # ------------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, backbone: GeometryBackbone, z_image: torch.Tensor) -> torch.Tensor:
        """The pixel-space prediction at sigma = inference_sigma (see `dense`), float32, not clamped."""
        sigma = torch.full((z_image.shape[0],), float(self.cfg.inference_sigma), device=z_image.device)
        return self.dense(backbone, z_image, sigma)[0]
