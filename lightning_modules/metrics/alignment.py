"""Least-squares alignment of an affine-invariant depth prediction to metric ground truth (SPEC 7).

Every function is batched over images (no Python loop): the per-image scale and shift come from
the closed-form 2x2 normal equations, evaluated with masked sums in float64.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

ALIGNMENT_SPACES = ("depth", "disparity", "log", "none")
"""Accepted values of `align_depth(space=...)`."""
DISPARITY_MIN = 1e-3
"""Aligned disparity is clipped to at least this before inversion (Lotus)."""
LOG_DEPTH_CAP = 5.0
"""Aligned log depth is capped at this before exp (FE2E): depth <= e^5 ~ 148.4 m."""
DEPTH_FLOOR = 1e-6
"""Aligned depth is always clipped to at least this (metres)."""


def to_bhw(x: torch.Tensor, what: str) -> torch.Tensor:
    """Return a (B,H,W) view of a (B,H,W) or (B,1,H,W) map; raise ValueError naming `what` otherwise."""
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() == 3:
        return x
    raise ValueError(f"{what}: expected shape (B,H,W) or (B,1,H,W), got {tuple(x.shape)}")


def valid_bbox(valid: torch.Tensor) -> tuple[slice, slice]:
    """Row and column slices of the smallest box holding every True pixel of a (B,H,W) bool mask
    (union over the batch; the full extent when nothing is valid). Metrics skip what lies outside."""
    u8 = valid.view(torch.uint8)  # uint8 max-reductions are much faster than bool any() on CPU
    rows = torch.nonzero(u8.amax(dim=(0, 2))).flatten()
    cols = torch.nonzero(u8.amax(dim=(0, 1))).flatten()
    if rows.numel() == 0:
        return slice(None), slice(None)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


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


def rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row dot product of two (B,N) tensors -> (B,), one BLAS call, no (B,N) temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).reshape(-1)


def fit_scale_shift(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image least squares s, t minimising sum over mask of (s*x + t - y)^2.

    x, y: (B,N) float64; mask: (B,N) bool. Returns s, t and the pixel count n, each (B,)
    float64. Closed-form 2x2
    normal equations from masked sums (BLAS dot products), with x shifted by an estimate of its
    masked mean first so that the variance does not suffer cancellation. Values outside the mask
    may be anything (NaN/inf included). A constant x over the mask gives s = 0, t = mean(y) (a
    least-squares solution); an empty mask gives NaN for both (callers turn that into a counted
    bad sample); a NaN/inf inside the mask gives NaN/inf.
    """
    w = mask.to(torch.float64)
    n = w.sum(dim=1)
    step = max(1, x.shape[1] // 4096)  # shift estimate from a strided subsample: cheap, NaN-safe
    sub = mask[:, ::step]
    shift = torch.where(sub, x[:, ::step], 0.0).sum(dim=1) / sub.sum(dim=1).clamp_min(1)
    xw = (x - shift[:, None]).mul_(w)
    sums = torch.stack((xw.sum(dim=1), rowdot(w, y), rowdot(xw, xw), rowdot(xw, y)), dim=1)
    if not bool(torch.isfinite(sums).all()):  # NaN/inf outside the mask survives 0*value: zero it out
        xw = torch.where(mask, xw, 0.0)
        y = torch.where(mask, y, 0.0)
        sums = torch.stack((xw.sum(dim=1), y.sum(dim=1), rowdot(xw, xw), rowdot(xw, y)), dim=1)
    sx, sy, sxx, sxy = sums.unbind(dim=1)
    n_safe = n.clamp_min(1.0)
    var = sxx - sx * sx / n_safe
    cov = sxy - sx * sy / n_safe
    s = torch.where(var > 0, cov / torch.where(var > 0, var, 1.0), 0.0)
    t = (sy - s * sx) / n_safe - s * shift
    nan = torch.full_like(s, math.nan)
    return torch.where(n == 0, nan, s), torch.where(n == 0, nan, t), n


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
    space: 'depth' (fit s*p+t ~ g), 'disparity' (fit to 1/g over g>0, aligned disparity clipped
    to >= 1e-3, depth = 1/disp), 'log' (fit to ln g over g>0 and p>0, depth = exp(min(s*p+t, 5)))
    or 'none' (prediction taken as metric depth unchanged).
    Returns aligned metric depth in metres, float64 (the fit and the transform run in float64),
    same shape as `pred`, clipped to [min_depth, max_depth] and to >= 1e-6.
    An image with no pixel usable for the fit comes back all NaN (a warning is logged), which the
    metric classes report as a bad sample.
    """
    if space not in ALIGNMENT_SPACES:
        raise ValueError(f"align_depth: space must be one of {ALIGNMENT_SPACES}, got {space!r}")
    if not min_depth <= max_depth:
        raise ValueError(f"align_depth: min_depth {min_depth} > max_depth {max_depth}")
    p3, g3, v3 = to_bhw(pred, "pred"), to_bhw(gt, "gt"), to_bhw(valid, "valid")
    if not (p3.shape == g3.shape == v3.shape):
        raise ValueError(
            f"align_depth: shape mismatch: pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, valid {tuple(valid.shape)}"
        )
    b = p3.shape[0]
    if space == "none":
        p = p3.to(torch.float64, copy=True)  # never modify the caller's tensor in place
    else:
        v3 = v3.to(torch.bool)
        rows, cols = valid_bbox(v3)  # the fit only reads valid pixels: skip empty borders
        p_in, g_in, fit = p3[:, rows, cols], g3[:, rows, cols], v3[:, rows, cols]
        if space != "depth":
            fit = fit & (g_in > 0)
        if space == "log":
            fit = fit & (p_in > 0)
        g = g_in.to(torch.float64, copy=True)  # contiguous, ours: modified in place
        if space == "disparity":  # the clamp keeps g <= 0 (outside the fit) finite
            g = g.clamp_min_(torch.finfo(torch.float64).tiny).reciprocal_()
        elif space == "log":
            g = g.clamp_min_(torch.finfo(torch.float64).tiny).log_()
        s, t, n = fit_scale_shift(p_in.to(torch.float64).reshape(b, -1), g.reshape(b, -1), fit.reshape(b, -1))
        empty = n == 0
        if bool(empty.any()):
            bad = torch.nonzero(empty).flatten().tolist()
            logger.warning("align_depth(%s): no pixel usable for the fit in batch items %s; they become NaN", space, bad)
        p = torch.addcmul(t[:, None, None], s[:, None, None], p3)  # aligned, in the space's own domain
        if space == "disparity":
            p = p.clamp_min_(DISPARITY_MIN).reciprocal_()
        elif space == "log":
            p = p.clamp_max_(LOG_DEPTH_CAP).exp_()
    # clip to [min_depth, max_depth], then to >= DEPTH_FLOOR (one clamp: max(min(max(x,lo),hi),f))
    lo, hi = max(min_depth, DEPTH_FLOOR), max(max_depth, DEPTH_FLOOR)
    p = p.clamp_(min=lo, max=hi)
    return p.reshape(pred.shape)
