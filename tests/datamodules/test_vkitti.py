"""Virtual KITTI 2 writer + reader: depth decode, derived normals, KB crop, cache, bad input."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from datamodules.io_utils import BadSampleError
from datamodules.normals_from_depth import normals_from_depth
from datamodules.synthetic.render import render_scene
from datamodules.synthetic.vkitti_writer import write_vkitti
from datamodules.vkitti import VirtualKITTIDataset
from datamodules.vkitti_layout import depth_path, rgb_path

H, W = 48, 160
LEVEL = {"yaw_deg": 0.0, "pitch_deg": 0.0}


def _angle_deg(a, b):
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))


def _planar_interior(view, r=2):
    """Pixels whose (2r+1)^2 window lies on one analytic plane (same entity and same normal)."""
    e = np.pad(view.entity_id, r, constant_values=-2)
    same = (sliding_window_view(e, (2 * r + 1,) * 2) == view.entity_id[..., None, None]).all((-1, -2))
    n = np.pad(view.normal, ((r, r), (r, r), (0, 0)))
    for c in range(3):
        same &= (np.abs(sliding_window_view(n[..., c], (2 * r + 1,) * 2) - view.normal[..., c, None, None]) < 1e-6).all((-1, -2))
    return same & (view.entity_id >= 0)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vkitti")
    write_vkitti(root, scenes=("Scene02",), conditions=("clone", "15-deg-left"), frames_per_condition=1, height=H, width=W, seed=2, render_kwargs=LEVEL)
    return root


def test_normals_from_exact_depth_within_one_degree():
    v = render_scene("road", 120, 400, seed=4, pitch_deg=-3.0)
    valid = np.isfinite(v.depth)
    n = normals_from_depth(np.nan_to_num(v.depth), valid, v.K)
    inner = _planar_interior(v)
    assert inner.sum() > 10000
    assert _angle_deg(n, v.normal)[inner].max() < 1.0
    assert (n[~valid] == 0).all()


def test_depth_decode_and_layout(small_root):
    ds = VirtualKITTIDataset(small_root, scenes=("Scene02",), conditions=("clone", "15-deg-left"), crop=None)
    assert len(ds) == 4
    s = ds[0]
    assert s["name"] == "Scene02/clone/Camera_0/00000"
    v = render_scene("road", H, W, seed=2 * 100003, **LEVEL)
    expected = np.round(np.nan_to_num(v.depth, nan=1e9) * 100) / 100
    valid = expected <= 80.0
    np.testing.assert_array_equal(s["valid_mask"][0].numpy(), valid)
    np.testing.assert_allclose(s["depth"][0].numpy()[valid], expected[valid], atol=1e-5)
    assert (s["depth"][0].numpy()[~valid] == 0).all()
    f = 725.0087 * W / 1242
    np.testing.assert_allclose(s["intrinsics"].numpy(), [[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]], rtol=1e-5)


def test_reader_floor_and_facing_normals(small_root):
    ds = VirtualKITTIDataset(small_root, scenes=("Scene02",), conditions=("clone",), cameras=(0,), crop=None)
    s = ds[0]
    v = render_scene("road", H, W, seed=2 * 100003, **LEVEL)
    n = s["normal"].numpy().transpose(1, 2, 0)
    inner = _planar_interior(v) & s["valid_mask"][0].numpy() & (v.depth < 40)
    floor = inner & (v.normal[..., 1] > 0.999)
    assert floor.sum() > 100
    assert np.median(_angle_deg(n[floor], np.array([0.0, 1.0, 0.0]))) < 2.0
    facing = inner & (v.normal[..., 2] > 0.999)  # car backs facing the camera
    if facing.any():
        assert np.median(_angle_deg(n[facing], np.array([0.0, 0.0, 1.0]))) < 3.0
    assert (n[~s["valid_mask"][0].numpy()] == 0).all()


def test_kb_crop_and_normal_cache(tmp_path):
    write_vkitti(tmp_path, scenes=("Scene06",), conditions=("clone",), frames_per_condition=1, cameras=(0,), seed=1)
    full = VirtualKITTIDataset(tmp_path, scenes=("Scene06",), conditions=("clone",), cameras=(0,), crop=None)[0]
    cache = tmp_path / "normals"
    ds = VirtualKITTIDataset(tmp_path, scenes=("Scene06",), conditions=("clone",), cameras=(0,), crop="kb", cache_dir=cache)
    s = ds[0]
    assert s["rgb"].shape == (3, 352, 1216)
    top, left = 375 - 352, (1242 - 1216) // 2
    assert (top, left) == (23, 13)
    np.testing.assert_array_equal(s["depth"].numpy(), full["depth"].numpy()[:, top:, left : left + 1216])
    np.testing.assert_allclose(s["intrinsics"].numpy()[:2, 2], [620.5 - 13, 187 - 23])
    assert len(list(cache.rglob("normal_00000.npy"))) == 1
    again = ds[0]
    np.testing.assert_array_equal(again["normal"].numpy(), s["normal"].numpy())
    np.testing.assert_allclose(s["normal"].numpy(), full["normal"].numpy()[:, top:, left : left + 1216], atol=1e-3)


@pytest.fixture()
def bad_root(tmp_path):
    write_vkitti(tmp_path, scenes=("Scene02",), conditions=("clone",), frames_per_condition=2, cameras=(0,), height=H, width=W)
    return tmp_path


def _ds(root, **kw):
    return VirtualKITTIDataset(root, scenes=("Scene02",), conditions=("clone",), cameras=(0,), crop=None, **kw)


def test_corrupt_jpeg_raises_or_skips(bad_root):
    rgb_path(bad_root, "Scene02", "clone", 0, 0).write_bytes(b"\xff\xd8 broken jpeg")
    with pytest.raises(BadSampleError, match="rgb_00000.jpg"):
        _ds(bad_root)[0]
    ds = _ds(bad_root, on_bad_sample="skip")
    assert ds[0]["name"].endswith("00001") and ds.num_skipped == 1


def test_corrupt_png_and_all_sky(bad_root):
    depth_path(bad_root, "Scene02", "clone", 0, 0).write_bytes(b"\x89PNG nope")
    with pytest.raises(BadSampleError, match="depth_00000.png"):
        _ds(bad_root)[0]
    from PIL import Image

    Image.fromarray(np.full((H, W), 65535, np.uint16)).save(depth_path(bad_root, "Scene02", "clone", 0, 1))
    with pytest.raises(BadSampleError, match="depth_00001.png.*no valid"):
        _ds(bad_root)[1]


def test_missing_intrinsics_row_and_file(bad_root):
    path = bad_root / "Scene02" / "clone" / "intrinsic.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n")  # header + frame 0 only
    with pytest.raises(BadSampleError, match="intrinsic.txt.*frame 1"):
        _ds(bad_root)[1]
    path.unlink()
    with pytest.raises(FileNotFoundError, match="intrinsic.txt"):
        _ds(bad_root)


def test_valid_range_is_open_at_80_metres(tmp_path):
    from PIL import Image

    write_vkitti(tmp_path, scenes=("Scene02",), conditions=("clone",), frames_per_condition=1, height=H, width=W,
                 seed=2, render_kwargs=LEVEL)
    path = depth_path(tmp_path, "Scene02", "clone", 0, 0)
    raw = np.array(Image.open(path)).astype(np.uint16)
    raw[0, :3] = [8000, 7999, 8001]  # cm: exactly 80 m, just below, just above
    Image.fromarray(raw).save(path)
    valid = VirtualKITTIDataset(tmp_path, scenes=("Scene02",), conditions=("clone",), cameras=(0,), crop=None)[0][
        "valid_mask"][0].numpy()
    assert valid[0, :3].tolist() == [False, True, False]  # (1e-5, 80): Marigold's depth < 80
