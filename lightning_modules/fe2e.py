"""FE2EModule: a flow-matching DiT fine-tuned into a depth + normal estimator with FE2E's recipe.

The same module trains FE2E proper (an image EDITOR: Step1X-Edit, FLUX.1-Kontext, Qwen-Image-Edit)
and the T2I baseline (a text-to-image GENERATOR: FLUX.1-dev, Qwen-Image, adapted to image input):
objective, quantization, data and schedule are shared, so the comparison isolates the pretrained
prior. Which prior a run has is its backbone preset's `is_editor` (backbones.PRESETS); the config's
`method: fe2e | t2i` names it for people and is checked against the preset by the config layer
(experiments/config.py). A generator takes the image either as extra tokens after the target tokens
(sequence concatenation, how FE2E fed FLUX: the "Step1X-Edit protocol") or as extra input channels
(channel concatenation, Marigold-style): `backbone.conditioning`.
"""

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
    """DenseGeometryModule with FE2E's objective and log quantization as defaults; every ablation row
    changes them through config. Runs on an editor or a generator backbone alike (see module docstring)."""

    def __init__(self, backbone, objective=None, quantization: str = "log", optim=None, image_latent: str = "mode",
                 seed: int = 0) -> None:
        super().__init__(backbone, objective if objective is not None else fe2e_objective(),
                         quantization, optim, image_latent, seed)
