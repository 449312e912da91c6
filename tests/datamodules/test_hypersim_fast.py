"""The raw Hypersim reader's fast path (datamodules/hypersim_raw.py): the same tensors as decoding the
frame and building the sample the straightforward way, and as the SPEC formulas written out
(tests/datamodules/hypersim_formulas.py)."""

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from datamodules import hypersim_kernels, hypersim_raw
from datamodules.hypersim import HypersimDataset, decode_raw, hypersim_intrinsics, planar_depth_from_distance
from datamodules.hypersim_layout import FOCAL_AT_1024, frame_paths
from datamodules.io_utils import BadSampleError, make_sample, read_hdf5
from datamodules.synthetic.hypersim_writer import INWARD_ENTITY, write_hypersim

sys.path.insert(0, str(Path(__file__).parent))
from hypersim_formulas import formula_decode  # noqa: E402

H, W = 48, 64
KEYS = ("rgb", "depth", "valid_mask", "normal", "intrinsics")


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        f["dataset"][...] = fn(f["dataset"][()])


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Two frames; frame 1 with no-entity pixels holding NaN / inf colour and normals, a NaN
    distance, non-finite normals at valid pixels and a very bright pixel."""
    root = tmp_path_factory.mktemp("hypersim_fast")
    write_hypersim(root, num_scenes=1, frames_per_scene=2, height=H, width=W, seed=11, splits=("train",))
    paths = frame_paths(root, "ai_001_001", 1)

    def holes(e):
        e[:3, :5] = -1
        return e

    def colour(c):
        c[0, 0], c[1, 1], c[2, 2, 0], c[10, 10] = np.nan, np.inf, -np.inf, 60000.0
        return c

    def normals(n):
        n[0, 1, 2], n[20, 30, 1], n[21, 31, 0] = np.nan, np.inf, -np.nan
        return n

    def distance(d):
        d[20, 20] = np.nan
        return d

    _edit(paths["render_entity_id"], holes)
    _edit(paths["color"], colour)
    _edit(paths["normal_cam"], normals)
    _edit(paths["depth_meters"], distance)
    return root


@pytest.fixture()
def small_blocks(monkeypatch):
    """Blocks of 7 rows (48 = 6 x 7 + 6): the block loops' edges inside these small frames."""
    monkeypatch.setattr(hypersim_raw, "block_rows", lambda width: 7)
    monkeypatch.setattr(hypersim_kernels, "block_rows", lambda width: 7)


def decode_path_sample(ds, i):
    """The sample built the straightforward way: decode_raw, planar depth, make_sample."""
    d = decode_raw(ds.root, ds.frames[i], ds._camera_position)
    depth = planar_depth_from_distance(np.nan_to_num(d["distance"].astype(np.float32)))
    return make_sample(d["rgb"], depth, d["valid"], d["normal"], hypersim_intrinsics(H, W), ds.frames[i].name, "hypersim")


def _assert_same(a, b):
    assert set(a) - {"num_skipped_before"} == set(b) - {"num_skipped_before"}
    assert a["name"] == b["name"] and a["dataset"] == b["dataset"]
    for key in KEYS:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].numpy().tobytes() == b[key].numpy().tobytes(), key


def test_fast_samples_are_the_decode_path_bit_for_bit(root, small_blocks):
    ds = HypersimDataset(root, "train", max_invalid_fraction=1.0)
    for i in range(len(ds)):
        _assert_same(ds[i], decode_path_sample(ds, i))


def _formula_sample(root, fid):
    """SPEC 5, 6 written out (hypersim_formulas.formula_decode), as the sample's arrays: rgb / 255 * 2 - 1
    (3,H,W); planar depth (float64, 0 where invalid); valid; normal (3,H,W); the flip map; the entity map."""
    ref = formula_decode(root, fid)
    rgb = (ref["rgb"].astype(np.float32) / 255.0) * 2.0 - 1.0
    f = FOCAL_AT_1024 * W / 1024
    x = np.arange(W) - (W - 1) / 2
    y = np.arange(H)[:, None] - (H - 1) / 2
    depth = np.where(ref["valid"], ref["distance"].astype(np.float64) * f / np.sqrt(x * x + y * y + f * f), 0.0)
    return (rgb.transpose(2, 0, 1), depth, ref["valid"], ref["normal"].transpose(2, 0, 1), ref["flip"],
            ref["entity"])


def test_fast_samples_match_the_formulas(root, small_blocks):
    ds = HypersimDataset(root, "train", max_invalid_fraction=1.0)
    flipped = 0
    for i, fid in enumerate(ds.frames):
        s = ds[i]
        rgb, depth, valid, normal, flip, entity = _formula_sample(root, fid)
        assert np.array_equal(s["rgb"].numpy(), rgb)
        assert np.array_equal(s["valid_mask"][0].numpy(), valid)
        np.testing.assert_allclose(s["depth"][0].numpy(), depth, rtol=3e-7, atol=0)  # float32 rounding; 0 where invalid
        assert np.array_equal(s["normal"].numpy(), normal)
        if i == 1:  # the edits: holes, a NaN distance, non-finite normals at valid pixels -> zero vectors
            assert not valid[:3, :5].any() and not valid[20, 20] and valid[20, 30] and valid[21, 31]
            assert not s["normal"][:, 20, 30].any() and not s["normal"][:, 21, 31].any()
        assert np.array_equal(s["intrinsics"].numpy(), hypersim_intrinsics(H, W).astype(np.float32))
        flipped += int((flip & valid & (entity == INWARD_ENTITY)).sum())
    assert flipped > 0  # the synthetic inward box was seen and turned outward


def test_samples_own_their_memory(root):
    """Scratch buffers are reused between frames; the sample tensors are not."""
    ds = HypersimDataset(root, "train", max_invalid_fraction=1.0)
    first = ds[0]
    kept = {k: first[k].clone() for k in KEYS}
    second = ds[1]
    for k in KEYS:
        assert torch.equal(first[k], kept[k]), k
        assert first[k].untyped_storage().data_ptr() != second[k].untyped_storage().data_ptr(), k


def test_fast_path_errors_name_the_file_as_decode_raw(tmp_path):
    write_hypersim(tmp_path, num_scenes=1, frames_per_scene=2, height=H, width=W, splits=("train",))
    p0, p1 = frame_paths(tmp_path, "ai_001_001", 0), frame_paths(tmp_path, "ai_001_001", 1)

    def bad_colour(c):
        c[30, 40, 1] = np.inf  # a pixel with an entity
        return c

    _edit(p0["color"], bad_colour)
    with h5py.File(p1["position"], "w") as f:
        f["dataset"] = np.zeros((H, W - 1, 3), np.float16)
    ds = HypersimDataset(tmp_path, "train", max_invalid_fraction=1.0)
    for i, (match, path) in enumerate([("non-finite colour", p0["color"]), ("shape", p1["position"])]):
        for load in (ds.__getitem__, lambda j: decode_raw(tmp_path, ds.frames[j], ds._camera_position)):
            with pytest.raises(BadSampleError, match=match) as err:
                load(i)
            assert str(path) in str(err.value)


def test_float32_files_take_the_decode_path(tmp_path):
    """The fast path assumes the release's float16; other dtypes are decoded the straightforward way."""
    write_hypersim(tmp_path, num_scenes=1, frames_per_scene=1, height=H, width=W, splits=("train",))
    paths = frame_paths(tmp_path, "ai_001_001", 0)
    with h5py.File(paths["position"], "r+") as f:
        data = f["dataset"][()].astype(np.float32)
        del f["dataset"]
        f["dataset"] = data
    ds = HypersimDataset(tmp_path, "train", max_invalid_fraction=1.0)
    frame = ds.frames[0]
    assert hypersim_raw.load_raw_sample(paths, lambda: ds._camera_position(frame), frame.name, "hypersim") is None
    _assert_same(ds[0], decode_path_sample(ds, 0))


def test_negative_or_infinite_distance_is_a_bad_sample_but_minus_zero_is_not(tmp_path):
    write_hypersim(tmp_path, num_scenes=1, frames_per_scene=1, height=H, width=W, splits=("train",))
    path = frame_paths(tmp_path, "ai_001_001", 0)["depth_meters"]
    entity = read_hdf5(frame_paths(tmp_path, "ai_001_001", 0)["render_entity_id"])
    for value, bad in [(-0.0, False), (-0.001, True), (-np.inf, True), (np.inf, True), (np.nan, False)]:
        def put(d, value=value):
            d[4, 6] = value
            return d

        _edit(path, put)
        if bad:
            with pytest.raises(BadSampleError, match="infinite or negative"):
                hypersim_raw.distance_validity(entity, read_hdf5(path), path)
        else:
            _, valid, _ = hypersim_raw.distance_validity(entity, read_hdf5(path), path)
            assert valid[4, 6] == (value == 0)
