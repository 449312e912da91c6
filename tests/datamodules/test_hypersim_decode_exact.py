"""The fast Hypersim decode (bit-pattern tables, channel-wise float64 flip test) gives exactly the
bytes of the straightforward float formulas (SPEC 5, 6), written out again here."""

import h5py
import numpy as np
import pytest

from datamodules.hypersim import FLIP_THRESHOLD, HypersimDataset, decode_raw
from datamodules.hypersim_layout import camera_positions_path, frame_paths
from datamodules.io_utils import read_hdf5
from datamodules.synthetic.hypersim_writer import write_hypersim


def reference_decode(root, fid):
    """The float formulas, one array op at a time: float32 tone mapping with p90 over pixels
    with an entity, normal_cam with x negated, flipped where n_world . (camera - point) < -1e-3
    (float64), zeroed where invalid or non-finite."""
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
    n = read_hdf5(paths["normal_cam"]).astype(np.float32)
    n[..., 0] *= -1.0
    camera = read_hdf5(camera_positions_path(root, fid.scene, fid.cam)).astype(np.float64)[fid.frame]
    to_cam = camera[None, None, :] - read_hdf5(paths["position"]).astype(np.float64)
    facing = np.einsum("hwc,hwc->hw", read_hdf5(paths["normal_world"]).astype(np.float64), to_cam)
    n[facing < FLIP_THRESHOLD] *= -1.0
    n[~(valid & np.isfinite(n).all(-1))] = 0.0
    return {"rgb": rgb, "distance": dist, "normal": n.astype(np.float16), "valid": valid}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hypersim_exact")
    write_hypersim(root, num_scenes=1, frames_per_scene=2, height=48, width=64, seed=5, splits=("train",))
    # frame 1: NaN / inf colour and normals where there is no entity, a NaN distance, very bright pixels
    paths = frame_paths(root, "ai_001_001", 1)
    with h5py.File(paths["render_entity_id"], "r+") as f:
        entity = f["dataset"][()]
        entity[:3, :5] = -1
        f["dataset"][...] = entity
    with h5py.File(paths["color"], "r+") as f:
        c = f["dataset"][()]
        c[0, 0], c[1, 1], c[2, 2, 0] = np.nan, np.inf, -np.inf
        c[10, 10] = 60000.0
        f["dataset"][...] = c
    with h5py.File(paths["normal_cam"], "r+") as f:
        n = f["dataset"][()]
        n[0, 1, 2], n[2, 3, 1] = np.nan, np.inf
        f["dataset"][...] = n
    with h5py.File(paths["depth_meters"], "r+") as f:
        d = f["dataset"][()]
        d[20, 20] = np.nan
        f["dataset"][...] = d
    return root


def test_decode_is_byte_identical_to_the_float_formulas(root):
    ds = HypersimDataset(root, "train", max_invalid_fraction=1.0)
    assert len(ds) == 2
    for fid in ds.frames:
        got = decode_raw(root, fid, ds._camera_position)
        ref = reference_decode(root, fid)
        for key in ("rgb", "distance", "normal", "valid"):
            assert got[key].dtype == ref[key].dtype, key
            assert np.array_equal(got[key].view(np.uint8), ref[key].view(np.uint8)), f"{fid.name} {key}"
    assert not got["valid"][20, 20] and got["normal"][0, 1].tolist() == [0, 0, 0]
