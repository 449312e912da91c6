"""Least-squares alignment of an affine-invariant depth prediction to metric ground truth (SPEC 7).

The fit runs per image on the valid pixels only, in float64 (`pixels.fit_line`); the aligned map
is then produced for every pixel with torch, in float64. The metric suite does not need the map:
`DepthMetrics(space=...)` aligns and scores the valid pixels without it (`fused.score_image`).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from lightning_modules.choices import check_choice
from lightning_modules.metrics.pixels import (
    ALIGNMENT_SPACES,
    DEPTH_FLOOR,
    DISPARITY_MIN,
    LOG_DEPTH_CAP,
    AlignmentSpace,
    as_numpy,
    clip_range,
    fit_line,
    fit_target,
    gather_valid,
)

logger = logging.getLogger(__name__)

__all__ = ["ALIGNMENT_SPACES", "DEPTH_FLOOR", "DISPARITY_MIN", "LOG_DEPTH_CAP", "align_depth", "fit_scale_shift",
           "resize_to", "to_bhw"]


def to_bhw(x: torch.Tensor, what: str) -> torch.Tensor:
    """Return a (B,H,W) view of a (B,H,W) or (B,1,H,W) map; raise ValueError naming `what` otherwise."""
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() == 3:
        return x
    raise ValueError(f"{what}: expected shape (B,H,W) or (B,1,H,W), got {tuple(x.shape)}")


def resize_to(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a prediction bilinearly (align_corners=False, no antialias) to `size` = (H, W).

    Accepts (B,H,W) or (B,C,H,W) and returns the same layout at the new size, same dtype. This is
    the step SPEC 7 applies before alignment (prediction at model resolution -> GT resolution).
    Returns `pred` itself when it already has that size.
    """
    size = (int(size[0]), int(size[1]))
    if pred.dim() in (3, 4) and tuple(pred.shape[-2:]) == size:
        return pred
    squeeze = pred.dim() == 3
    x = pred[:, None] if squeeze else pred
    if x.dim() != 4:
        raise ValueError(f"resize_to: expected (B,H,W) or (B,C,H,W), got {tuple(pred.shape)}")
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x[:, 0] if squeeze else x


def fit_scale_shift(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row least squares s, t minimising sum over mask of (s*x + t - y)^2.

    x, y: (B,N) float tensors; mask: (B,N) bool. Returns s, t and the pixel count n, each (B,)
    float64 on x's device (`pixels.fit_line` per row, float64). Values outside the mask may be
    anything (NaN/inf included). A constant x over the mask gives s = 0, t = mean(y); an empty
    mask gives NaN for both; a NaN/inf inside the mask gives NaN.
    """
    xs, ys, ms = as_numpy(x), as_numpy(y), as_numpy(mask).astype(bool)
    rows = []
    with np.errstate(all="ignore"):
        for xi, yi, mi in zip(xs, ys, ms):
            xi, yi = xi[mi].astype(np.float64), yi[mi].astype(np.float64)
            rows.append((*fit_line(xi, yi), float(xi.size)))
    out = torch.tensor(rows, dtype=torch.float64, device=x.device).reshape(-1, 3)
    return out[:, 0], out[:, 1], out[:, 2]


def align_depth(
    pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor,
    space: str,
    min_depth: float = 1e-5,
    max_depth: float = math.inf,
) -> torch.Tensor:
    """Align an affine-invariant prediction to metric depth, per image, over valid pixels.

    pred: (B,1,H,W) or (B,H,W), ALREADY at ground-truth resolution (see `resize_to`).
    gt: metric depth (metres), same layout; valid: bool, same layout.
    space: 'depth' (fit s*p+t ~ g), 'disparity' (fit to 1/g over g>0 and p>0, aligned disparity
    clipped to >= 1e-3, depth = 1/disp), 'log' (fit to ln g over g>0 and p>0, depth = exp(min(s*p+t, 5)))
    or 'none' (prediction taken as metric depth unchanged).
    Returns aligned metric depth in metres, float64 (the fit and the transform run in float64),
    same shape as `pred`, clipped to [min_depth, max_depth] and to >= 1e-6.
    An image with no pixel usable for the fit comes back all NaN (a warning is logged), which the
    metric classes report as a bad sample.
    """
    check_choice("align_depth: space", space, AlignmentSpace)
    if not min_depth <= max_depth:
        raise ValueError(f"align_depth: min_depth {min_depth} > max_depth {max_depth}")
    p3, g3, v3 = to_bhw(pred, "pred"), to_bhw(gt, "gt"), to_bhw(valid, "valid")
    if not (p3.shape == g3.shape == v3.shape):
        raise ValueError(
            f"align_depth: shape mismatch: pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, valid {tuple(valid.shape)}"
        )
    p = p3.to(torch.float64, copy=True)  # never modify the caller's tensor in place
    if space != "none":
        fits, empty = [], []
        p_np, g_np, v_np = as_numpy(p3), as_numpy(g3), as_numpy(v3)
        with np.errstate(all="ignore"):
            for i in range(p3.shape[0]):
                x, y, _ = fit_target(*gather_valid(p_np[i], g_np[i], v_np[i]), space)
                fits.append(fit_line(x, y))
                if x.size == 0:
                    empty.append(i)
        if empty:
            logger.warning("align_depth(%s): no pixel usable for the fit in batch items %s; they become NaN", space, empty)
        st = torch.tensor(fits, dtype=torch.float64, device=p.device).reshape(-1, 2, 1, 1)
        p = p.mul_(st[:, 0]).add_(st[:, 1])  # aligned, in the space's own domain
        if space == "disparity":
            p = p.clamp_min_(DISPARITY_MIN).reciprocal_()
        elif space == "log":
            p = p.clamp_max_(LOG_DEPTH_CAP).exp_()
    lo, hi = clip_range(min_depth, max_depth)  # [min_depth, max_depth], then >= DEPTH_FLOOR
    p = p.clamp_(min=lo, max=hi)
    return p.reshape(pred.shape)
