"""GenPercept's pixel-space losses (SPEC section 9), as its released training code computes them.

All functions take float tensors and a bool mask of valid pixels and return a float32 scalar that
stays connected to the graph (0 * pred when no pixel is valid). Reductions POOL over the valid
pixels of the whole batch (torch.nn.MSELoss / l1_loss on `x[mask]`), as the released code does.
Depth maps are (B,1,H,W) (the decoded target image's channel mean, shifted by +2 by the caller);
normal maps are (B,3,H,W).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from lightning_modules.choices import check_choice

GradAxes = Literal["released", "both"]


def _empty(pred: torch.Tensor) -> torch.Tensor:
    return pred.float().sum() * 0.0


def _check(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, channels: int | None = 1) -> None:
    if pred.shape != target.shape or pred.ndim != 4 or (channels is not None and pred.shape[1] != channels):
        want = f"(B,{channels},H,W)" if channels is not None else "(B,C,H,W)"
        raise ValueError(f"pixel loss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} must both be {want}")
    if mask.shape != (pred.shape[0], 1, *pred.shape[-2:]):
        raise ValueError(f"pixel loss: mask must be (B,1,H,W) = ({pred.shape[0]},1,{pred.shape[-2]},{pred.shape[-1]}), "
                         f"got {tuple(mask.shape)}")


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean over valid pixels of (pred - target)^2 (depth maps (B,1,H,W))."""
    _check(pred, target, mask)
    m = mask.bool()
    if not bool(m.any()):
        return _empty(pred)
    return F.mse_loss(pred.float()[m], target.float()[m])


def least_squares_scale_shift(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (s, t) minimising sum over valid pixels of (s * pred + t - target)^2; each (B,).

    Closed form of the 2x2 normal equations; images whose system is singular (det <= 0: fewer than
    two distinct valid values) get s = t = 0, as the released code. Not detached: gradients flow
    through s and t.
    """
    m = mask.float()
    p, g = pred.float(), target.float()
    a00 = (m * p * p).sum((1, 2, 3))
    a01 = (m * p).sum((1, 2, 3))
    a11 = m.sum((1, 2, 3))
    b0 = (m * p * g).sum((1, 2, 3))
    b1 = (m * g).sum((1, 2, 3))
    det = a00 * a11 - a01 * a01
    ok = det > 0
    safe = torch.where(ok, det, torch.ones_like(det))
    s = torch.where(ok, (a11 * b0 - a01 * b1) / safe, torch.zeros_like(det))
    t = torch.where(ok, (-a01 * b0 + a00 * b1) / safe, torch.zeros_like(det))
    return s, t


def median_scale(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image median(target) / (median(pred) + 1e-8) over valid pixels with target > 0; (B,).

    Medians are torch's LOWER median (element (n - 1) // 2 of the sorted values, as torch.nanmedian in
    the released code); an image without such a pixel gets 1 / (1 + 1e-8).
    """
    out = []
    for p, g, m in zip(pred.float(), target.float(), mask.bool()):
        keep = m & (g > 0)
        if bool(keep.any()):
            out.append(g[keep].median() / (p[keep].median() + 1e-8))
        else:
            out.append(pred.new_tensor(1.0, dtype=torch.float32) / (1.0 + 1e-8) + 0.0 * p.sum())
    return torch.stack(out)


def ssi_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scale-and-shift-invariant L1: mean over valid pixels of |s * pred + t - target| with the
    per-image least-squares (s, t); an image whose s <= 0 is aligned by `median_scale` instead
    (pred * median ratio, no shift). Depth maps (B,1,H,W)."""
    _check(pred, target, mask)
    m = mask.bool()
    if not bool(m.any()):
        return _empty(pred)
    s, t = least_squares_scale_shift(pred, target, m)
    med = median_scale(pred, target, m)
    use_median = (s <= 0).view(-1, 1, 1, 1)
    p = pred.float()
    aligned = torch.where(use_median, p * med.view(-1, 1, 1, 1), p * s.view(-1, 1, 1, 1) + t.view(-1, 1, 1, 1))
    return F.l1_loss(aligned[m], target.float()[m])


def gradient_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, axes: str = "released") -> torch.Tensor:
    """Gradient-matching L1 on d = mask * (pred - target), divided by the number of valid pixels.

    axes='released': only differences between vertically adjacent pixels (along H), both valid.
    The released code applies a (B,H,W) gradient loss to (B,1,H,W) maps, so its "x" difference runs
    along H and its "y" difference along the singleton channel axis (always empty).
    axes='both': differences along H and along W (the loss as its authors meant it).
    Returns sum |d[i+1] - d[i]| over adjacent valid pairs / (number of valid pixels in the batch); 0 if none.
    """
    check_choice("gradient_l1 axes (genpercept.grad_axes)", axes, GradAxes)
    _check(pred, target, mask)
    m = mask.float()
    count = m.sum()
    if float(count) == 0:
        return _empty(pred)
    d = m * (pred.float() - target.float())
    total = ((d[..., 1:, :] - d[..., :-1, :]).abs() * (m[..., 1:, :] * m[..., :-1, :])).sum()
    if axes == "both":
        total = total + ((d[..., :, 1:] - d[..., :, :-1]).abs() * (m[..., :, 1:] * m[..., :, :-1])).sum()
    return total / count


def angular_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Mean over valid pixels of acos(clamp(cos(pred, target), -(1 - eps), 1 - eps)) in RADIANS.

    pred, target: (B,3,H,W) (pred need not be unit length; cosine similarity normalises, with
    torch's 1e-8 floor on the norms); mask: (B,1,H,W) bool.
    """
    _check(pred, target, mask, channels=3)
    m = mask.bool()[:, 0]
    if not bool(m.any()):
        return _empty(pred)
    cos = F.cosine_similarity(pred.float(), target.float(), dim=1)
    return cos.clamp(-(1.0 - eps), 1.0 - eps).acos()[m].mean()
