"""T2IBaselineModule: a text-to-image GENERATOR adapted to image input, fine-tuned the same way.

The image enters either as extra tokens after the target tokens (sequence concatenation, how FE2E
fed FLUX: the "Step1X-Edit protocol") or as extra input channels (channel concatenation,
Marigold-style); that choice is `backbone.conditioning`. Everything else (objective, quantization,
data, schedule) is shared with FE2EModule, so the comparison isolates the pretrained prior.
"""

from __future__ import annotations

from lightning_modules.fe2e import FE2EModule


class T2IBaselineModule(FE2EModule):
    """DenseGeometryModule whose backbone must be a generator (FLUX.1-dev, Qwen-Image)."""

    expects_editor = False
