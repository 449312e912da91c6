"""The model's input size for an image: FE2E's per-benchmark buckets, and aspect-keeping sizes for
a user's own images (SPEC section 7). Sizes are (H, W) in pixels, multiples of 16 (the VAE's 8x
down-sampling times the DiT's 2x2 patches)."""

from __future__ import annotations

import math

MULTIPLE = 16
"""Every model input side is a multiple of this many pixels."""
REFERENCE_SIZE = (768, 1024)
"""(H, W) of FE2E's main bucket; a user's image is resized to this many pixels times input_scale^2."""


def check_input_scale(input_scale: float) -> float:
    """`input_scale` if it is in (0, 4], else ValueError naming the allowed range."""
    if not 0 < input_scale <= 4:
        raise ValueError(f"input_scale must be in (0, 4], got {input_scale}")
    return input_scale


def round_to_multiple(value: float, multiple: int = MULTIPLE) -> int:
    """`value` rounded to the nearest multiple of `multiple`, at least one multiple."""
    return max(multiple, int(round(value / multiple)) * multiple)


def scaled_input_size(size: tuple[int, int], input_scale: float = 1.0) -> tuple[int, int]:
    """A benchmark's bucket (H, W) times `input_scale`, each side rounded to a multiple of 16.

    input_scale 1.0 = the paper's buckets; the embedded default (models trained at ~96x128) uses 0.25.
    """
    check_input_scale(input_scale)
    return tuple(round_to_multiple(s * input_scale) for s in size)  # type: ignore[return-value]


def aspect_input_size(height: int, width: int, input_scale: float = 1.0) -> tuple[int, int]:
    """(H, W) for a user's image of this size: its aspect ratio kept, its pixel count that of the
    1024x768 bucket times input_scale^2, each side rounded to a multiple of 16.

    A 480x640 landscape photo gets (768, 1024) at scale 1, a 1024x768 portrait one (1024, 768):
    nothing is squeezed into a landscape bucket.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {(height, width)}")
    check_input_scale(input_scale)
    area = REFERENCE_SIZE[0] * REFERENCE_SIZE[1] * input_scale**2
    h = math.sqrt(area * height / width)
    return round_to_multiple(h), round_to_multiple(h * width / height)
