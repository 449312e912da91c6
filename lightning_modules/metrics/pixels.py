"""Per-image depth alignment and metrics over the valid pixels only, in NumPy float64 (SPEC 7).

The per-pixel work of the metric suite. For one image, pass 1 gathers the valid pixels (the one
float32 -> float64 cast) and accumulates the alignment fit's sums as each chunk arrives; pass 2
aligns and scores them chunk by chunk. Scratch arrays are reused from image to image (on this
kind of machine a fresh multi-megabyte array costs more in page faults than the arithmetic done
on it), and no multithreaded BLAS is called (it spin-waits on a shared machine).
Nothing is computed for pixels outside the mask, so sparse LiDAR maps cost what their points cost.

Inputs are 2-D NumPy arrays of one image; callers holding torch tensors convert with `as_numpy`
(zero-copy on CPU; other devices are copied to the host, 9 bytes per pixel).
"""

from __future__ import annotations

import math
import threading
from typing import Literal, get_args

import numpy as np
import torch

DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
"""Keys of the depth metrics, in table order; also the column order of `score_image`'s result."""
AlignmentSpace = Literal["depth", "disparity", "log", "none"]
"""Accepted alignment spaces ('none': the prediction is metric depth, only clipped)."""
ALIGNMENT_SPACES = get_args(AlignmentSpace)
DISPARITY_MIN = 1e-3
"""Aligned disparity is clipped to at least this before inversion (Lotus)."""
LOG_DEPTH_CAP = 5.0
"""Aligned log depth is capped at this before exp (FE2E): depth <= e^5 ~ 148.4 m."""
DEPTH_FLOOR = 1e-6
"""Aligned depth is always clipped to at least this (metres)."""
DELTA_THRESHOLDS = (1.25, 1.25**2, 1.25**3)
"""delta_k counts pixels with max(p/g, g/p) < 1.25^k (strict)."""
LOG_DELTA_THRESHOLDS = tuple(float(x) for x in np.log(np.array(DELTA_THRESHOLDS)))
"""ln(1.25^k), by NumPy's own log (the one that takes ln d and ln g), so a ratio of exactly 1.25^k
against g = 1 is not counted as below."""
CHUNK = 1 << 17
"""Valid pixels gathered, aligned and scored per step (1 MiB per float64 temporary): large enough
that the NumPy call overhead stays small, small enough to bound the temporaries of huge maps."""
RETAIN_MAX = 1 << 22
"""Scratch arrays up to this many elements (32 MiB in float64) are kept between images."""

_NAN_ROW = np.full(len(DEPTH_METRIC_NAMES), math.nan)


class _Scratch(threading.local):
    """Per-thread scratch arrays by name, grown on demand and reused between images."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype=np.float64) -> np.ndarray:
        """A 1-D array of n elements of `dtype` (contents undefined); kept for reuse if small enough."""
        a = self.arrays.get(name)
        if a is not None and a.size >= n and a.dtype == dtype:
            return a[:n]
        a = np.empty(n, dtype=dtype)
        if n <= RETAIN_MAX:
            self.arrays[name] = a
        return a


_scratch = _Scratch()


DOT_BLOCK = 8192
"""Elements per BLAS dot call: OpenBLAS runs ddot on one thread up to ~10000 elements; above, its
threads spin-wait and one call took ~7 ms instead of ~5 us when the cores were shared."""


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Dot product of two float64 1-D arrays, single-threaded: BLAS ddot on DOT_BLOCK-element
    slices (about 3x faster than einsum's loop, without BLAS's multithreading)."""
    return float(sum(np.dot(a[i : i + DOT_BLOCK], b[i : i + DOT_BLOCK]) for i in range(0, a.size, DOT_BLOCK)))


def as_numpy(x: torch.Tensor) -> np.ndarray:
    """A NumPy view (CPU) or host copy (other devices) of a tensor; half types become float32."""
    x = x.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return x.cpu().numpy()


def gathered_chunks(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, p_out: np.ndarray, g_out: np.ndarray):
    """Gather the prediction and ground truth at the True pixels of `valid` (same 2-D shape) into
    the float64 1-D arrays p_out, g_out (length = number of valid pixels, row-major order), CHUNK
    pixels at a time; yields (slice, p_out[slice], g_out[slice]) as each chunk is filled, so the
    caller can use it while it is in cache."""
    idx = np.flatnonzero(np.ascontiguousarray(valid, dtype=bool).reshape(-1))
    flats = [np.ascontiguousarray(x).reshape(-1) for x in (pred, gt)]
    for start in range(0, idx.size, CHUNK):
        part = slice(start, min(start + CHUNK, idx.size))
        for name, flat, dest in zip(("p", "g"), flats, (p_out, g_out)):
            if flat.dtype == np.float64:
                np.take(flat, idx[part], out=dest[part], mode="clip")
            else:  # gather in the input dtype, then the one cast to float64
                raw = _scratch.get(name + "_raw", CHUNK, flat.dtype)[: part.stop - part.start]
                np.copyto(dest[part], np.take(flat, idx[part], out=raw, mode="clip"))
        yield part, p_out[part], g_out[part]


def gather_valid(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prediction and ground truth at the True pixels of `valid` (same 2-D shape), as two
    float64 1-D arrays in row-major order (views of this thread's scratch arrays: valid until the
    next call)."""
    n = int(np.count_nonzero(valid))
    p, g = _scratch.get("p", n), _scratch.get("g", n)
    for _ in gathered_chunks(pred, gt, valid, p, g):
        pass
    return p, g


class LineFit:
    """Running sums of a least-squares line y ~ s*x + t, fed chunk by chunk (`add`), solved by
    `solve`. Sums are of x - x0 and y - y0 with (x0, y0) the first pair seen: no cancellation far
    from the origin, and a constant x gives exactly s = 0."""

    def __init__(self) -> None:
        self.n, self.x0, self.y0 = 0, 0.0, 0.0
        self.sx = self.sy = self.sxx = self.sxy = 0.0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add float64 1-D arrays x, y (same length) to the sums."""
        if x.size == 0:
            return
        if self.n == 0:
            self.x0, self.y0 = float(x[0]), float(y[0])
        xs = np.subtract(x, self.x0, out=_scratch.get("fit_x", x.size))
        ys = np.subtract(y, self.y0, out=_scratch.get("fit_y", y.size))
        self.n += x.size
        self.sx += float(np.add.reduce(xs))
        self.sy += float(np.add.reduce(ys))
        self.sxx += dot(xs, xs)
        self.sxy += dot(xs, ys)

    def solve(self) -> tuple[float, float]:
        """(s, t); (nan, nan) with no data; s = 0, t = mean(y) for a constant x; NaN/inf in the
        data propagate to t."""
        n = self.n
        if n == 0:
            return math.nan, math.nan
        var = self.sxx - self.sx * self.sx / n
        cov = self.sxy - self.sx * self.sy / n
        s = cov / var if var > 0 else 0.0
        return s, (self.y0 + self.sy / n) - s * (self.x0 + self.sx / n)


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares s, t minimising sum((s*x + t - y)^2) over two float64 1-D arrays (`LineFit`,
    CHUNK elements at a time). Empty input gives (nan, nan)."""
    fit = LineFit()
    for start in range(0, x.size, CHUNK):
        fit.add(x[start : start + CHUNK], y[start : start + CHUNK])
    return fit.solve()


def fit_target(p: np.ndarray, g: np.ndarray, space: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, y_all) of the alignment fit in `space` ('depth', 'disparity' or 'log') from the
    gathered valid pixels p, g: y_all = g, 1/g or ln g at every pixel (a scratch array; NaN/inf
    where g <= 0), and x, y restricted to the pixels SPEC 7 fits on: all of them for depth, those
    with g > 0 AND p > 0 for disparity and log space."""
    if space == "depth":
        return p, g, g
    y_all = _scratch.get("target", g.size)
    if space == "disparity":
        np.divide(1.0, g, out=y_all)
    else:
        np.log(g, out=y_all)
    if p.size and min(float(np.min(p)), float(np.min(g))) > 0:  # the usual case: every pixel fits
        return p, y_all, y_all
    fit = (p > 0) & (g > 0)  # NaN compares False: excluded
    return p[fit], y_all[fit], y_all


def clip_range(min_depth: float, max_depth: float) -> tuple[float, float]:
    """(lo, hi) of the final clip: [min_depth, max_depth], then >= DEPTH_FLOOR."""
    return max(min_depth, DEPTH_FLOOR), max(max_depth, DEPTH_FLOOR)


def align_pixels(
    p: np.ndarray, s: float, t: float, space: str, min_depth: float, max_depth: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Aligned metric depth of the gathered pixels p given the fit (s, t), clipped as SPEC 7 says,
    and, in log space, its natural log (else None). Scratch arrays."""
    lo, hi = clip_range(min_depth, max_depth)
    d = _scratch.get("d", p.size)
    if space == "none":
        return np.clip(p, lo, hi, out=d), None
    a = np.multiply(p, s, out=d)
    a += t
    if space == "depth":
        return np.clip(a, lo, hi, out=d), None
    if space == "disparity":
        np.maximum(a, DISPARITY_MIN, out=a)
        return np.clip(np.divide(1.0, a, out=a), lo, hi, out=d), None
    # log: min(max(exp(min(a, 5)), lo), hi) computed as exp of a clip in log space
    log_lo, log_hi = math.log(lo), math.log(hi)
    log_d = _scratch.get("log_d", p.size)
    if log_lo > LOG_DEPTH_CAP:
        log_d.fill(log_lo)
    else:
        np.clip(a, log_lo, min(LOG_DEPTH_CAP, log_hi), out=log_d)
    return np.exp(log_d, out=d), log_d


def metric_sums(d: np.ndarray, g: np.ndarray, log_d: np.ndarray | None, log_g: np.ndarray | None) -> np.ndarray:
    """Sums behind the 8 depth metrics over gathered pixels (d aligned metric depth, g ground
    truth, optional precomputed natural logs of both): [sum |d-g|/g, sum (d-g)^2/g, sum (d-g)^2,
    sum (ln d - ln g)^2, sum |ln d - ln g|, then the counts below each delta threshold].
    NaN/inf appear when an input is NaN/inf or <= 0. Overwrites d, log_d and log_g.

    delta_k compares |ln d - ln g| with ln(1.25^k) (`LOG_DELTA_THRESHOLDS`) instead of max(d/g,
    g/d) with 1.25^k: the same pixels except within ~1e-16 relative of a threshold.
    """
    n = d.size
    if log_g is None:
        log_g = np.log(g, out=_scratch.get("log_g", n))
    if log_d is None:
        log_d = np.log(d, out=_scratch.get("log_d", n))
    dlog = np.subtract(log_d, log_g, out=log_d)
    sum_dlog2 = dot(dlog, dlog)
    adlog = np.abs(dlog, out=dlog)
    below = _scratch.get("below", n, bool)
    counts = [np.count_nonzero(np.less(adlog, thr, out=below)) for thr in LOG_DELTA_THRESHOLDS]
    diff = np.subtract(d, g, out=d)
    rel = np.divide(diff, g, out=log_g)  # signed (d - g) / g
    sums = [0.0, dot(rel, diff), dot(diff, diff), sum_dlog2, float(np.add.reduce(adlog)), *counts]
    sums[0] = float(np.add.reduce(np.abs(rel, out=rel)))
    return np.array(sums)


def metric_row(sums: np.ndarray, n: int) -> np.ndarray:
    """The 8 depth metrics (DEPTH_METRIC_NAMES order, fractions) from `metric_sums` over n pixels."""
    return np.array([
        sums[0] / n, sums[1] / n, math.sqrt(sums[2] / n), math.sqrt(sums[3] / n),
        sums[4] / (n * math.log(10.0)), sums[5] / n, sums[6] / n, sums[7] / n,
    ])


def score_image(
    pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, space: str | None = None,
    min_depth: float = 1e-5, max_depth: float = math.inf,
) -> tuple[np.ndarray, str | None]:
    """Depth metrics of one image over its valid pixels.

    pred, gt, valid: 2-D arrays of one shape (pred any float dtype; gt in metres). space None:
    pred is aligned metric depth, scored as is; else pred is aligned first in that space
    (ALIGNMENT_SPACES, SPEC 7) and clipped to [min_depth, max_depth] and >= 1e-6.
    Returns (8 float64 values in DEPTH_METRIC_NAMES order, None) or, for an image that cannot be
    scored, (8 NaNs, the reason: no valid pixel, no pixel usable for the fit, a NaN/inf or
    non-positive ground truth or prediction at a valid pixel).
    """
    n = int(np.count_nonzero(valid))
    if n == 0:
        return _NAN_ROW.copy(), "no valid pixel"
    fitting = space not in (None, "none")
    with np.errstate(all="ignore"):
        fit = LineFit()
        p, g = _scratch.get("p", n), _scratch.get("g", n)
        target = _scratch.get("target", n)  # 1/g or ln g (disparity, log)
        for part, p_c, g_c in gathered_chunks(pred, gt, valid, p, g):  # pass 1: gather, cast, fit sums
            if space in ("log", "disparity"):  # fit on g > 0 and p > 0 only (SPEC 7; NaN compares False)
                y_c = (np.log if space == "log" else np.reciprocal)(g_c, out=target[part])
                if min(float(np.min(p_c)), float(np.min(g_c))) > 0:
                    fit.add(p_c, y_c)
                else:
                    usable = (p_c > 0) & (g_c > 0)
                    fit.add(p_c[usable], y_c[usable])
            elif space == "depth":
                fit.add(p_c, g_c)
        log_g = target if space == "log" else None
        s = t = 0.0
        if fitting:
            if fit.n == 0:
                return _NAN_ROW.copy(), "no pixel usable for the alignment fit (g > 0 and p > 0)"
            s, t = fit.solve()
        sums = np.zeros(len(DEPTH_METRIC_NAMES))
        for start in range(0, n, CHUNK):  # pass 2: align and score, chunk by chunk (in cache)
            part = slice(start, start + CHUNK)
            lg = None if log_g is None else log_g[part]
            if space is None:
                sums += metric_sums(p[part], g[part], None, lg)
            else:
                d, log_d = align_pixels(p[part], s, t, space, min_depth, max_depth)
                sums += metric_sums(d, g[part], log_d, lg)
        row = metric_row(sums, p.size)
    if bool(np.isfinite(row).all()):  # NaN/inf or <= 0 anywhere in d or g make some value NaN/inf
        return row, None
    reasons = []
    p, g = gather_valid(pred, gt, valid)  # again: scoring overwrote the scratch arrays
    with np.errstate(invalid="ignore"):
        if not bool((np.isfinite(g) & (g > 0)).all()):
            reasons.append("ground truth NaN/inf or <= 0 at a valid pixel")
        pred_ok = np.isfinite(p) if space is not None else np.isfinite(p) & (p > 0)
    if not bool(pred_ok.all()):
        reasons.append("prediction NaN/inf" + ("" if space is not None else " or <= 0") + " at a valid pixel")
    return _NAN_ROW.copy(), "; ".join(reasons) or "non-finite metric value"
