"""Geometry-aware transforms on the sample dict (see `datamodules/__init__.py`).

Every transform takes a sample dict and returns a new one; spatial keys are 'rgb' (3,H,W),
'depth' (1,H,W), 'valid_mask' (1,H,W) and 'normal' (3,H,W); 'intrinsics' is updated to match.
Pixel centres sit at integer coordinates (OpenCV), so a centred camera has cx = (W-1)/2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(sample: dict, height: int, width: int) -> dict:
    """Resize to (height, width): rgb bilinear (antialiased when shrinking), depth and mask
    nearest, normals bilinear then re-normalised (zero where the resized mask of known normals is
    False). Intrinsics scale as fx' = fx * W'/W, cx' = (cx + 0.5) * W'/W - 0.5."""
    h0, w0 = sample["rgb"].shape[-2:]
    if (h0, w0) == (height, width):
        return dict(sample)
    out = dict(sample)
    size = (height, width)
    shrink = height < h0 or width < w0
    out["rgb"] = F.interpolate(sample["rgb"][None], size=size, mode="bilinear", align_corners=False, antialias=shrink)[0]
    out["depth"] = F.interpolate(sample["depth"][None], size=size, mode="nearest-exact")[0]
    out["valid_mask"] = F.interpolate(sample["valid_mask"][None].float(), size=size, mode="nearest-exact")[0] > 0.5
    normal = sample["normal"]
    known = (normal.abs().sum(0, keepdim=True) > 0).float()
    known = F.interpolate(known[None], size=size, mode="nearest-exact")[0] > 0.5
    normal = F.interpolate(normal[None], size=size, mode="bilinear", align_corners=False)[0]
    norm = normal.norm(dim=0, keepdim=True)
    known &= norm > 1e-6
    out["normal"] = torch.where(known, normal / norm.clamp_min(1e-6), torch.zeros_like(normal))
    sx, sy = width / w0, height / h0
    K = sample["intrinsics"].clone()
    K[0, 0], K[0, 2] = K[0, 0] * sx, (K[0, 2] + 0.5) * sx - 0.5
    K[1, 1], K[1, 2] = K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5
    out["intrinsics"] = K
    return out


SPATIAL_KEYS = ("rgb", "depth", "valid_mask", "normal")


def crop(sample: dict, top: int, left: int, height: int, width: int) -> dict:
    """Crop rows top:top+height, cols left:left+width; the principal point shifts by (left, top)."""
    h0, w0 = sample["rgb"].shape[-2:]
    if top < 0 or left < 0 or top + height > h0 or left + width > w0:
        raise ValueError(f"crop ({top},{left},{height},{width}) does not fit an image of {h0}x{w0} ({sample.get('name')})")
    out = dict(sample)
    for key in SPATIAL_KEYS:
        out[key] = sample[key][..., top : top + height, left : left + width]
    K = sample["intrinsics"].clone()
    K[0, 2] -= left
    K[1, 2] -= top
    out["intrinsics"] = K
    return out


def random_crop(sample: dict, height: int, width: int, generator: torch.Generator | None = None) -> dict:
    """Crop a uniformly random (height, width) window."""
    h0, w0 = sample["rgb"].shape[-2:]
    top = int(torch.randint(0, h0 - height + 1, (1,), generator=generator))
    left = int(torch.randint(0, w0 - width + 1, (1,), generator=generator))
    return crop(sample, top, left, height, width)


def hflip(sample: dict) -> dict:
    """Mirror left-right: every spatial map flips, the normal x component (x LEFT) is negated and
    cx -> (W - 1) - cx."""
    w = sample["rgb"].shape[-1]
    out = dict(sample)
    for key in SPATIAL_KEYS:
        out[key] = sample[key].flip(-1)
    out["normal"] = out["normal"] * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
    K = sample["intrinsics"].clone()
    K[0, 2] = (w - 1) - K[0, 2]
    out["intrinsics"] = K
    return out
