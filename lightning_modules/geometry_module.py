"""DenseGeometryModule: training, validation, test and prediction shared by every method.

The module is method-agnostic: the backbone (editor or generator, see `backbones/`) and the
objective (`objectives.py`) are what differ between FE2E, its ablation rows and the T2I baseline.
Batches follow the sample contract of `datamodules` (metric depth, project normal convention).
Evaluation is not the module's business: `validation_step` / `test_step` return predictions at the
ground truth's size, and a scorer callback (experiments.scoring.BenchmarkScorer) scores them.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F

from lightning_modules.backbones import build_backbone
from lightning_modules.backbones.base import GeometryBackbone
from lightning_modules.backbones.config import BackboneConfig
from lightning_modules.backbones.lora import save_adapter
from lightning_modules.backbones.tokens import feature_norm_map
from lightning_modules.choices import check_choice
from lightning_modules.encoding import (
    Quantization,
    decode_normals,
    dequantize_depth,
    encode_normals,
    latent_valid_mask,
    quantize_depth,
)
from lightning_modules.latent_cache import LatentCache
from lightning_modules.objectives import ObjectiveConfig, build_objective
from lightning_modules.optim import OptimConfig, build_optimizer

log = logging.getLogger(__name__)

ImageLatent = Literal["mode", "sample"]
"""The image latent inference conditions on: the VAE posterior's mode, or a seeded sample of it."""


def _as(cls, value):
    """A config dataclass from itself or from its dict form (as restored from a checkpoint)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(value) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}; valid: {sorted(names)}")
    return cls(**value)


class DenseGeometryModule(L.LightningModule):
    """Fine-tunes a DiT backbone into a depth (and normal) estimator.

    Args:
        backbone: the backbone's config (built in `configure_model`, so FSDP can shard it as it is
            created), or an already-built `GeometryBackbone` (tests, notebooks).
        objective: training objective and inference rule (`ObjectiveConfig`).
        quantization: depth target encoding, "direct" | "inverse" | "log" (SPEC section 4).
        optim: optimizer settings (`OptimConfig`).
        image_latent: the image latent inference conditions on: "mode" of the VAE posterior
            (deterministic) or a "sample" from it drawn with the per-sample generators.
        seed: base of the per-step noise generators, so a resumed run draws the same noise.
    """

    def __init__(
        self,
        backbone: BackboneConfig | dict | GeometryBackbone,
        objective: ObjectiveConfig | dict | None = None,
        quantization: str = "log",
        optim: OptimConfig | dict | None = None,
        image_latent: ImageLatent = "mode",
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_choice("quantization", quantization, Quantization)  # a bare string: built without the config layer too
        self.backbone_cfg = None if isinstance(backbone, GeometryBackbone) else _as(BackboneConfig, backbone)
        self.backbone: GeometryBackbone | None = backbone if isinstance(backbone, GeometryBackbone) else None
        self.objective_cfg = _as(ObjectiveConfig, objective)
        self.optim_cfg = _as(OptimConfig, optim)
        check_choice("image_latent", image_latent, ImageLatent)
        self.image_latent = image_latent
        self.quantization = quantization
        self.seed = seed
        self.objective = build_objective(self.objective_cfg)
        self.save_hyperparameters(
            {
                "backbone": dataclasses.asdict(self.backbone_cfg) if self.backbone_cfg else None,
                "objective": dataclasses.asdict(self.objective_cfg),
                "quantization": quantization,
                "optim": dataclasses.asdict(self.optim_cfg),
                "image_latent": image_latent,
                "seed": seed,
            }
        )
        # Frozen base weights are not checkpointed (they come from WEIGHTS or a seeded init).
        self.strict_loading = False

    # ------------------------------------------------------------------------------ set-up
    def configure_model(self) -> None:
        """Build the backbone here, not in __init__, so FSDP can shard it as it is created."""
        if self.backbone is None:
            self.backbone = build_backbone(self.backbone_cfg)
        self.objective.check_backbone(self.backbone)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise RuntimeError("no trainable parameters: check backbone.finetune (lora | full)")
        return build_optimizer(params, self.optim_cfg, self.trainer.estimated_stepping_batches)

    def step_generator(self, stage: str) -> torch.Generator:
        """Noise generator seeded by (seed, stage, global step, rank): resuming redraws the same noise."""
        stage_id = {"train": 0, "val": 1, "test": 2, "predict": 3}[stage]
        seed = (self.seed * 1_000_003 + stage_id * 7919 + self.global_step * 131 + self.global_rank) % (2**63)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed)
        return gen

    def sample_generators(self, stage: str, names: Sequence[str]) -> list[torch.Generator]:
        """One noise generator per sample, seeded by (seed, stage, CRC-32 of the sample's name).

        Evaluation draws (the VAE posterior sample, DirectAdapt's start noise) then depend on the
        sample alone, not on its batch, rank or the process count, and repeat at every validation.
        """
        stage_id = {"train": 0, "val": 1, "test": 2, "predict": 3}[stage]
        gens = []
        for name in names:
            gen = torch.Generator(device=self.device)
            gen.manual_seed((self.seed * 1_000_003 + stage_id * 7919 + zlib.crc32(str(name).encode()) * 131) % (2**63))
            gens.append(gen)
        return gens

    def eval_generators(self, stage: str, batch: dict[str, Any]) -> list[torch.Generator] | torch.Generator:
        """Per-sample generators from batch['name'] when the batch names its samples, else the step's."""
        names = batch.get("name")
        return self.sample_generators(stage, names) if names else self.step_generator(stage)

    # ------------------------------------------------------------------------------ targets
    latent_cache: LatentCache | None = None
    """Memoised VAE posteriors of the training inputs (lightning_modules/latent_cache.py: exact draws),
    set by experiments.runner.build_module from data.latent_cache_mb; None = every batch is encoded."""
    val_latent_cache: LatentCache | None = None
    """The same for the validation images (the same benchmark images at every validation), kept apart
    so that validation never evicts the training entries; None = every validation encodes them."""

    @torch.no_grad()
    def encode_batch(self, batch: dict[str, Any], generator: torch.Generator | None,
                     sample: bool = True) -> dict[str, torch.Tensor]:
        """VAE latents of a training batch: image z_I, depth z_D (quantized), normal z_N when needed.

        Returns a dict with "image", "depth", optionally "normal" (B,16,h,w) and "latent_valid"
        (B,1,h,w) bool, True where every pixel under the latent cell is valid. The draws are
        `backbone.encode`'s, in this order, whether or not `latent_cache` serves the posteriors.
        """
        bb, cache = self.backbone, self.latent_cache

        def encode(make, *sources: torch.Tensor, tag: str = "") -> torch.Tensor:
            """make(*sources): the encoder input, a pure function of the sources (the cache's key)."""
            if cache is None:
                return bb.encode(make(*sources), sample=sample, generator=generator)
            return cache.encode(bb, lambda: make(*sources), sample=sample, generator=generator,
                                sources=sources, tag=tag)

        valid = batch["valid_mask"].bool()
        latents = {"image": encode(lambda rgb: rgb, batch["rgb"], tag="rgb")}
        latents["depth"] = encode(lambda depth, mask: quantize_depth(depth, mask, self.quantization),
                                  batch["depth"], valid, tag=f"depth:{self.quantization}")
        if self.objective_cfg.joint_estimation:
            latents["normal"] = encode(encode_normals, batch["normal"], tag="normal")
        latents["latent_valid"] = latent_valid_mask(valid, bb.vae_scale_factor)
        return latents

    # ------------------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        gen = self.step_generator("train")
        latents = self.encode_batch(batch, gen, sample=True)
        losses = self.objective.loss(self.backbone, latents, generator=gen)
        bs = batch["rgb"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=bs, prog_bar=name == "loss", sync_dist=False)
        return losses["loss"]

    # ------------------------------------------------------------------------------ inference
    def encode_image(self, rgb: torch.Tensor, sample: bool = False,
                     generator: list[torch.Generator] | torch.Generator | None = None,
                     cache: LatentCache | None = None) -> torch.Tensor:
        """The image's VAE latent (B,16,h,w): `backbone.encode` (the posterior's mode, or a draw from it
        with `generator`), its posterior memoised in `cache` when given (the same latents)."""
        draws = list(generator) if isinstance(generator, Sequence) else generator
        if cache is None:
            return self.backbone.encode(rgb, sample=sample, generator=draws)
        return cache.encode(self.backbone, rgb, sample=sample, generator=draws, tag="eval-rgb")

    @torch.no_grad()
    def predict_geometry(self, rgb: torch.Tensor, out_size: tuple[int, int] | None = None,
                         generator: list[torch.Generator] | torch.Generator | None = None,
                         cache: LatentCache | None = None) -> dict[str, torch.Tensor]:
        """One zero-shot prediction.

        rgb: (B,3,H,W) in [-1,1], H and W multiples of 16 (resize to a bucket first).
        generator: one for the batch or one per sample; drives the image posterior sample
        (`evaluation.image_latent: sample`) and, for noise-start objectives, the start noise.
        cache: where the image's VAE posterior may be memoised (same latents, see LatentCache).
        Returns "depth": (B,1,H',W') affine-invariant value in [0,1] in the quantization's encoded
        space (log depth for "log"; larger = farther for direct/log, nearer for inverse), and, when
        the objective predicts normals, "normal": (B,3,H',W') unit normals (x left, y up, z toward
        camera); (H',W') = out_size or the input size, resized bilinearly.
        """
        size = out_size or tuple(rgb.shape[-2:])
        sample = self.image_latent == "sample"
        z_image = self.encode_image(rgb, sample=sample, generator=generator, cache=cache)
        z_depth, z_normal = self.objective.predict(self.backbone, z_image, generator=generator)
        depth = dequantize_depth(self.backbone.decode(z_depth))
        out = {"depth": F.interpolate(depth, size=size, mode="bilinear", align_corners=False)}
        if z_normal is not None:
            out["normal"] = decode_normals(self.backbone.decode(z_normal), size=size)
        return out

    def predict_native(self, rgb: torch.Tensor, input_size: tuple[int, int],
                       generator: list[torch.Generator] | torch.Generator | None = None,
                       cache: LatentCache | None = None) -> dict[str, torch.Tensor]:
        """`predict_geometry` of an image at its own size: resized (bilinear) to the model's
        `input_size` (H, W), multiples of 16, predicted, and resized back to (H, W) of `rgb`."""
        size = (int(input_size[0]), int(input_size[1]))
        model_in = rgb if tuple(rgb.shape[-2:]) == size else F.interpolate(
            rgb, size=size, mode="bilinear", align_corners=False).clamp(-1, 1)
        return self.predict_geometry(model_in, out_size=tuple(rgb.shape[-2:]), generator=generator, cache=cache)

    @torch.no_grad()
    def probe_features(self, rgb: torch.Tensor, blocks: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Block feature maps of the first inference forward pass, and the predicted depth.

        Returns ({block name: (h/2, w/2) per-token L2 norm over channels of the block's output at the
        target tokens}, depth (B,1,H,W) as `predict_geometry`). The first pass sees a zero target
        with fixed start, else seeded noise, at sigma = 1.
        """
        z_image = self.backbone.encode(rgb, sample=False)
        if self.objective_cfg.fixed_start:
            start = torch.zeros_like(z_image)
        else:
            start = torch.randn(z_image.shape, generator=self.step_generator("predict"),
                                device=z_image.device, dtype=z_image.dtype)
        sigma = torch.ones(z_image.shape[0], device=z_image.device)
        out = self.backbone(start, z_image, sigma, capture=list(blocks))
        token_hw = (z_image.shape[-2] // 2, z_image.shape[-1] // 2)
        maps = {name: feature_norm_map(out.features[name][:1], out.num_text_tokens, token_hw, part="target")[0]
                for name in blocks}
        return maps, self.predict_geometry(rgb, generator=self.step_generator("predict"))["depth"]

    def _eval_step(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        """Predictions for a benchmark batch at its ground truth's size; the model's input size is
        the batch's `input_size` (its benchmark's bucket, set by the data)."""
        input_size = batch["input_size"][0].tolist()
        cache = self.val_latent_cache if stage == "val" else None  # test and predict see each image once
        return self.predict_native(batch["rgb"], input_size, generator=self.eval_generators(stage, batch), cache=cache)

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._eval_step(batch, "test")

    # ------------------------------------------------------------------------------ checkpoints
    def export_adapter(self, path) -> None:
        """Trained LoRA adapter as safetensors in the diffusers/peft layout (no-op for full fine-tuning)."""
        if self.backbone_cfg is not None and self.backbone_cfg.finetune == "lora":
            save_adapter(self.backbone, str(path))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only trainable tensors (LoRA or full fine-tune) and non-parameter buffers we own."""
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.backbone is None:
            self.configure_model()
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        missing = trainable - set(checkpoint["state_dict"])
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[:3]}: "
                           "was it saved from a different backbone or LoRA configuration?")
