"""GenPerceptModule: GenPercept's deterministic one-step paradigm on a DiT (SPEC section 9).

Same data, evaluation, checkpoints and run folders as FE2E (DenseGeometryModule); what differs is the
forward (the image latent itself at the target tokens, one pass, z = -f), the supervision (pixel-space
losses through the frozen VAE decoder, or a DPT head) and that it predicts ONE task per model
(`genpercept.task`). The flow-matching `objective` section of the config is not used.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
import torch.nn.functional as F

from lightning_modules.backbones.tokens import feature_norm_map
from lightning_modules.encoding import decode_normals, dequantize_depth
from lightning_modules.geometry_module import DenseGeometryModule, _as
from lightning_modules.latent_cache import LatentCache
from lightning_modules.objectives.genpercept import GenPerceptConfig, GenPerceptObjective

log = logging.getLogger(__name__)


class GenPerceptModule(DenseGeometryModule):
    """DenseGeometryModule trained the GenPercept way; any backbone with sequence conditioning
    (GenPercept's own prior is a text-to-image model; an editor may also get z_I as image tokens).

    Args: as DenseGeometryModule (`objective` is accepted for a uniform constructor and ignored), plus
    genpercept: `GenPerceptConfig` (or its dict form). Default quantization: direct (GenPercept's).
    """

    def __init__(self, backbone, objective=None, quantization: str = "direct", optim=None, image_latent: str = "mode",
                 seed: int = 0, genpercept: GenPerceptConfig | dict | None = None) -> None:
        super().__init__(backbone, None, quantization, optim, image_latent, seed)
        self.genpercept_cfg = _as(GenPerceptConfig, genpercept)
        self.objective = GenPerceptObjective(self.genpercept_cfg, quantization)  # an nn.Module: owns the DPT head
        self.hparams["genpercept"] = dataclasses.asdict(self.genpercept_cfg)
        self.hparams.pop("objective", None)

    def configure_model(self) -> None:
        """Build the backbone, check it, build the DPT head for its width (head='dpt')."""
        if self.backbone is None:
            from lightning_modules.backbones import build_backbone

            self.backbone = build_backbone(self.backbone_cfg)
        self.objective.setup(self.backbone)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        z_image = self.backbone.encode(batch["rgb"], sample=False)  # the posterior mean, as GenPercept
        losses = self.objective.loss(self.backbone, batch, z_image, generator=self.step_generator("train"))
        bs = batch["rgb"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=bs, prog_bar=name == "loss", sync_dist=False)
        return losses["loss"]

    @torch.no_grad()
    def predict_geometry(self, rgb: torch.Tensor, out_size: tuple[int, int] | None = None,
                         generator: torch.Generator | None = None,
                         cache: LatentCache | None = None) -> dict[str, torch.Tensor]:
        """One deterministic forward (`generator` is unused; the image latent is the posterior's mode,
        memoised in `cache` when given). Returns "depth" (B,1,H',W') in [0, 1]
        (the clamped channel mean mapped by (x + 1) / 2, affine-invariant in the quantization's
        space) for task depth, or "normal" (B,3,H',W') unit normals for task normal; (H',W') =
        out_size or the input size."""
        size = tuple(out_size or rgb.shape[-2:])
        dense = self.objective.predict(self.backbone, self.encode_image(rgb, sample=False, cache=cache))
        if self.genpercept_cfg.task == "normal":
            return {"normal": decode_normals(dense, size=size)}
        depth = dequantize_depth(dense)
        return {"depth": F.interpolate(depth, size=size, mode="bilinear", align_corners=False)}

    @torch.no_grad()
    def probe_features(self, rgb: torch.Tensor, blocks: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Block feature maps of the inference forward pass (z_I at the target tokens, inference sigma)
        and a (B,1,H,W) map in [0, 1]: the predicted depth, or for task normal (n_z + 1) / 2 of the
        predicted normals (the component facing the camera)."""
        cfg = self.genpercept_cfg
        z_image = self.backbone.encode(rgb, sample=False)
        sigma = torch.full((z_image.shape[0],), float(cfg.inference_sigma), device=z_image.device)
        out = self.backbone(z_image, z_image if cfg.image_tokens else None, sigma, capture=list(blocks))
        token_hw = (z_image.shape[-2] // 2, z_image.shape[-1] // 2)
        maps = {name: feature_norm_map(out.features[name][:1], out.num_text_tokens, token_hw, part="target")[0]
                for name in blocks}
        pred = self.predict_geometry(rgb)
        shown = pred["depth"] if "depth" in pred else (pred["normal"][:, 2:3] + 1) / 2
        return maps, shown
