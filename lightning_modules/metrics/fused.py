"""Depth metrics of one image in two passes over its valid pixels, NumPy float64 (SPEC 7).

`score_image` is the per-pixel work of the metric suite. Pass 1 (`fit_pass`) casts the valid
pixels to float64 (the one cast), takes the fit target (ln g, 1/g or g) and sums what the
alignment fit needs; pass 2 (`score_pass`) aligns and scores, CHUNK pixels at a time so that the
temporaries stay in cache. Each step is one NumPy call over a block (ln and exp: NumPy's or torch's,
whichever is vectorised on the CPU, `pixels.log_into` / `exp_inplace`); the work per pixel is kept
small by reusing values: ln g is taken once (fit target and log ratio), the log ratio
e = ln d - ln g gives rmse_log, log10 and the deltas, and in log space the relative error comes
from u = exp(e) - 1 = (d - g)/g (one exp, no division), with d - g = g*u. Clipping is skipped
when the range of the prediction shows it cannot change a value (rounding is monotone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from lightning_modules.metrics.pixels import (
    DEPTH_METRIC_NAMES,
    DISPARITY_MIN,
    LOG_DELTA_THRESHOLDS,
    LOG_DEPTH_CAP,
    cast_into,
    chunk_size,
    chunks,
    clip_range,
    dot,
    exp_inplace,
    fit_line,
    gather_valid,
    log_into,
    scratch,
    valid_values,
)

FIT_CONDITION = 1e-4
"""Pass 1 sums x and x^2 about 0, which loses digits when the prediction's spread is small next
to its mean: the sums are used when var(x) > FIT_CONDITION * mean(x^2) (then the cancellation
costs < ~1e-11 relative), else the fit is redone about the first pixel (`pixels.LineFit`, exact:
a constant prediction gives s = 0)."""
NAN_ROW = np.full(len(DEPTH_METRIC_NAMES), math.nan)
NO_FIT = "no pixel usable for the alignment fit (g > 0 and p > 0)"


@dataclass
class FitPass:
    """What pass 1 leaves for pass 2: the valid pixels' prediction and ground truth as given
    (`pixels.valid_values`: 1-D, or 2-D for a box; input dtypes), y = ln g in float64 in log space
    (a scratch array; else None), the fit (s, t) (None: no pixel usable; (1, 0) without a fit)
    and the prediction's (min, max) in each block of `pixels.chunks` (NaN: unknown; empty when
    scoring as is)."""

    p_raw: np.ndarray
    g_raw: np.ndarray
    y: np.ndarray | None
    st: tuple[float, float] | None
    x_ranges: list[tuple[float, float]]


def fit_pass(p_raw: np.ndarray, g_raw: np.ndarray, space: str | None) -> FitPass:
    """Pass 1 over the valid pixels: cast, range, fit target, fit sums, block by block.

    The fit is least squares of y ~ s*x + t with x = p and y = g (depth), 1/g (disparity) or ln g
    (log), on all pixels for depth and on those with p > 0 and g > 0 otherwise (SPEC 7). The sums
    run about 0, so a pixel with p = 0 adds only to the sum of y and the count (both taken over
    an indicator of p > 0, in the blocks holding such pixels); p < 0 or NaN somewhere, or an
    ill-conditioned x, sends the fit to `LineFit` on the pixels it selects (exact: about the
    first pixel)."""
    n = p_raw.size
    if space is None:
        return FitPass(p_raw, g_raw, None, (1.0, 0.0), [])
    fitting = space != "none"
    y = scratch.get("y", n) if space == "log" else None
    m = chunk_size(p_raw)
    x_buf, y_buf, fits_buf = scratch.get("x", m), scratch.get("e", m), scratch.get("a", m)
    sums = np.zeros(5)  # count, sum x, sum y, sum x^2, sum x*y
    x_ranges, fast = [], True
    for part, p_block, g_block in chunks(p_raw, g_raw):
        k = part.stop - part.start
        xc = cast_into(x_buf[:k], p_block)
        lo, hi = float(np.minimum.reduce(xc)), float(np.maximum.reduce(xc))
        x_ranges.append((lo, hi) if lo == lo and hi == hi else (math.nan, math.nan))
        if not fitting:
            continue
        yc = y[part] if space == "log" else y_buf[:k]
        if space == "log":  # the one cast, then the log in place
            log_into(yc, g_block)
        elif space == "disparity":
            np.divide(1.0, g_block, out=yc.reshape(g_block.shape), dtype=np.float64)
        else:
            cast_into(yc, g_block)
        if not fast:
            continue
        if space == "depth" or lo > 0:
            sums += (k, np.add.reduce(xc), np.add.reduce(yc), dot(xc, xc), dot(xc, yc))
        elif lo == 0:  # decoded predictions saturated at 0: left out by an indicator
            fits = np.greater(xc, 0.0, out=fits_buf[:k], casting="unsafe")
            sums += (np.add.reduce(fits), np.add.reduce(xc), dot(yc, fits), dot(xc, xc), dot(xc, yc))
        else:  # p < 0 or NaN: the exact fit below
            fast = False
    if not fitting:
        return FitPass(p_raw, g_raw, None, (1.0, 0.0), x_ranges)
    count, sx, sy, sxx, sxy = (float(v) for v in sums)
    var = sxx - sx * sx / count if count else math.nan
    if fast and var > FIT_CONDITION * sxx:  # NaN compares False
        s = (sxy - sx * sy / count) / var
        return FitPass(p_raw, g_raw, y, (s, (sy - s * sx) / count), x_ranges)
    x, g = cast_into(scratch.get("p", n), p_raw), cast_into(scratch.get("g", n), g_raw)  # the exact fit
    if space == "depth":
        return FitPass(p_raw, g_raw, y, fit_line(x, g), x_ranges)
    usable = (x > 0) & (g > 0)  # NaN compares False: excluded
    st = fit_line(x[usable], log_into(g, g)[usable] if space == "log" else np.divide(1.0, g, out=g)[usable])
    return FitPass(p_raw, g_raw, y, st if usable.any() else None, x_ranges)


def _affine_range(s: float, t: float, x_range: tuple[float, float]) -> tuple[float, float]:
    """(min, max) of fl(fl(s*x) + t) over x in x_range, as NumPy computes it elementwise (NaN if unknown)."""
    a, b = s * x_range[0] + t, s * x_range[1] + t
    return (a, b) if a <= b else (b, a) if b < a else (math.nan, math.nan)


def _clip_bounds(lo: float, hi: float, v_min: float, v_max: float) -> tuple[float, float] | None:
    """(lo, hi) with -inf / inf for a bound that cannot change a value known to lie in [v_min,
    v_max] (NaN: unknown); None if neither can (np.clip with either gives the same values)."""
    bounds = (-math.inf if lo <= v_min else lo), (math.inf if v_max <= hi else hi)
    return None if bounds == (-math.inf, math.inf) else bounds


def _clip(a: np.ndarray, bounds: tuple[float, float] | None) -> None:
    """Clip a in place to `bounds` (`_clip_bounds`); np.clip, which is twice as fast as
    np.minimum with a scalar here."""
    if bounds is not None:
        np.clip(a, bounds[0], bounds[1], out=a)


def _log_ratio_sums(e: np.ndarray, abs_e: np.ndarray, below: np.ndarray, sums: np.ndarray) -> None:
    """Add sum e^2, sum |e| and the counts of |e| below each LOG_DELTA_THRESHOLDS to sums[3:8],
    e = ln d - ln g; abs_e (float64) and below (bool) are scratch of e's length."""
    sums[3] += dot(e, e)
    np.abs(e, out=abs_e)
    sums[4] += np.add.reduce(abs_e)
    for k, thr in enumerate(LOG_DELTA_THRESHOLDS):
        sums[5 + k] += np.count_nonzero(np.less(abs_e, thr, out=below))


def score_pass(fit: FitPass, space: str | None, lo: float, hi: float) -> np.ndarray:
    """Pass 2: align the valid pixels with fit.st in `space`, clip to [lo, hi] (space None: score
    as is), and return the sums behind the 8 metrics: [sum |d-g|/g, sum (d-g)^2/g, sum (d-g)^2,
    sum (ln d - ln g)^2, sum |ln d - ln g|, then the counts below each delta threshold].
    NaN/inf appear when an input is NaN/inf or <= 0.

    delta_k compares |ln d - ln g| with ln(1.25^k) (`LOG_DELTA_THRESHOLDS`) instead of max(d/g,
    g/d) with 1.25^k: the same pixels except within ~1e-16 relative of a threshold."""
    s, t = fit.st
    m = chunk_size(fit.p_raw)
    x_buf, e_buf, a_buf = (scratch.get(name, m) for name in ("x", "e", "a"))
    below_buf = scratch.get("below", m, bool)
    sums = np.zeros(len(DEPTH_METRIC_NAMES))
    if space == "log":  # min(max(exp(min(a, 5)), lo), hi) computed as exp of a clip in log space
        log_lo, log_hi = math.log(lo), min(LOG_DEPTH_CAP, math.log(hi))
    for (part, p_block, g_block), x_range in zip(chunks(fit.p_raw, fit.g_raw), fit.x_ranges or repeat((math.nan,) * 2)):
        k, shape = part.stop - part.start, p_block.shape
        e, below = e_buf[:k], below_buf[:k]
        a_min, a_max = _affine_range(s, t, x_range)
        if space == "log":
            bounds = _clip_bounds(log_lo, log_hi, a_min, a_max)
        elif space == "disparity":
            floor = _clip_bounds(DISPARITY_MIN, math.inf, a_min, a_max)
            bounds = _clip_bounds(lo, hi, 1.0 / max(a_max, DISPARITY_MIN), 1.0 / max(a_min, DISPARITY_MIN))
        else:  # depth: s*x + t; none: x, s = 1, t = 0; None: no clip
            bounds = _clip_bounds(lo, hi, a_min, a_max) if space else None
        if space == "log":
            a = x_buf[:k]  # the prediction is read by the multiply: x's scratch is free
            if log_lo > LOG_DEPTH_CAP:
                e.fill(log_lo)
            else:
                np.multiply(p_block, s, out=e.reshape(shape), dtype=np.float64)
                e += t
                _clip(e, bounds)
            e -= fit.y[part]  # ln d - ln g
            _log_ratio_sums(e, a, below, sums)
            u = exp_inplace(e)
            u -= 1.0  # (d - g) / g
            w = np.multiply(g_block, u.reshape(shape), out=a.reshape(shape), dtype=np.float64).reshape(-1)  # d - g
        else:
            a = a_buf[:k]
            d = cast_into(x_buf[:k], p_block)  # aligned depth, in place
            if space in ("depth", "disparity"):
                np.multiply(d, s, out=d)
                d += t
                if space == "disparity":
                    _clip(d, floor)
                    np.divide(1.0, d, out=d)
            _clip(d, bounds)
            log_into(e, d)
            e -= log_into(a, g_block)  # ln d - ln g
            _log_ratio_sums(e, a, below, sums)
            w = np.subtract(d.reshape(shape), g_block, out=d.reshape(shape), dtype=np.float64).reshape(-1)  # d - g
            u = np.divide(w.reshape(shape), g_block, out=a.reshape(shape), dtype=np.float64).reshape(-1)  # (d - g) / g
        sums[1] += dot(u, w)
        sums[2] += dot(w, w)
        sums[0] += np.add.reduce(np.abs(u, out=u))
    return sums


def metric_row(sums: np.ndarray, n: int) -> np.ndarray:
    """The 8 depth metrics (DEPTH_METRIC_NAMES order, fractions) from `score_pass`'s sums over n pixels."""
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
    p_raw, g_raw = valid_values(pred, gt, valid)
    n = p_raw.size
    if n == 0:
        return NAN_ROW.copy(), "no valid pixel"
    with np.errstate(all="ignore"):
        fit = fit_pass(p_raw, g_raw, space)
        if fit.st is None:
            return NAN_ROW.copy(), NO_FIT
        row = metric_row(score_pass(fit, space, *clip_range(min_depth, max_depth)), n)
    if bool(np.isfinite(row).all()):  # NaN/inf or <= 0 anywhere in d or g make some value NaN/inf
        return row, None
    p, g = gather_valid(pred, gt, valid)  # again: scoring overwrote the scratch arrays
    with np.errstate(invalid="ignore"):
        if space in ("log", "disparity") and not bool(((p > 0) & (g > 0)).any()):
            return NAN_ROW.copy(), NO_FIT  # pass 1 counts p > 0 only: g <= 0 everywhere shows here
        reasons = []
        if not bool((np.isfinite(g) & (g > 0)).all()):
            reasons.append("ground truth NaN/inf or <= 0 at a valid pixel")
        pred_ok = np.isfinite(p) if space is not None else np.isfinite(p) & (p > 0)
    if not bool(pred_ok.all()):
        reasons.append("prediction NaN/inf" + ("" if space is not None else " or <= 0") + " at a valid pixel")
    return NAN_ROW.copy(), "; ".join(reasons) or "non-finite metric value"
