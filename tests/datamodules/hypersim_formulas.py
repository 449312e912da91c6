"""The Hypersim decode written out as SPEC sections 5-6 state it, one array operation at a time: the
independent reference of the reader tests (test_hypersim_decode_exact.py, test_hypersim_fast.py)."""

import numpy as np

from datamodules.hypersim_layout import camera_positions_path, frame_paths
from datamodules.io_utils import read_hdf5


def formula_decode(root, fid) -> dict:
    """One frame of the raw release, decoded by the formulas. Returns
    "rgb": (H,W,3) uint8, float32 tone mapping of nan_to_num(colour) with p90 over pixels with an entity;
    "distance": (H,W) float16 metres along the ray, as stored; "valid": entity and finite distance;
    "normal": (H,W,3) float32 normal_cam with x negated, flipped where n_world . u < -1e-3 for the unit
    vector u from the point to the camera (float64), zeroed where invalid or non-finite;
    "flip": where it was flipped; "entity": the render_entity_id map."""
    paths = frame_paths(root, fid.scene, fid.frame, fid.cam)
    entity, dist = read_hdf5(paths["render_entity_id"]), read_hdf5(paths["depth_meters"])
    has_entity = entity != -1
    valid = has_entity & np.isfinite(dist)
    hdr = np.nan_to_num(read_hdf5(paths["color"]).astype(np.float32))
    brightness = 0.3 * hdr[..., 0] + 0.59 * hdr[..., 1] + 0.11 * hdr[..., 2]
    p90 = np.percentile(brightness[has_entity], 90)
    scale = 0.0 if p90 < 1e-4 else 0.8**2.2 / p90
    with np.errstate(over="ignore"):
        tone = np.clip(np.maximum(scale * hdr, 0.0) ** (1.0 / 2.2), 0.0, 1.0).astype(np.float32)
    rgb = np.round(tone * 255.0).astype(np.uint8)
    camera = read_hdf5(camera_positions_path(root, fid.scene, fid.cam)).astype(np.float64)[fid.frame]
    to_cam = camera - read_hdf5(paths["position"]).astype(np.float64)
    n_world = read_hdf5(paths["normal_world"]).astype(np.float64)
    with np.errstate(invalid="ignore"):
        flip = (n_world * to_cam).sum(-1) < -1e-3 * np.linalg.norm(to_cam, axis=-1)
    n = read_hdf5(paths["normal_cam"]).astype(np.float32)
    n[..., 0] *= -1.0
    n[flip] *= -1.0
    n[~(valid & np.isfinite(n).all(-1))] = 0.0
    return {"rgb": rgb, "distance": dist, "valid": valid, "normal": n, "flip": flip, "entity": entity}
