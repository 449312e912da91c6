"""The raw Hypersim reader's per-frame path (SPEC sections 5, 6): one frame's six HDF5 files -> the
sample dict of `datamodules/__init__.py`, the same tensors as make_sample(decode_raw(...)) with
planar depth, bit for bit, in far fewer passes over the image.

How: the files are read with h5py's low-level calls into per-thread scratch buffers; float16 is
converted by torch (NumPy's cast is ~10x slower); the work runs in blocks of rows that stay in
cache; the tone map is one gather from a 65536-entry table (the float32 formula evaluated once per
float16 bit pattern, then make_sample's uint8 -> [-1, 1] step) straight into the (3,H,W) rgb; the
90th percentile is exact without a sort (`percentile90`); the inward-normal test runs in float32
with the float64 test only where float32 could be wrong (`inward_normals_fast`); the normals are
flipped and zeroed on their float32 sign bits in the (3,H,W) layout.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

from datamodules.hypersim_kernels import (
    block_rows,
    exposure_scale,
    hypersim_intrinsics,
    inward_normals_fast,
    ray_length,
    scratch,
    to_float32,
    tone_table_uint8,
)
from datamodules.hypersim_layout import FOCAL_AT_1024
from datamodules.io_utils import BadSampleError, lookup

UINT8_TO_PM1 = (np.arange(256, dtype=np.float32) / 255.0) * 2.0 - 1.0
"""uint8 -> float32 in [-1, 1] as make_sample computes it, (x / 255) * 2 - 1."""


def distance_validity(entity: np.ndarray, dist: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(has_entity = entity != -1, valid = has_entity & finite distance, both fresh (H,W) bool
    arrays; the distance as checked: float16 converted to float32 in a scratch buffer, else as given);
    BadSampleError naming `path` (the distance file) on a shape mismatch or an infinite or negative
    distance (-0 and NaN are allowed: NaN marks a pixel without geometry)."""
    if dist.shape != entity.shape or dist.ndim != 2:
        raise BadSampleError(f"{path}: shape {dist.shape} does not match entity ids {entity.shape}")
    if dist.dtype == np.float16:  # float32 holds every float16 exactly: the same tests, vectorised
        dist = to_float32(dist, scratch("distance32", dist.shape, np.float32))
    if dist.size and (np.fmax.reduce(dist, axis=None) == np.inf or np.fmin.reduce(dist, axis=None) < 0):  # NaN skipped
        raise BadSampleError(f"{path}: infinite or negative distance values")
    has_entity = entity != -1
    return has_entity, np.logical_and(has_entity, np.isfinite(dist)), dist


def read_scratch(path: Path, slot: str, key: str = "dataset") -> np.ndarray:
    """The array under `key` in the HDF5 file `path`, read into this thread's scratch buffer `slot`
    (overwritten by the next read into it). BadSampleError as io_utils.read_hdf5. h5py's low-level
    calls: h5py.File and Dataset.__getitem__ add ~25% to reading these files."""
    path = Path(path)
    if not path.is_file():
        raise BadSampleError(f"{path}: missing file (expected an HDF5 file with key '{key}')")
    try:
        fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY)
        try:
            data = h5py.h5d.open(fid, key.encode())
            out = scratch(slot, data.shape, data.dtype)
            if out.size:
                data.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
            return out
        finally:
            fid.close()
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise BadSampleError(f"{path}: cannot read HDF5 key '{key}': {err}") from err


def deinterleave(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """float16 (h,w,3) `a` -> its (3,h,w) channel planes in `out` (float16 or uint16: the bit patterns)."""
    bits, planes = a.view(np.uint16), out.view(np.uint16)
    for c in range(a.shape[-1]):
        np.copyto(planes[c], bits[..., c])
    return out


def project_normals_planes(normal: np.ndarray, flip: np.ndarray, good: np.ndarray) -> np.ndarray:
    """In place on float32 (3,h,w) Hypersim normal_cam: the project convention (x negated, all three
    negated where `flip`, +0 where not `good`), on the sign bits (XOR, then an AND mask: exact for
    every value, NaN included). Returns `normal`."""
    sign = np.left_shift(flip, np.uint32(31), out=scratch("normal_sign", flip.shape, np.uint32), dtype=np.uint32)
    keep = np.negative(good, out=scratch("normal_keep", good.shape, np.uint32), dtype=np.uint32)  # 1 -> 0xFFFFFFFF
    bits = normal.view(np.uint32)
    for c in (1, 2, 0):
        bits[c] ^= sign
        bits[c] &= keep
        if c == 2:  # then x: negated too
            sign ^= np.uint32(0x80000000)
    return normal


def load_raw_sample(
    paths: dict[str, Path], camera_position: Callable[[], np.ndarray], name: str, dataset: str
) -> dict | None:
    """The sample dict (native resolution) of the frame whose files `frame_paths` gave: rgb
    (tone-mapped, quantised to 8 bits, in [-1, 1]), planar depth (0 where invalid), valid_mask,
    normals (project convention, outward, 0 where invalid or not finite), K. `camera_position()`:
    the frame's (3,) world camera position. BadSampleError as decode_raw, checked in its order.
    None when a file is not float16 (the release's type) as this path assumes: decode it the slow way."""
    entity = read_scratch(paths["render_entity_id"], "entity")
    dist = read_scratch(paths["depth_meters"], "distance")
    has_entity, valid, dist32 = distance_validity(entity, dist, paths["depth_meters"])
    if not valid.any():
        raise BadSampleError(f"{paths['depth_meters']}: no valid pixel (all entity ids -1 or NaN distance)")
    arrays = {k: read_scratch(paths[k], k) for k in ("color", "normal_cam", "normal_world", "position")}
    for key, arr in arrays.items():
        if arr.shape != (*dist.shape, 3):
            raise BadSampleError(f"{paths[key]}: shape {arr.shape}, expected {(*dist.shape, 3)}")
    if any(a.dtype != np.float16 for a in (dist, *arrays.values())):
        return None
    h, w = dist.shape
    hdr, blocks = arrays["color"], [slice(r, min(h, r + block_rows(w))) for r in range(0, h, block_rows(w))]

    # tone map (SPEC 6): brightness 0.3 R + 0.59 G + 0.11 B in float32, in that order, block by block;
    # the colour's channel planes are kept as float16 bits, the index of the tone table's gather
    planes, b = scratch("color_bits", (3, h, w), np.float16), scratch("brightness", (h, w), np.float32)
    for rows in blocks:
        px = to_float32(deinterleave(hdr[rows], planes[:, rows]), scratch("color32", (3, rows.stop - rows.start, w), np.float32))
        term = scratch("brightness_term", (rows.stop - rows.start, w), np.float32)
        with np.errstate(invalid="ignore"):
            np.multiply(px[0], np.float32(0.3), out=b[rows])
            b[rows] += np.multiply(px[1], np.float32(0.59), out=term)
            b[rows] += np.multiply(px[2], np.float32(0.11), out=term)
    finite = np.isfinite(b, out=scratch("finite", (h, w), bool))  # iff the three are (float16 <= 65504)
    if np.greater(has_entity, finite, out=finite).any():
        raise BadSampleError(f"{paths['color']}: non-finite colour values at valid pixels")
    table = UINT8_TO_PM1[tone_table_uint8(exposure_scale(b, has_entity))]
    camera = camera_position()

    # rgb: one gather from the table, indexed by the channel planes' bits in blocks of rows (np.take widens
    # each block's uint16 indices itself: 1.5x faster here than int32 copies + torch.index_select); outputs
    # allocated by NumPy (torch's allocations cost ~10x more page faults here)
    rgb = np.empty((3, h, w), np.float32)
    lookup(table, planes.view(np.uint16).reshape(3 * h, w), out=rgb.reshape(3 * h, w), block=1 << 16)

    # flips (SPEC 5: outward in the world frame), then per block the normals in the project convention
    normal = np.empty((3, h, w), np.float32)
    flip = inward_normals_fast(arrays["normal_world"], arrays["position"], camera, out=scratch("flip", (h, w), bool))
    for rows in blocks:
        r = rows.stop - rows.start
        n_cam = deinterleave(arrays["normal_cam"][rows], scratch("normal_bits", (3, r, w), np.float16))
        n = normal[:, rows]
        to_float32(n_cam, n)
        good = np.add(n[0], n[1], out=scratch("normal_sum", (r, w), np.float32))
        with np.errstate(invalid="ignore"):
            good += n[2]  # finite iff the three are (float16 values: no overflow)
        good = np.isfinite(good, out=scratch("normal_good", (r, w), bool))
        good &= valid[rows]
        project_normals_planes(n, flip[rows], good)

    # planar depth: distance * f / ||(x, y, f)||, 0 where invalid
    depth = np.multiply(dist32, np.float32(FOCAL_AT_1024 * w / 1024.0))
    depth /= ray_length(h, w)
    np.copyto(depth, np.float32(0.0), where=np.logical_not(valid, out=scratch("invalid", (h, w), bool)))
    return {
        "rgb": torch.from_numpy(rgb),
        "depth": torch.from_numpy(depth)[None],
        "valid_mask": torch.from_numpy(valid)[None],
        "normal": torch.from_numpy(normal),
        "intrinsics": torch.from_numpy(hypersim_intrinsics(h, w).astype(np.float32)),
        "name": name,
        "dataset": dataset,
    }

