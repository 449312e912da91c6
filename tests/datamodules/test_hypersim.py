"""Hypersim writer + reader: depth, tone mapping, normals, splits, bad input, raw vs cache."""

import csv
import logging

import h5py
import numpy as np
import pytest
import torch

from datamodules.hypersim import HypersimDataset, preprocess_hypersim
from datamodules.hypersim_layout import CSV_NAME, frame_paths
from datamodules.io_utils import BadSampleError
from datamodules.synthetic.hypersim_writer import INWARD_ENTITY, write_hypersim
from datamodules.synthetic.render import render_scene

H, W = 48, 64
LEVEL = {"yaw_deg": 0.0, "pitch_deg": 0.0}


def _edit(path, fn):
    """Rewrite the HDF5 'dataset' of `path` in place with fn(array) -> array."""
    with h5py.File(path, "r+") as f:
        f["dataset"][...] = fn(f["dataset"][()])


def _set(index, value):
    def fn(a):
        a[index] = value
        return a

    return fn


@pytest.fixture(scope="module")
def level_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hypersim_level")
    write_hypersim(root, num_scenes=2, frames_per_scene=3, height=H, width=W, seed=1, splits=("train",), render_kwargs=LEVEL)
    return root


def _views(seed, num_scenes, frames, **kw):
    """The views write_hypersim renders (same seed formula), for independent ground truth."""
    return {
        (f"ai_001_{s + 1:03d}", f): render_scene("room", H, W, seed=seed * 100003 + s * 1009 + f, **kw)
        for s in range(num_scenes)
        for f in range(frames)
    }


def _level_floor_depth(view):
    rows = np.arange(H, dtype=np.float64)[:, None].repeat(W, 1)
    f = 886.81 * W / 1024
    return view.cam_to_world[1, 3] * f / (rows - (H - 1) / 2)


def test_planar_depth_from_distance_matches_analytic_floor(level_root):
    ds = HypersimDataset(level_root, "train", max_invalid_fraction=1.0)
    views = _views(1, 2, 3, **LEVEL)
    assert len(ds) == 6
    for i in range(len(ds)):
        s = ds[i]
        scene, _, frame = s["name"].split("/")
        v = views[(scene, int(frame))]
        floor = v.entity_id == 0
        expected = _level_floor_depth(v)[floor]
        got = s["depth"][0].numpy()[floor]
        # float16 storage of the distance: relative error <= 2**-11
        np.testing.assert_allclose(got, expected, rtol=1e-3)
        assert s["valid_mask"][0].numpy()[floor].all()


def _tone_map_reference(hdr, entity):
    valid = entity != -1
    b = 0.3 * hdr[..., 0] + 0.59 * hdr[..., 1] + 0.11 * hdr[..., 2]
    p = np.sort(b[valid])
    # 90th percentile with linear interpolation, written out
    pos = 0.9 * (len(p) - 1)
    lo = int(np.floor(pos))
    p90 = p[lo] + (p[min(lo + 1, len(p) - 1)] - p[lo]) * (pos - lo)
    scale = 0.0 if p90 < 1e-4 else 0.8**2.2 / p90
    return np.clip(np.maximum(scale * hdr, 0) ** (1 / 2.2), 0, 1)


def test_tone_mapping_matches_formula(level_root):
    ds = HypersimDataset(level_root, "train", max_invalid_fraction=1.0)
    s = ds[2]
    scene, cam, frame = s["name"].split("/")
    paths = frame_paths(level_root, scene, int(frame), cam)
    with h5py.File(paths["color"]) as f:
        hdr = f["dataset"][()].astype(np.float64)
    with h5py.File(paths["render_entity_id"]) as f:
        entity = f["dataset"][()]
    ref = _tone_map_reference(hdr, entity)
    got = (s["rgb"].numpy().transpose(1, 2, 0) + 1) / 2
    assert np.abs(got - ref).max() <= 0.5 / 255 + 1e-5  # 8-bit quantisation only
    assert ref.max() > 0.5  # not a trivially black image


def test_normals_wall_floor_and_inward_flip(level_root):
    ds = HypersimDataset(level_root, "train", max_invalid_fraction=1.0)
    views = _views(1, 2, 3, **LEVEL)
    saw_inward = False
    for i in range(len(ds)):
        s = ds[i]
        scene, _, frame = s["name"].split("/")
        v = views[(scene, int(frame))]
        n = s["normal"].numpy().transpose(1, 2, 0)
        floor, wall = v.entity_id == 0, v.entity_id == 2
        np.testing.assert_allclose(n[floor], np.tile([0, 1, 0], (floor.sum(), 1)), atol=2e-3)
        np.testing.assert_allclose(n[wall], np.tile([0, 0, 1], (wall.sum(), 1)), atol=2e-3)
        inward = v.entity_id == INWARD_ENTITY
        if inward.any():
            saw_inward = True
            np.testing.assert_allclose(n[inward], v.normal[inward], atol=2e-3)  # flipped back outward
        assert (n[v.entity_id == -1] == 0).all()
    assert saw_inward, "the written data should contain inward normals"


def test_split_and_release_flags(tmp_path):
    rows = write_hypersim(tmp_path, num_scenes=3, frames_per_scene=2, height=H, width=W, excluded_frames=1)
    with open(tmp_path / CSV_NAME) as f:
        header = next(csv.reader(f))
    assert header == ["scene_name", "camera_name", "frame_id", "included_in_public_release", "exclude_reason", "split_partition_name"]
    for split, scene in (("train", "ai_001_001"), ("val", "ai_001_002"), ("test", "ai_001_003")):
        ds = HypersimDataset(tmp_path, split, max_invalid_fraction=1.0)
        assert [fid.name for fid in ds.frames] == [f"{scene}/cam_00/0001"]
    assert len(rows) == 6


def test_invalid_fraction_filter_drops_and_logs(tmp_path, caplog):
    write_hypersim(tmp_path, num_scenes=1, frames_per_scene=2, height=H, width=W, splits=("train",), render_kwargs=LEVEL)
    path = frame_paths(tmp_path, "ai_001_001", 1)["render_entity_id"]
    _edit(path, _set(slice(0, 2), -1))  # 2 of 48 rows: 4% invalid
    with caplog.at_level(logging.INFO):
        ds = HypersimDataset(tmp_path, "train")
    kept = {fid.frame for fid in ds.frames}
    assert 1 not in kept and ds.num_dropped_invalid >= 1
    assert "dropped" in caplog.text


@pytest.fixture()
def small_root(tmp_path):
    write_hypersim(tmp_path, num_scenes=1, frames_per_scene=2, height=H, width=W, splits=("train",))
    return tmp_path


def test_corrupt_hdf5_raises_naming_file_or_skips(small_root):
    path = frame_paths(small_root, "ai_001_001", 0)["color"]
    path.write_bytes(b"this is not an hdf5 file")
    ds = HypersimDataset(small_root, "train", max_invalid_fraction=1.0)
    with pytest.raises(BadSampleError, match="frame.0000.color.hdf5"):
        ds[0]
    ds = HypersimDataset(small_root, "train", max_invalid_fraction=1.0, on_bad_sample="skip")
    s = ds[0]
    assert s["name"].endswith("0001") and ds.num_skipped == 1


def test_missing_split_file_and_missing_entry_file(small_root):
    frame_paths(small_root, "ai_001_001", 1)["normal_world"].unlink()
    ds = HypersimDataset(small_root, "train", max_invalid_fraction=1.0)
    with pytest.raises(BadSampleError, match="frame.0001.normal_world.hdf5"):
        ds[1]
    (small_root / CSV_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=CSV_NAME):
        HypersimDataset(small_root, "train")


def test_inf_depth_and_no_valid_pixel(small_root):
    p0 = frame_paths(small_root, "ai_001_001", 0)
    _edit(p0["depth_meters"], _set((3, 3), np.inf))
    with pytest.raises(BadSampleError, match="frame.0000.depth_meters.hdf5"):
        HypersimDataset(small_root, "train", max_invalid_fraction=1.0)
    ds = HypersimDataset(small_root, "train", max_invalid_fraction=1.0, on_bad_sample="skip")
    assert len(ds) == 1 and ds.num_skipped == 1
    p1 = frame_paths(small_root, "ai_001_001", 1)
    _edit(p1["render_entity_id"], lambda a: np.full_like(a, -1))
    ds = HypersimDataset(small_root, "train", max_invalid_fraction=1.0, on_bad_sample="skip")
    with pytest.raises(BadSampleError, match="every sample is bad"):
        ds[0]
    _edit(p0["depth_meters"], _set((3, 3), 2.0))
    ds = HypersimDataset(small_root, "train", max_invalid_fraction=1.0)
    with pytest.raises(BadSampleError, match="frame.0001.depth_meters.hdf5.*no valid pixel"):
        ds[1]


def test_nan_distance_is_invalid(small_root):
    p0 = frame_paths(small_root, "ai_001_001", 0)
    _edit(p0["depth_meters"], _set((5, 7), np.nan))
    s = HypersimDataset(small_root, "train", max_invalid_fraction=1.0)[0]
    assert not s["valid_mask"][0, 5, 7] and s["depth"][0, 5, 7] == 0


def test_raw_and_cache_identical(tmp_path):
    raw_root = tmp_path / "raw"
    write_hypersim(raw_root, num_scenes=2, frames_per_scene=3, height=H, width=W, splits=("train",), seed=3)
    preprocess_hypersim(raw_root, tmp_path / "cache", "train")
    raw = HypersimDataset(raw_root, "train", height=24, width=32)
    cached = HypersimDataset(raw_root, "train", height=24, width=32, cache_dir=tmp_path / "cache")
    assert len(raw) == len(cached) > 0
    for i in range(len(raw)):
        a, b = raw[i], cached[i]
        assert a["name"] == b["name"]
        for key in ("rgb", "depth", "valid_mask", "normal", "intrinsics"):
            assert torch.equal(a[key], b[key]), key
    with pytest.raises(ValueError, match="max_invalid_fraction"):
        HypersimDataset(raw_root, "train", max_invalid_fraction=0.5, cache_dir=tmp_path / "cache")


def test_inward_test_uses_the_unit_vector_to_the_camera():
    from datamodules.hypersim import inward_normals

    # camera at the origin; points on the -z axis at distance 4 and 0.5; u = (0, 0, 1) for both.
    # n . u = n_z: inward iff n_z < -1e-3 (Marigold), whatever the distance.
    def n(z):
        return [np.sqrt(1 - z * z), 0.0, z]

    normal = np.array([[n(-0.0008), n(-0.002), n(-0.0015), n(0.5)]], dtype=np.float32)
    position = np.array([[[0, 0, -4.0], [0, 0, -4.0], [0, 0, -0.5], [0, 0, -0.5]]], dtype=np.float32)
    got = inward_normals(normal, position, np.zeros(3))
    # un-normalised n . (camera - point) would call the first inward (-0.0032) and the third outward (-0.00075)
    np.testing.assert_array_equal(got, [[False, True, True, False]])
