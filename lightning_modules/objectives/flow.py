"""The flow-matching objectives of SPEC section 3 behind one class.

Convention (FLUX / diffusers): x_sigma = (1 - sigma) * x0 + sigma * noise, sigma = 1 is the start,
the model predicts the velocity v = noise - x0. All three variants are this one formula with a
different start:
    direct_adapt           sigma ~ sampler per sample, noise ~ N(0, I); inference: Euler over N steps
                           on FLUX's resolution-dependent schedule (as FE2E's released sampler)
    consistent_velocity    sigma = 1, noise ~ N(0, I);   inference: one Euler step, z_D = noise - f
    + fixed_start          sigma = 1, noise = 0;         inference: one forward,    z_D = -f
Depth is always predicted at the TARGET-token half; joint estimation supervises the IMAGE-token
half with +z_N (the released FE2E "left depth, right normal" layout).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import fields

import torch

from lightning_modules.backbones.base import GeometryBackbone
from lightning_modules.objectives.config import ObjectiveConfig
from lightning_modules.objectives.dispersive import dispersive_loss, gather_across_ranks
from lightning_modules.objectives.sampling import (
    Generators,
    flux_dynamic_shift,
    inference_sigmas,
    randn_like,
    sample_sigma,
)

logger = logging.getLogger(__name__)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error in float32, averaged over ALL elements (batch, channels, cells).

    mask: optional (B,1,h,w) bool of latent cells to keep; the mean then runs over kept cells x
    channels. No kept cell at all gives 0 (logged as a warning).
    """
    diff2 = (pred.float() - target.float()) ** 2
    if mask is None:
        return diff2.mean()
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != pred.shape[0] or mask.shape[-2:] != pred.shape[-2:]:
        raise ValueError(f"latents['latent_valid']: expected (B,1,h,w) = ({pred.shape[0]},1,"
                         f"{pred.shape[-2]},{pred.shape[-1]}), got {tuple(mask.shape)}")
    weight = mask.to(diff2.dtype).expand_as(diff2)
    count = weight.sum()
    if float(count) == 0:
        logger.warning("masked_mse: no valid latent cell in the batch; loss term is 0")
    return (diff2 * weight).sum() / count.clamp_min(1.0)


class Objective:
    """One configured objective: `loss` for training, `predict` for inference."""

    def __init__(self, cfg: ObjectiveConfig):
        self.cfg = cfg

    @property
    def capture(self) -> tuple[str, ...]:
        """Block names the backbone must return features for (the dispersive block when DL is on)."""
        return (self.cfg.dispersive_block,) if self.cfg.dispersive_weight > 0 else ()

    def check_backbone(self, backbone: GeometryBackbone) -> None:
        """Raise ValueError if this objective cannot run on `backbone` (JE needs image tokens)."""
        if self.cfg.joint_estimation and not getattr(backbone, "has_image_tokens", True):
            raise ValueError("objective.joint_estimation=True needs a backbone with image tokens (sequence "
                             f"concatenation); {type(backbone).__name__} has has_image_tokens=False")

    def _start(self, z: torch.Tensor, generator: Generators) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigma (B,), noise like z). Draw order for direct_adapt: sigma first, then noise."""
        b = z.shape[0]
        cfg = self.cfg
        if cfg.kind == "direct_adapt":
            sigma = sample_sigma(b, cfg.sigma_sampling, z.device, generator, shift=cfg.shift,
                                 logit_mean=cfg.logit_mean, logit_std=cfg.logit_std)
            return sigma, randn_like(z, generator)
        sigma = torch.ones(b, device=z.device, dtype=torch.float32)
        noise = torch.zeros_like(z, dtype=torch.float32) if cfg.fixed_start else randn_like(z, generator)
        return sigma, noise

    def loss(self, backbone: GeometryBackbone, latents: Mapping[str, torch.Tensor],
             generator: Generators = None) -> dict[str, torch.Tensor]:
        """Training losses (scalars, float32) for one batch of latents.

        latents: 'image' z_I and 'depth' z_D, (B,16,h,w); 'normal' z_N when joint_estimation;
        'latent_valid' (B,1,h,w) bool when latent_mask. Returns 'loss' (the total to optimise),
        'loss_depth', plus 'loss_normal' (JE) and 'loss_disp' (DL, unweighted). Total =
        loss_depth [+ loss_normal] [+ dispersive_weight * loss_disp].
        """
        cfg = self.cfg
        self.check_backbone(backbone)
        z_i, z_d = _require(latents, "image"), _require(latents, "depth").float()
        mask = _require(latents, "latent_valid").bool() if cfg.latent_mask else None
        sigma, noise = self._start(z_d, generator)
        s = sigma.view(-1, 1, 1, 1)
        x = (1.0 - s) * z_d + s * noise
        out = backbone(x, z_i, sigma, capture=self.capture)
        losses = {"loss_depth": masked_mse(out.target, noise - z_d, mask)}
        total = losses["loss_depth"]
        if cfg.joint_estimation:
            z_n = _require(latents, "normal")
            if out.image is None:
                raise ValueError("objective.joint_estimation=True but the backbone returned no image-token output")
            losses["loss_normal"] = masked_mse(out.image, z_n, mask)
            total = total + losses["loss_normal"]
        if cfg.dispersive_weight > 0:
            if cfg.dispersive_block not in out.features:
                names = backbone.block_names() if hasattr(backbone, "block_names") else sorted(out.features)
                raise KeyError(f"objective.dispersive_block={cfg.dispersive_block!r}: the backbone returned no "
                               f"features for it; expected one of {names}")
            features = out.features[cfg.dispersive_block]
            if cfg.dispersive_across_ranks:
                features = gather_across_ranks(features)
            losses["loss_disp"] = dispersive_loss(features, cfg.dispersive_tau)
            total = total + cfg.dispersive_weight * losses["loss_disp"]
        return {"loss": total, **losses}

    @torch.no_grad()
    def predict(self, backbone: GeometryBackbone, image_latent: torch.Tensor,
                generator: Generators = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Inference (no gradients): (depth latent (B,16,h,w), normal latent or None), float32.

        Euler x <- x + (sigma_next - sigma) * f from the start of `loss` down to sigma = 0:
        direct_adapt over `num_inference_steps` (noise start) on `inference_schedule`;
        consistent_velocity in one step (z_D = noise - f; with fixed_start z_D = -f). The normal
        latent (JE) is the image-token output +f_image of the last forward pass. `generator`: one
        for the batch, or one per sample (then a sample's noise is independent of the batching).
        """
        cfg = self.cfg
        self.check_backbone(backbone)
        z_i = image_latent
        b = z_i.shape[0]
        if cfg.kind == "direct_adapt":
            x = randn_like(z_i, generator)
            sigmas = self.inference_schedule(z_i.shape[-2] * z_i.shape[-1])
        else:
            x = torch.zeros_like(z_i, dtype=torch.float32) if cfg.fixed_start else randn_like(z_i, generator)
            sigmas = torch.tensor([1.0, 0.0])
        normal = None
        for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
            out = backbone(x, z_i, torch.full((b,), s, device=z_i.device, dtype=torch.float32))
            x = x + (s_next - s) * out.target.float()
            if cfg.joint_estimation:
                if out.image is None:
                    raise ValueError("objective.joint_estimation=True but the backbone returned no image-token output")
                normal = out.image.float()
        return x, normal


    def inference_schedule(self, latent_cells: int) -> torch.Tensor:
        """direct_adapt's (N+1,) Euler sigmas, 1 -> 0, for an image latent of `latent_cells` = h*w
        cells (L = h*w/4 target tokens after 2x2 packing)."""
        cfg = self.cfg
        shift = cfg.inference_shift if cfg.inference_shift is not None else flux_dynamic_shift(latent_cells // 4)
        return inference_sigmas(cfg.num_inference_steps, shift)


def _require(latents: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in latents:
        raise KeyError(f"objective: latents[{key!r}] is required by this objective's config; "
                       f"got keys {sorted(latents)}")
    return latents[key]


def build_objective(cfg: ObjectiveConfig | Mapping) -> Objective:
    """An Objective from an ObjectiveConfig or a plain mapping of its fields (unknown keys raise)."""
    if isinstance(cfg, Mapping):
        known = {f.name for f in fields(ObjectiveConfig)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"objective: unknown config keys {unknown}; expected a subset of {sorted(known)}")
        cfg = ObjectiveConfig(**cfg)
    return Objective(cfg)
