"""Helpers of the per-pixel depth work of the metric suite, in NumPy float64 (SPEC 7).

`fused.score_image` makes the two passes over an image's valid pixels; this module holds what it
and `alignment` share: gathering the valid pixels (a map whose pixels are all valid is read in
place, otherwise the valid pixels are gathered once, in the input dtype), the line fit,
single-threaded dot products and per-thread scratch arrays. Scratch arrays are reused from image
to image (on this kind of machine a fresh multi-megabyte array costs more in page faults than
the arithmetic done on it), and BLAS is only called on blocks it runs on one thread (OpenBLAS's
threads spin-wait on a shared machine).

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
DOT_BLOCK = 8192
"""Elements per BLAS dot: OpenBLAS runs ddot on one thread up to 10000 elements; above, its
threads spin-wait and one call took ~7 ms instead of ~5 us when the cores were shared."""
CHUNK = 1 << 16
"""Valid pixels cast, aligned and scored per block (`chunks`; 512 KiB per float64 temporary):
measured fastest here, between the ~45 NumPy calls a block costs (2^14, 2^15: slower) and the
caches (2^18, 2^19: slower); it also bounds the temporaries of huge maps."""
RETAIN_MAX = 1 << 22
"""Scratch arrays up to this many elements (32 MiB in float64) are kept between images."""

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


scratch = _Scratch()


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Dot product of two contiguous float64 1-D arrays, single-threaded: BLAS ddot on at most
    DOT_BLOCK elements per call (one `np.vecdot` call over rows of DOT_BLOCK, one for the tail)."""
    n = a.size
    if n <= DOT_BLOCK:
        return float(np.dot(a, b))
    k = n - n % DOT_BLOCK
    total = float(np.add.reduce(np.vecdot(a[:k].reshape(-1, DOT_BLOCK), b[:k].reshape(-1, DOT_BLOCK))))
    return total + float(np.dot(a[k:], b[k:])) if k < n else total


def as_numpy(x: torch.Tensor) -> np.ndarray:
    """A NumPy view (CPU) or host copy (other devices) of a tensor; half types become float32."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if x.requires_grad:
        x = x.detach()
    return x.numpy() if x.device.type == "cpu" else x.cpu().numpy()


def valid_box(v2: np.ndarray, n: int) -> tuple[slice, slice] | None:
    """(rows, cols) if the n > 0 True pixels of the contiguous 2-D bool mask v2 fill exactly that
    box (an evaluation crop over dense ground truth), else None. Cheap for other masks: it reads
    the mask up to the first False after the first True, then at most the candidate box."""
    width = v2.shape[1]
    first = int(np.argmax(v2.reshape(-1)))
    r0, c0 = divmod(first, width)
    row = v2[r0, c0:]
    w = int(np.argmin(row))  # the first False of the row, or 0 if there is none
    w = w if not row[w] else row.size
    if n % w or r0 + n // w > v2.shape[0]:
        return None
    rows, cols = slice(r0, r0 + n // w), slice(c0, c0 + w)
    return (rows, cols) if np.count_nonzero(v2[rows, cols]) == n else None


def valid_values(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prediction and ground truth at the True pixels of `valid` (same 2-D shape), in their
    input dtypes and in row-major order: 1-D views of the maps when every pixel is valid, 2-D views
    of the box when the valid pixels fill one (`valid_box`), else two 1-D arrays gathered into this
    thread's scratch arrays (valid until the next call)."""
    v2 = np.ascontiguousarray(valid, dtype=bool)
    n = int(np.count_nonzero(v2))
    if n == v2.size:
        return np.ascontiguousarray(pred).reshape(-1), np.ascontiguousarray(gt).reshape(-1)
    box = valid_box(v2, n) if n else None
    if box is not None:
        return pred[box], gt[box]
    idx = np.flatnonzero(v2)
    p, g = (np.ascontiguousarray(x).reshape(-1) for x in (pred, gt))
    return tuple(np.take(x, idx, out=scratch.get(name, n, x.dtype), mode="clip") for name, x in (("p_raw", p), ("g_raw", g)))


def chunks(p_raw: np.ndarray, g_raw: np.ndarray):
    """Blocks of about CHUNK valid pixels of `valid_values`' two arrays (same shape): yields
    (elements, p block, g block), elements the blocks' slice of the row-major flattening; a 2-D
    box is cut into whole rows (at least one)."""
    if p_raw.ndim == 1:
        for start in range(0, p_raw.size, CHUNK):
            yield slice(start, min(start + CHUNK, p_raw.size)), p_raw[start : start + CHUNK], g_raw[start : start + CHUNK]
        return
    width = p_raw.shape[1]
    rows = max(1, CHUNK // width)
    for r in range(0, p_raw.shape[0], rows):
        p_block = p_raw[r : r + rows]
        yield slice(r * width, r * width + p_block.size), p_block, g_raw[r : r + rows]


def chunk_size(p_raw: np.ndarray) -> int:
    """The most elements `chunks` puts in one block of p_raw."""
    return min(p_raw.size, CHUNK if p_raw.ndim == 1 else max(1, CHUNK // p_raw.shape[1]) * p_raw.shape[1])


def cast_into(out: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Copy (and cast) a 1-D or 2-D block into the 1-D array `out` of its size, row-major; returns out."""
    np.copyto(out.reshape(block.shape), block)
    return out


def numpy_has_simd_log_exp() -> bool:
    """True when NumPy runs its AVX-512 (x86-64-v4) float64 log and exp on this CPU. Measured
    (`make bench-metrics`): with AVX-512 NumPy's take ~0.8 ns/element and torch's (SLEEF) ~2 ns;
    on an AVX2 CPU NumPy's take ~8 ns and torch's ~4 ns (elsewhere torch's are the vectorised ones)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    return bool(__cpu_features__.get("X86_V4", __cpu_features__.get("AVX512_SKX", False)))


NUMPY_LOG_EXP = numpy_has_simd_log_exp()
"""Which float64 ln/exp the metric suite uses (`log_into`, `exp_inplace`): NumPy's where they are
vectorised (AVX-512), else torch's. Fixed per machine, so a machine always gives the same numbers;
either is within a few ulp of the correctly rounded value."""


def log_into(out: np.ndarray, block: np.ndarray) -> np.ndarray:
    """ln of a 1-D or 2-D block (any float dtype) in float64, into the contiguous float64 1-D array
    `out` of its size (the block is cast to float64 first); returns out. NumPy's or torch's log
    (`NUMPY_LOG_EXP`)."""
    if NUMPY_LOG_EXP:
        np.log(block, out=out.reshape(block.shape), dtype=np.float64)
        return out
    t = torch.from_numpy(cast_into(out, block))
    torch.log(t, out=t)
    return out


def exp_inplace(a: np.ndarray) -> np.ndarray:
    """exp of the contiguous float64 1-D array `a`, in place (NumPy's or torch's, as `log_into`); returns a."""
    if NUMPY_LOG_EXP:
        return np.exp(a, out=a)
    t = torch.from_numpy(a)
    torch.exp(t, out=t)
    return a


LOG_DELTA_THRESHOLDS = tuple(log_into(np.empty(3), np.array(DELTA_THRESHOLDS)).tolist())
"""ln(1.25^k), by the log that takes ln d and ln g (`log_into`), so a ratio of exactly 1.25^k
against g = 1 is not counted as below."""


def gather_valid(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prediction and ground truth at the True pixels of `valid` (same 2-D shape), as two
    float64 1-D arrays in row-major order (views of this thread's scratch arrays: valid until the
    next call)."""
    p_raw, g_raw = valid_values(pred, gt, valid)
    return cast_into(scratch.get("p", p_raw.size), p_raw), cast_into(scratch.get("g", g_raw.size), g_raw)


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
        xs = np.subtract(x, self.x0, out=scratch.get("fit_x", x.size))
        ys = np.subtract(y, self.y0, out=scratch.get("fit_y", y.size))
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
    y_all = scratch.get("target", g.size)
    if space == "disparity":
        np.divide(1.0, g, out=y_all)
    else:
        log_into(y_all, g)
    if p.size and min(float(np.min(p)), float(np.min(g))) > 0:  # the usual case: every pixel fits
        return p, y_all, y_all
    fit = (p > 0) & (g > 0)  # NaN compares False: excluded
    return p[fit], y_all[fit], y_all


def clip_range(min_depth: float, max_depth: float) -> tuple[float, float]:
    """(lo, hi) of the final clip: [min_depth, max_depth], then >= DEPTH_FLOOR."""
    return max(min_depth, DEPTH_FLOOR), max(max_depth, DEPTH_FLOOR)
