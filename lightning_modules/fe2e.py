"""FE2EModule: an image EDITOR fine-tuned into a depth + normal estimator (FE2E's recipe)."""

from __future__ import annotations

from lightning_modules.geometry_module import DenseGeometryModule
from lightning_modules.objectives import ObjectiveConfig


def fe2e_objective() -> ObjectiveConfig:
    """FE2E's defaults (SPEC section 3, ablation row 9): consistent velocity with a fixed (zero)
    start, joint depth (target half) + normal (image half) estimation, dispersive loss 0.5 on the
    10th single-stream block."""
    return ObjectiveConfig(kind="consistent_velocity", fixed_start=True, joint_estimation=True,
                           dispersive_weight=0.5, dispersive_block="single.9")


class FE2EModule(DenseGeometryModule):
    """DenseGeometryModule whose backbone must be an editor (Step1X-Edit, FLUX.1-Kontext, Qwen-Image-Edit).

    Defaults to FE2E's objective and log quantization; every ablation row changes them through config.
    """

    expects_editor = True

    def __init__(self, backbone, objective=None, quantization: str = "log", optim=None, image_latent: str = "mode",
                 seed: int = 0) -> None:
        super().__init__(backbone, objective if objective is not None else fe2e_objective(),
                         quantization, optim, image_latent, seed)

    def configure_model(self) -> None:
        super().configure_model()
        if self.backbone.is_editor != self.expects_editor:
            kind = "an editor" if self.expects_editor else "a generator"
            raise ValueError(f"{type(self).__name__} needs {kind} backbone, got "
                             f"'{getattr(self.backbone_cfg, 'name', type(self.backbone).__name__)}' "
                             "(backbone.name); use method: "
                             + ("t2i" if self.expects_editor else "fe2e"))
