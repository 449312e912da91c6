"""Array kernels of the Hypersim reader (SPEC sections 5, 6): tone mapping, the exact 90th
percentile, the inward-normal test, float16 -> float32 conversion, per-thread scratch buffers.

`datamodules/hypersim.py` re-exports the public names; `datamodules/hypersim_raw.py` builds the
raw reader's samples from them. Every fast kernel gives the bytes of the straightforward formula
it replaces (the tests write those formulas out again).
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np
import torch

from datamodules.hypersim_layout import FOCAL_AT_1024
from datamodules.io_utils import lookup

FLIP_THRESHOLD = -1e-3
"""A normal n is inward when n . u is below this, u the unit vector from the point to the camera
(world frame, as Marigold)."""

_SCRATCH = threading.local()


def scratch(slot: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A reusable uninitialised buffer of this thread, one per `slot` name, reallocated when the shape
    or dtype changes. Only for arrays that never leave the call that asks for them (a later call
    overwrites them): no fresh image-sized temporaries per frame. Held for the thread's lifetime:
    ~45 MB per reading thread or DataLoader worker for 1024x768 Hypersim frames."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buf = buffers.get(slot)
    if buf is None or buf.shape != tuple(shape) or buf.dtype != np.dtype(dtype):
        buf = buffers[slot] = np.empty(shape, dtype)
    return buf


def to_float32(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """`a` as float32 (exact). float16 goes through torch's vectorised conversion (NumPy's is ~10x
    slower); NaN payloads may differ from NumPy's cast, every other bit pattern is the same."""
    if out is None:
        out = np.empty(a.shape, np.float32)
    if a.dtype == np.float16:
        torch.from_numpy(out).copy_(torch.from_numpy(a))
    else:
        np.copyto(out, a, casting="unsafe")
    return out


def brightness(px: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(H,W) float32 0.3 R + 0.59 G + 0.11 B of float32 (H,W,3) `px`, summed in that order (SPEC 6)."""
    out = np.multiply(px[..., 0], np.float32(0.3), out=out)
    out += np.multiply(px[..., 1], np.float32(0.59), out=scratch("brightness_term", out.shape, np.float32))
    out += np.multiply(px[..., 2], np.float32(0.11), out=scratch("brightness_term", out.shape, np.float32))
    return out


def hypersim_intrinsics(height: int, width: int) -> np.ndarray:
    """(3,3) K of a Hypersim frame: f = 886.81 * W / 1024, principal point at the centre ((W-1)/2, (H-1)/2)."""
    f = FOCAL_AT_1024 * width / 1024.0
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


@functools.lru_cache(maxsize=8)
def ray_length(height: int, width: int) -> np.ndarray:
    """(H,W) float32 ||(x, y, f)|| of `planar_depth_from_distance` (read-only, cached per size)."""
    f = FOCAL_AT_1024 * width / 1024.0
    x = np.linspace(-width / 2 + 0.5, width / 2 - 0.5, width, dtype=np.float32)[None, :]
    y = np.linspace(-height / 2 + 0.5, height / 2 - 0.5, height, dtype=np.float32)[:, None]
    out = np.sqrt(x * x + y * y + np.float32(f * f))
    out.flags.writeable = False
    return out


def planar_depth_from_distance(distance: np.ndarray) -> np.ndarray:
    """Planar z-depth (metres) = distance * f / ||(x, y, f)||, x = linspace(-W/2+0.5, W/2-0.5, W)."""
    h, w = distance.shape
    f = FOCAL_AT_1024 * w / 1024.0
    return (distance.astype(np.float32) * np.float32(f) / ray_length(h, w)).astype(np.float32, copy=False)


def _lerp(a: np.float32, b: np.float32, gamma: float) -> np.float32:
    """NumPy's percentile interpolation (numpy.lib._function_base_impl._lerp) in float32."""
    diff = b - a
    if gamma >= 0.5:
        return b - diff * np.float32(1 - gamma)
    return a + diff * np.float32(gamma)


def percentile90(values: np.ndarray, count: int | None = None) -> np.float32:
    """np.nanpercentile(values, 90) (method 'linear': np.percentile of the non-NaN values) of a
    float32 array, bit for bit, without a full sort.

    The ranks k, k+1 it interpolates are bracketed by two values lo < hi of a strided sample of
    ~8192 values; counting the values < lo, <= lo, < hi and <= hi places both ranks exactly (on lo,
    on hi, or among the few values strictly between, which are then partitioned). A bracket that
    misses them (counted, never assumed) falls back to np.nanpercentile. `count`: the number of
    non-NaN values when the caller knows it (saves a pass)."""
    flat = values.reshape(-1)
    n = int(np.count_nonzero(flat == flat)) if count is None else count  # NaN != NaN
    step = (flat.size // 8192) | 1  # odd: the sample does not alias a power-of-two image width
    sample = np.sort(flat[::step])  # NaN sort last
    m = int(np.count_nonzero(sample == sample))
    if n < 4096 or m < 1024:
        return np.nanpercentile(values, 90)
    virtual = (n - 1) * 0.9  # as numpy: (n - 1) * q in float64
    k = math.floor(virtual)
    at = k * m // n
    lo, hi = sample[max(0, at - 128)], sample[min(m - 1, at + 129)]  # +-128 of ~8192: ~5 sd of a random sample
    below_lo, upto_lo = np.count_nonzero(flat < lo), np.count_nonzero(flat <= lo)
    below_hi, upto_hi = np.count_nonzero(flat < hi), np.count_nonzero(flat <= hi)
    if not below_lo <= k < upto_hi - 1:
        return np.nanpercentile(values, 90)
    between = None

    def order_statistic(r: int) -> np.float32:  # the r-th smallest value, below_lo <= r < upto_hi
        nonlocal between
        if r < upto_lo:
            return lo
        if r >= below_hi:
            return hi
        if between is None:  # ranks upto_lo .. below_hi - 1, in order once partitioned at k and k+1
            between = flat[np.logical_and(flat > lo, flat < hi)]
            between.partition([i - upto_lo for i in (k, k + 1) if upto_lo <= i < below_hi])
        return between[r - upto_lo]

    return _lerp(order_statistic(k), order_statistic(k + 1), virtual - k)


def tone_scale(hdr: np.ndarray, valid: np.ndarray):
    """The exposure scale of Hypersim's tone mapping (SPEC 6): 0.8^2.2 / p90 of the brightness
    0.3R+0.59G+0.11B (float32) over the (H,W) `valid` pixels of (H,W,3) HDR, 0 if p90 < 1e-4.
    float16 HDR is taken through nan_to_num (NaN -> 0, inf -> float32 max) where a valid pixel is
    not finite, as the release's float16 tone mapping did; float32 HDR as is (a NaN p90 -> NaN)."""
    px = to_float32(hdr, scratch("tone_px", hdr.shape, np.float32))
    with np.errstate(invalid="ignore", over="ignore"):
        b = brightness(px, scratch("tone_brightness", hdr.shape[:-1], np.float32))
    finite = np.isfinite(b)
    if finite.all() or finite[valid].all():
        return exposure_scale(b, valid)
    if hdr.dtype == np.float16:
        with np.errstate(over="ignore"):
            b = brightness(np.nan_to_num(px, copy=False), b)
    p90 = np.percentile(b[valid], 90)
    return 0.0 if p90 < 1e-4 else 0.8**2.2 / p90


def exposure_scale(brightness: np.ndarray, valid: np.ndarray):
    """0.8^2.2 / p90 of the (H,W) float32 `brightness` over the `valid` pixels, where it must be
    finite; 0 if p90 < 1e-4 (np.float32, as np.percentile's result divides it). Overwrites
    `brightness` with NaN at the other pixels."""
    n = int(np.count_nonzero(valid))
    if n < valid.size:
        np.copyto(brightness, np.float32(np.nan), where=~valid)
    p90 = percentile90(brightness, count=n)  # finite at the n valid pixels, NaN elsewhere
    return 0.0 if p90 < 1e-4 else 0.8**2.2 / p90


def apply_tone(hdr: np.ndarray, scale) -> np.ndarray:
    """clip(max(scale * hdr, 0) ^ (1/2.2), 0, 1) in float32: HDR -> [0, 1] (SPEC 6)."""
    return np.clip(np.maximum(scale * hdr.astype(np.float32), 0.0) ** (1.0 / 2.2), 0.0, 1.0).astype(np.float32)


def tone_map(hdr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Hypersim's tone mapping (SPEC 6): (H,W,3) linear HDR -> (H,W,3) float32 in [0, 1]."""
    return apply_tone(hdr, tone_scale(hdr, valid))


FLOAT16_VALUES = np.nan_to_num(np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32))
"""Every float16 bit pattern as float32, NaN -> 0 and inf -> +-float32 max (as np.nan_to_num)."""


def tone_table_uint8(scale) -> np.ndarray:
    """(65536,) uint8 round(apply_tone(x, scale) * 255) for x = FLOAT16_VALUES[bits]: the tone-mapped
    byte of every float16 bit pattern. Patterns with the sign bit set (negative, -0, negative NaN)
    map to 0 for any scale >= 0 (max(scale * x, 0) = 0), so only the first half is evaluated."""
    values = FLOAT16_VALUES if not scale >= 0 else FLOAT16_VALUES[: 1 << 15]  # NaN or negative: all
    table = np.zeros(1 << 16, np.uint8)
    with np.errstate(over="ignore"):  # scale * float32 max -> inf -> 255, as on the image
        table[: values.size] = np.round(apply_tone(values, scale) * 255.0).astype(np.uint8)
    return table


def tone_map_uint8(hdr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 round(tone_map(nan_to_num(hdr), valid) * 255); `hdr` finite at `valid` pixels.

    float16 HDR (the release's) goes through a 65536-entry table of the same float32 formula
    indexed by the bit patterns: the same bytes, without a float pass over the image."""
    scale = tone_scale(hdr, valid)  # valid pixels are finite: nan_to_num leaves them unchanged
    if hdr.dtype == np.float16:
        return lookup(tone_table_uint8(scale), hdr.view(np.uint16))
    return np.round(apply_tone(np.nan_to_num(hdr.astype(np.float32)), scale) * 255.0).astype(np.uint8)


def finite_pixels(a: np.ndarray) -> np.ndarray:
    """(H,W) bool: every channel of the (H,W,C) array is finite (float16: from the exponent bits)."""
    if a.dtype == np.float16:
        bits = a.view(np.uint16)
        finite = (bits[..., 0] & 0x7C00) != 0x7C00
        for c in range(1, a.shape[-1]):
            finite &= (bits[..., c] & 0x7C00) != 0x7C00
        return finite
    return np.isfinite(a).all(-1)


def inward_normals(normal_world: np.ndarray, position: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """(H,W) bool: True where the world-frame normal points away from the camera, n . u < FLIP_THRESHOLD
    with u = (camera - point) / ||camera - point|| (Marigold), in float64 (SPEC 5). Those normals are
    flipped to face outward. normal_world, position (H,W,3); camera (3,)."""
    facing = np.zeros(position.shape[:2])
    dist2 = np.zeros(position.shape[:2])
    for c in range(3):  # channel by channel: no (H,W,3) float64 temporaries
        to_cam = camera[c] - position[..., c].astype(np.float64)
        facing += normal_world[..., c].astype(np.float64) * to_cam
        dist2 += to_cam * to_cam
    with np.errstate(invalid="ignore"):
        return facing < FLIP_THRESHOLD * np.sqrt(dist2)  # n . u < T  <=>  n . (camera - point) < T ||camera - point||


def _abs_max(a: np.ndarray) -> float:
    """max |a| over the non-NaN values of float32 `a` (inf if any is infinite; 0 if all NaN)."""
    with np.errstate(invalid="ignore"):
        top, bottom = float(np.fmax.reduce(a, axis=None)), float(np.fmin.reduce(a, axis=None))
    m = max(top, -bottom)  # NaN only when every value is NaN (then both are NaN)
    return m if m == m else 0.0


def block_rows(width: int) -> int:
    """Rows of a block of ~128K pixels: float32 temporaries of a block stay in cache (the ops of the
    fast kernels ran ~2x faster in such blocks than over a whole 1024x768 frame here)."""
    return max(1, (1 << 17) // max(1, width))


def inward_normals_fast(
    normal_world: np.ndarray, position: np.ndarray, camera: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """inward_normals(normal_world, position, camera), the same booleans (into `out` if given), for
    float16 (H,W,3) inputs: a float32 estimate decides the clear pixels, the float64 test the others.

    With t = camera - point, inward_normals is F < G with F = n . t and G = T |t| (T = FLIP_THRESHOLD),
    both in float64. In a block of rows let a = max|camera| + max|point| and N = max|n| (NaN
    ignored). The float32 f of F (camera rounded to float32, a subtraction, a product and two sums,
    each within 2^-24 relative) is within 15.01 * 2^-24 * N * a of F, the float64 F within ~2^-50 N a,
    and |G| <= |T| sqrt(3) a < 0.002 a. So with e = 2^-18 N a (4x those errors): f > e means F > 0 >= G
    (not inward) and f < -(e + 0.002 a) means F < G (inward). Pixels in between (surfaces seen
    nearly edge-on: few) and blocks holding an infinite value go through the float64 test; a NaN
    input gives a NaN f and False, as in float64."""
    if normal_world.dtype != np.float16 or position.dtype != np.float16:
        result = inward_normals(normal_world, position, camera)
        if out is None:
            return result
        out[...] = result
        return out
    camera = np.asarray(camera, dtype=np.float64)
    h, w = position.shape[:2]
    flip = np.empty((h, w), bool) if out is None else out
    step = block_rows(w)
    cam_row = np.tile(camera.astype(np.float32), w)  # camera repeated along a row: a long inner loop
    cam_max = float(np.abs(camera).max()) if camera.size else 0.0
    for r0 in range(0, h, step):
        rows = slice(r0, min(h, r0 + step))
        shape = (rows.stop - r0, w, 3)
        n = to_float32(normal_world[rows], scratch("inward_n", shape, np.float32))
        t = to_float32(position[rows], scratch("inward_t", shape, np.float32))
        a = cam_max + _abs_max(t)
        e = 2.0**-18 * _abs_max(n) * a + 2.0**-100  # + absolute slack for float32 underflow
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(cam_row, t.reshape(shape[0], -1), out=t.reshape(shape[0], -1))  # t = camera - point
            t *= n
            f = np.add(t[..., 0], t[..., 1], out=scratch("inward_f", shape[:2], np.float32))
            f += t[..., 2]
        block = flip[rows]
        np.less(f, 0, out=block)
        if math.isfinite(e) and math.isfinite(a):
            lo, hi = np.float32(-(e + 0.002 * a) * (1 + 2.0**-20)), np.float32(e * (1 + 2.0**-20))
            unsure = np.logical_and(f >= lo, f <= hi, out=scratch("inward_unsure", shape[:2], bool))
        else:
            unsure = np.ones(shape[:2], bool)
        if unsure.any():
            with np.errstate(invalid="ignore"):  # inf - inf in a block with an infinite coordinate
                block[unsure] = inward_normals(normal_world[rows][unsure][None], position[rows][unsure][None], camera)[0]
    return flip
