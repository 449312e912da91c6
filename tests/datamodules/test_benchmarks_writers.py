"""Synthetic benchmark writers: packaging read back by the readers, values against the renderer."""

import tarfile

import numpy as np
import pytest

from datamodules.benchmarks import DepthBenchmark, NormalBenchmark
from datamodules.benchmarks.layouts import DEPTH_LAYOUTS, scale_intrinsics
from datamodules.benchmarks.protocol import load_protocols
from datamodules.synthetic.benchmark_writers import (
    sample_seed,
    write_depth_benchmarks,
    write_normal_benchmarks,
)
from datamodules.synthetic.render import render_scene

P = load_protocols()
SMALL = {"nyuv2": (48, 64), "eth3d": (42, 63), "scannet": (48, 64), "diode": (48, 64)}


@pytest.fixture(scope="module")
def depth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    write_depth_benchmarks(root, names=["nyuv2", "eth3d", "scannet", "diode"], n_images=4, seed=3, size=SMALL)
    return root


def _render(name, i, seed=3):
    hw = SMALL[name]
    lay = DEPTH_LAYOUTS[name]
    kind = "road" if name == "diode" and i % 2 else lay.render_kind
    return render_scene(kind, *hw, sample_seed(seed, name, i), K=scale_intrinsics(lay.ref_K, lay.size_hw, hw))


@pytest.mark.parametrize("name,tol", [("nyuv2", 5e-4), ("scannet", 5e-4), ("eth3d", 0.0), ("diode", 0.0)])
def test_depth_roundtrip_against_renderer(depth_root, name, tol):
    ds = DepthBenchmark(name, depth_root, P.depth[name])
    assert len(ds) == 4
    for i in (0, 1):
        s, view = ds[i], _render(name, i)
        valid = s["valid_mask"][0].numpy()
        assert valid.mean() > 0.3
        d = s["depth"][0].numpy()
        np.testing.assert_allclose(d[valid], view.depth[valid], atol=tol + 1e-6, rtol=0)
        assert np.isfinite(view.depth[valid]).all()
        np.testing.assert_allclose(s["intrinsics"].numpy()[:2, :2], view.K[:2, :2], rtol=1e-5)


def test_nyu_raw_depth_has_holes_filled_has_none(depth_root):
    from PIL import Image

    with tarfile.open(depth_root / DEPTH_LAYOUTS["nyuv2"].tar) as tar:
        names = tar.getnames()
        assert all(n.startswith("./") for n in names)
        raw = np.asarray(Image.open(tar.extractfile("./test/room_0000/depth_0000.png")))
        filled = np.asarray(Image.open(tar.extractfile("./test/room_0000/filled_0000.png")))
    geometry = np.isfinite(_render("nyuv2", 0).depth)
    assert (raw[geometry] == 0).any() and (filled[geometry] > 0).all()


def test_deterministic_per_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for root, seed in ((a, 1), (b, 1), (c, 2)):
        write_depth_benchmarks(root, names=["scannet"], n_images=2, seed=seed, size=(24, 32))
    tar = DEPTH_LAYOUTS["scannet"].tar
    assert (a / tar).read_bytes() == (b / tar).read_bytes()
    assert (a / tar).read_bytes() != (c / tar).read_bytes()


def test_kitti_list_has_none_lines(tmp_path):
    write_depth_benchmarks(tmp_path, names=["kitti"], n_images=3, seed=0)
    lines = (tmp_path / DEPTH_LAYOUTS["kitti"].filename_list).read_text().splitlines()
    none = [ln for ln in lines if ln.split()[1] == "None"]
    assert len(lines) == 4 and len(none) == 1
    ds = DepthBenchmark("kitti", tmp_path, P.depth["kitti"])
    assert len(ds) == 3 and ds.num_without_gt == 1
    s = ds[0]
    assert s["rgb"].shape == (3, 352, 1216)
    valid = s["valid_mask"][0].numpy()
    assert 0.02 < valid.mean() < 0.5  # sparse LiDAR-like ground truth inside the Eigen mask
    focal = float(lines[0].split()[2])
    assert s["intrinsics"][0, 0] == pytest.approx(focal, rel=1e-6)


@pytest.mark.parametrize("name,fmt", [("nyuv2_normal", "png"), ("ibims_normal", "exr"), ("sintel_normal", "exr")])
def test_normal_roundtrip_against_renderer(tmp_path, name, fmt):
    hw = (30, 40)
    write_normal_benchmarks(tmp_path, names=[name], n_images=2, seed=5, size=hw)
    assert P.normal[name].gt_format == fmt
    ds = NormalBenchmark(name, tmp_path, P.normal[name])
    assert len(ds) == 2
    s = ds[1]
    kind = "road" if name == "sintel_normal" else "room"
    view = render_scene(kind, *hw, sample_seed(5, name, 1))
    valid = s["valid_mask"][0].numpy()
    geometry = np.linalg.norm(view.normal, axis=2) > 0.5
    assert valid.mean() > 0.3 and not (valid & ~geometry).any()
    n = s["normal"].numpy().transpose(1, 2, 0)
    tol = 1.0 / 255.0 + 1e-6 if fmt == "png" else 1e-7
    np.testing.assert_allclose(n[valid], view.normal[valid], atol=tol)
    np.testing.assert_allclose(s["intrinsics"].numpy(), view.K, rtol=1e-6)


def test_normal_npy_written_with_x_negated(tmp_path):
    proto_file = tmp_path / "protocols.yaml"
    proto_file.write_text("normal:\n  scannet_normal: {num_images: 300, gt_format: npy}\n")
    write_normal_benchmarks(tmp_path, names=["scannet_normal"], n_images=1, seed=0, size=(20, 24),
                            protocol_file=proto_file)
    stored = np.load(tmp_path / "dsine_eval/scannet/scene0000_00/000000_normal.npy")
    view = render_scene("room", 20, 24, sample_seed(0, "scannet_normal", 0))
    np.testing.assert_allclose(stored[..., 0], -view.normal[..., 0], atol=1e-7)
    np.testing.assert_allclose(stored[..., 1:], view.normal[..., 1:], atol=1e-7)
