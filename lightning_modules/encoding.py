"""Target encodings: depth quantization (SPEC section 4), normal encoding (SPEC section 5), decoding.

Pure tensor functions, no model state. Shapes follow the sample contract (datamodules/__init__.py):
depth (B,1,H,W) metres, valid_mask (B,1,H,W) bool, normal (B,3,H,W) unit vectors (x LEFT, y UP,
z TOWARD the camera). Encoded targets are "RGB" images in [-1, 1] that go into the VAE.
"""

from __future__ import annotations

import logging
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from lightning_modules.choices import check_choice

logger = logging.getLogger(__name__)

Quantization = Literal["direct", "inverse", "log"]
"""Depth quantization schemes: q = D (metres), q = 1/D (1/metres), q = ln(D + 1e-6) (ln metres)."""
SCHEMES = get_args(Quantization)

LOG_EPS = 1e-6
"""Added to depth (metres) before the logarithm of the 'log' scheme."""

_ALIGNMENT_SPACE = {"direct": "depth", "inverse": "disparity", "log": "log"}


def _check_scheme(scheme: str) -> None:
    check_choice("depth quantization scheme", scheme, Quantization)


def encode_quantity(depth: torch.Tensor, scheme: str) -> torch.Tensor:
    """The encoded quantity q of a depth map in metres: D (m), 1/D (1/m) or ln(D + 1e-6) (ln m).

    Computed in float32. Zero depth gives q = inf for 'inverse' (callers treat it as invalid).
    """
    _check_scheme(scheme)
    depth = depth.float()
    if scheme == "direct":
        return depth
    if scheme == "inverse":
        return 1.0 / depth
    return torch.log(depth + LOG_EPS)


def quantile_linear(values: torch.Tensor, probs: list[float]) -> torch.Tensor:
    """Quantiles of a 1-D tensor with linear interpolation (numpy's / torch.quantile's default).

    For sorted values v[0..n-1] and probability p: position h = p * (n - 1), result
    v[floor h] + (h - floor h) * (v[floor h + 1] - v[floor h]). Unlike torch.quantile this has no
    16M-element limit (full-resolution ETH3D has 24M pixels). Returns a (len(probs),) tensor.
    """
    if values.ndim != 1 or values.numel() == 0:
        raise ValueError(f"quantile_linear: expected a non-empty 1-D tensor, got shape {tuple(values.shape)}")
    ordered = torch.sort(values).values
    n = ordered.numel()
    pos = torch.tensor(probs, dtype=torch.float64) * (n - 1)
    lo = pos.floor().long().clamp(0, n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    frac = (pos - lo.double()).to(ordered.dtype).to(ordered.device)
    lo, hi = lo.to(ordered.device), hi.to(ordered.device)
    return ordered[lo] + frac * (ordered[hi] - ordered[lo])


def quantize_depth(depth: torch.Tensor, valid: torch.Tensor, scheme: str = "log",
                   lower: float = 0.02, upper: float = 0.98) -> torch.Tensor:
    """Metric depth -> the 3-channel target image in [-1, 1] the VAE encodes (SPEC section 4).

    depth: (B,1,H,W) metres; valid: (B,1,H,W) bool. Per image, over its valid pixels, with
    p_lo, p_hi the `lower`/`upper` quantiles (linear interpolation, see `quantile_linear`) of q:
        y = clip(((q - p_lo) / (p_hi - p_lo) - 0.5) * 2, -1, 1)
    Invalid pixels get y = +1 ("far plane" in the SPEC's words). The formula is kept literally
    for every scheme, so +1 is the p_hi side of q: far for 'direct' and 'log', but NEAR for
    'inverse' (q = 1/D is largest near the camera), i.e. under 'inverse' invalid pixels look like
    the nearest surface.

    Edge cases (defined here, not in the SPEC):
    - valid pixels whose q is not finite (D <= 0 under 'inverse', NaN/inf depth) are treated as
      invalid (-> +1); their count is logged as a warning;
    - an image with no valid pixel is all +1 (logged as a warning);
    - degenerate range p_hi == p_lo (e.g. constant depth): the formula's limit is used in a
      symmetric form, y = sign(q - p_lo), i.e. 0 for pixels at the plateau value, -1 below, +1 above.

    Returns (B,3,H,W) float32: y replicated to 3 channels and rounded through bfloat16 (the value
    the DiT sees).
    """
    _check_scheme(scheme)
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise ValueError(f"quantize_depth: depth must be (B,1,H,W), got {tuple(depth.shape)}")
    if valid.shape != depth.shape:
        raise ValueError(f"quantize_depth: valid mask shape {tuple(valid.shape)} != depth shape {tuple(depth.shape)}")
    if not 0.0 <= lower < upper <= 1.0:
        raise ValueError(f"quantize_depth: need 0 <= lower < upper <= 1, got lower={lower}, upper={upper}")
    q = encode_quantity(depth, scheme)
    finite = torch.isfinite(q)
    mask = valid.bool() & finite
    dropped = int((valid.bool() & ~finite).sum())
    if dropped:
        logger.warning("quantize_depth(%s): %d valid pixels with non-finite q treated as invalid", scheme, dropped)
    y = torch.ones_like(q)
    for i in range(q.shape[0]):
        qi, mi = q[i], mask[i]
        if not bool(mi.any()):
            logger.warning("quantize_depth(%s): image %d of the batch has no valid pixel; encoded all +1", scheme, i)
            continue
        p_lo, p_hi = quantile_linear(qi[mi], [lower, upper])
        span = p_hi - p_lo
        if float(span) > 0:
            yi = (((qi - p_lo) / span - 0.5) * 2).clamp(-1.0, 1.0)
        else:
            yi = torch.sign(qi - p_lo)
        y[i] = torch.where(mi, yi, torch.ones_like(yi))
    return y.expand(-1, 3, -1, -1).to(torch.bfloat16).float().contiguous()


def dequantize_depth(rgb_decoded: torch.Tensor) -> torch.Tensor:
    """Decoded target image (B,3,H,W) -> (B,1,H,W) float32 p in [0, 1].

    Clamps to [-1, 1], averages the channels and maps p = (x + 1) / 2. p is affine-invariant in the
    ENCODED space of the scheme (depth for 'direct', disparity for 'inverse', log depth for
    'log'); recover metres by least-squares alignment in that space (`affine_invariant_to_space`).
    """
    if rgb_decoded.ndim != 4:
        raise ValueError(f"dequantize_depth: expected (B,C,H,W), got {tuple(rgb_decoded.shape)}")
    x = rgb_decoded.float().clamp(-1.0, 1.0).mean(dim=1, keepdim=True)
    return (x + 1.0) / 2.0


def affine_invariant_to_space(scheme: str) -> str:
    """Evaluation alignment space of a quantization scheme: direct->'depth', inverse->'disparity', log->'log'."""
    _check_scheme(scheme)
    return _ALIGNMENT_SPACE[scheme]


def latent_valid_mask(valid: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """Pixel validity (B,1,H,W) bool -> latent-cell validity (B,1,H/f,W/f) bool (Marigold-style).

    A latent cell is valid only if ALL `factor` x `factor` pixels it covers are valid, i.e. the
    complement of the max-pooled invalid mask. H and W must be multiples of `factor`.
    """
    if valid.ndim != 4 or valid.shape[-2] % factor or valid.shape[-1] % factor:
        raise ValueError(f"latent_valid_mask: expected (B,1,H,W) with H, W multiples of {factor}, "
                         f"got {tuple(valid.shape)}")
    invalid = (~valid.bool()).float()
    return F.max_pool2d(invalid, kernel_size=factor, stride=factor) == 0


def encode_normals(normal: torch.Tensor) -> torch.Tensor:
    """Unit normals (B,3,H,W) -> target image in [-1, 1]: the components themselves (x, y, z as R, G, B).

    Zero vectors (unknown normals) stay zero; values are clamped to [-1, 1] against rounding noise.
    Returns float32.
    """
    if normal.ndim != 4 or normal.shape[1] != 3:
        raise ValueError(f"encode_normals: expected (B,3,H,W), got {tuple(normal.shape)}")
    return normal.float().clamp(-1.0, 1.0)


def decode_normals(rgb: torch.Tensor, size: tuple[int, int] | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Decoded image (B,3,h,w) -> unit normals (B,3,H,W) float32 (SPEC section 5).

    Clamps to [-1, 1], resizes bilinearly (align_corners=False) to `size` = (H, W) if given, then
    L2-normalises each pixel: n / max(||n||, eps) (a zero vector stays zero).
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"decode_normals: expected (B,3,h,w), got {tuple(rgb.shape)}")
    n = rgb.float().clamp(-1.0, 1.0)
    if size is not None and tuple(size) != tuple(n.shape[-2:]):
        n = F.interpolate(n, size=tuple(size), mode="bilinear", align_corners=False)
    return n / n.norm(dim=1, keepdim=True).clamp_min(eps)
