"""MergeModule: MERGE (arXiv 2510.23574) as a method of the framework: a FROZEN text-to-image FLUX
generator plus trainable converters (backbones/merge_converters.py), trained with DirectAdapt.

Only the converters and their new input/output projections train; the base transformer's weights are
fingerprinted (sha256) when fitting starts and ends, and a difference raises. Checkpoints hold the
trainable tensors only (DenseGeometryModule.on_save_checkpoint); `export_adapter` also writes them
as `converters.safetensors`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save_file

from lightning_modules.backbones import build_backbone
from lightning_modules.backbones.merge_backbone import MergeBackbone
from lightning_modules.geometry_module import DenseGeometryModule, _as
from lightning_modules.objectives import ObjectiveConfig

log = logging.getLogger(__name__)

MERGE_PRESETS = ("tiny-generator", "flux-dev")
"""Backbone presets MERGE runs on: FLUX-family text-to-image generators (tiny default, FLUX.1-dev)."""


@dataclass
class MergeConfig:
    """MERGE's own settings (the backbone, objective and optimiser come from their sections)."""

    converters_per_section: int = 5
    """K: converters per section (double-stream, single-stream); each serves ceil(N/K) consecutive blocks."""
    verify_frozen_base: bool = True
    """Hash the base transformer's weights when fitting starts and ends, raise if they differ, and
    write both hashes to {run}/merge_frozen_base.json (full-size FLUX: ~24 GB hashed on the CPU)."""

    def __post_init__(self) -> None:
        if int(self.converters_per_section) < 1:
            raise ValueError(f"merge.converters_per_section: expected >= 1, got {self.converters_per_section}")


def merge_objective() -> ObjectiveConfig:
    """MERGE's training objective (SPEC section 10): DirectAdapt, sigma ~ U(0, 1), Gaussian noise, target
    noise - z_D, plain MSE without a mask; Euler over 20 steps at inference; no auxiliary losses."""
    return ObjectiveConfig(kind="direct_adapt", fixed_start=False, joint_estimation=False,
                           sigma_sampling="uniform", num_inference_steps=20, dispersive_weight=0.0,
                           latent_mask=False)


class MergeModule(DenseGeometryModule):
    """DenseGeometryModule on a MergeBackbone.

    Args (beyond DenseGeometryModule's): merge: `MergeConfig`. The backbone config must be a FLUX
    generator preset (MERGE_PRESETS) with `finetune: frozen`; the objective defaults to `merge_objective()`
    and the quantization to direct (MERGE's p2/p98 direct depth).
    """

    def __init__(self, backbone, objective=None, quantization: str = "direct", optim=None, image_latent: str = "mode",
                 seed: int = 0, merge: MergeConfig | dict | None = None) -> None:
        super().__init__(backbone, objective if objective is not None else merge_objective(), quantization,
                         optim, image_latent, seed)
        self.merge_cfg = _as(MergeConfig, merge)
        self.save_hyperparameters({**self.hparams, "merge": dataclasses.asdict(self.merge_cfg)})
        if self.backbone_cfg is not None:
            check_merge_backbone(self.backbone_cfg)
        if self.objective_cfg.joint_estimation:
            raise ValueError("objective.joint_estimation=True: MERGE's backbone has no image tokens (the image "
                             "enters as input channels); set it false")
        self._base_hash: str | None = None

    def configure_model(self) -> None:
        if self.backbone is None:
            base = build_backbone(self.backbone_cfg)
            self.backbone = MergeBackbone.from_flux(base, self.merge_cfg.converters_per_section,
                                                    seed=self.backbone_cfg.init_seed)
            n = sum(p.numel() for p in self.backbone.parameters() if p.requires_grad)
            log.info("MERGE: %d converters (double groups %s, single groups %s), %d trainable parameters",
                     len(self.backbone.converters.double_blocks) + len(self.backbone.converters.single_blocks),
                     self.backbone.converters.double_groups, self.backbone.converters.single_groups, n)
        if not isinstance(self.backbone, MergeBackbone):
            raise TypeError(f"MergeModule needs a MergeBackbone, got {type(self.backbone).__name__}")
        super().configure_model()

    # ------------------------------------------------------------------ frozen-base guarantee
    def on_fit_start(self) -> None:
        if self.merge_cfg.verify_frozen_base:
            self._base_hash = self.backbone.base_fingerprint()

    def on_fit_end(self) -> None:
        if not self.merge_cfg.verify_frozen_base or self._base_hash is None:
            return
        after = self.backbone.base_fingerprint()
        record = {"sha256_before": self._base_hash, "sha256_after": after, "identical": after == self._base_hash,
                  "global_step": int(self.global_step)}
        logger = self.trainer.logger  # its log_dir is the run folder (experiments.runner.build_trainer)
        out_dir = getattr(logger, "log_dir", None)
        if out_dir and self.global_rank == 0:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / "merge_frozen_base.json").write_text(json.dumps(record, indent=2) + "\n")
        if after != self._base_hash:
            raise RuntimeError(f"MERGE: the frozen base transformer changed during training "
                               f"(sha256 {self._base_hash[:12]} -> {after[:12]})")
        log.info("MERGE: base transformer bit-identical after %d steps (sha256 %s)", self.global_step, after[:16])

    def export_adapter(self, path) -> None:
        """The trained converters (and their projections) as `converters.safetensors` beside `path`."""
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.backbone.converters.state_dict().items()}
        save_file(tensors, str(Path(path).with_name("converters.safetensors")),
                  metadata={"converters_per_section": str(self.merge_cfg.converters_per_section)})


def check_merge_backbone(cfg) -> None:
    """Raise ValueError naming the key when a BackboneConfig cannot carry MERGE."""
    if cfg.name not in MERGE_PRESETS:
        raise ValueError(f"backbone.name={cfg.name!r}: MERGE runs on a FLUX text-to-image generator, one of "
                         f"{MERGE_PRESETS}")
    if cfg.finetune != "frozen":
        raise ValueError(f"backbone.finetune={cfg.finetune!r}: MERGE keeps the generator frozen; set 'frozen'")
    if cfg.conditioning != "sequence":
        raise ValueError(f"backbone.conditioning={cfg.conditioning!r}: MERGE widens its OWN input projection; "
                         "leave the base model's at 'sequence'")
