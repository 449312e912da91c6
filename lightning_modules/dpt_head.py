"""A DPT head (Ranftl et al. 2021) on DiT block outputs: GenPercept's alternative to the VAE decoder.

Four token maps of the same resolution (the DiT's 2x2 patches, H/16 x W/16 of the image) are
reassembled to four scales (x4, x2, x1, x0.5 of the token grid), projected to the fusion width
(256 in DPT and GenPercept), fused coarse-to-fine by residual conv units with x2 upsampling, and
turned into `out_channels` maps at the input resolution by DPT's depth head (two 3x3 convs around a
x2 upsampling, a 1x1 output conv). The output activation is the identity (GenPercept's
"dpt_head_identity" variant), so the head predicts the [-1, 1] target encoding directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _ResidualUnit(nn.Module):
    """Pre-activation residual unit: x + conv(relu(conv(relu(x))))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class _Fusion(nn.Module):
    """One fusion step: add the (resized) skip feature through a residual unit, refine, upsample x2, 1x1."""

    def __init__(self, width: int, with_skip: bool) -> None:
        super().__init__()
        self.skip = _ResidualUnit(width) if with_skip else None
        self.refine = _ResidualUnit(width)
        self.project = nn.Conv2d(width, width, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            if skip.shape[-2:] != x.shape[-2:]:
                skip = F.interpolate(skip, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.skip(skip)
        x = F.interpolate(self.refine(x), scale_factor=2, mode="bilinear", align_corners=True)
        return self.project(x)


def _resample(channels: int, level: int) -> nn.Module:
    """Level 0: x4 up, 1: x2 up, 2: identity, 3: x0.5 down (DPT's reassemble factors for a ViT-16)."""
    if level == 0:
        return nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=4)
    if level == 1:
        return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
    if level == 2:
        return nn.Identity()
    return nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)


class DPTHead(nn.Module):
    """Dense prediction from four (B, C, h, w) token maps.

    Args:
        in_channels: width C of the block outputs (the DiT hidden size).
        out_channels: 1 (depth) or 3 (normals).
        features: fusion width (256 as DPT / GenPercept).
        neck: reassemble widths of the four levels (DPT-Base: 96, 192, 384, 768).
    """

    def __init__(self, in_channels: int, out_channels: int, features: int = 256,
                 neck: Sequence[int] = (96, 192, 384, 768)) -> None:
        super().__init__()
        if len(neck) != 4 or min(neck) < 1 or features < 2:
            raise ValueError(f"DPTHead: expected 4 positive neck widths and features >= 2, got {list(neck)}, {features}")
        self.reassemble = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, n, 1), _resample(n, level)) for level, n in enumerate(neck))
        self.to_fusion = nn.ModuleList(nn.Conv2d(n, features, 3, padding=1, bias=False) for n in neck)
        self.fusion = nn.ModuleList(_Fusion(features, with_skip=i > 0) for i in range(4))
        self.head = nn.Sequential(
            nn.Conv2d(features, features // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(features // 2, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, out_channels, 1),
        )

    def forward(self, maps: Sequence[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        """maps: four (B, C, h, w) float tensors, shallow to deep. Returns (B, out_channels, *out_size) float32."""
        if len(maps) != 4:
            raise ValueError(f"DPTHead: expected 4 block outputs, got {len(maps)}")
        feats = [proj(re(m.float())) for m, re, proj in zip(maps, self.reassemble, self.to_fusion)]
        x = self.fusion[0](feats[3])
        for fuse, skip in zip(self.fusion[1:], reversed(feats[:3])):
            x = fuse(x, skip)
        out = self.head(x)
        if tuple(out.shape[-2:]) != tuple(out_size):
            out = F.interpolate(out, size=tuple(out_size), mode="bilinear", align_corners=False)
        return out
