"""Depth benchmark readers on hand-made arrays packed the way Marigold releases them.

Reference values are computed here from the arrays written (and the SPEC's crop constants
re-derived independently), never by running the reader's own helpers.
"""

import io
import logging
import pickle
import tarfile
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.benchmarks import BadSampleError, DepthBenchmark
from datamodules.benchmarks.protocol import load_protocols

PROTO = load_protocols().depth


def png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def make_tar(path, members: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_list(root, rel, lines) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lines) + "\n")


def unit(rgb):
    return rgb.astype(np.float32).transpose(2, 0, 1) / 255.0 * 2.0 - 1.0


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_nyu_decode_range_and_eigen_crop(tmp_path, rng):
    H, W = 480, 640
    rgbs, raws, members, lines = [], [], {}, []
    for i in range(2):
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        raw = rng.integers(0, 12000, (H, W)).astype(np.uint16)
        raw[:40, :] = 0  # a hole (raw Kinect depth is not filled)
        raw[100, 100], raw[100, 101], raw[100, 102] = 9999, 10000, 1  # 9.999 m kept; 10 m and 1 mm not (open interval)
        members[f"test/k/rgb_{i}.png"] = png_bytes(rgb)
        members[f"test/k/depth_{i}.png"] = png_bytes(raw)
        lines.append(f"test/k/rgb_{i}.png test/k/depth_{i}.png test/k/filled_{i}.png")
        rgbs.append(rgb)
        raws.append(raw)
    make_tar(tmp_path / "nyuv2/nyu_labeled_extracted.tar", members)
    write_list(tmp_path, "data_split/nyu/labeled/filename_list_test.txt", lines)
    ds = DepthBenchmark("nyuv2", tmp_path, PROTO["nyuv2"])
    assert len(ds) == 2
    s = ds[1]
    d = raws[1].astype(np.float64) / 1000.0
    np.testing.assert_allclose(s["depth"][0].numpy(), d, rtol=1e-6)
    crop = np.zeros((H, W), bool)
    crop[45:471, 41:601] = True
    expected = (raws[1] > 0) & (d > 1e-3) & (d < 10.0) & crop
    assert torch.equal(s["valid_mask"][0], torch.from_numpy(expected))
    assert bool(s["valid_mask"][0, 100, 100]) and not s["valid_mask"][0, 100, 101] and not s["valid_mask"][0, 100, 102]
    assert not s["valid_mask"][0, 44].any() and not s["valid_mask"][0, :, 601:].any()
    np.testing.assert_allclose(s["rgb"].numpy(), unit(rgbs[1]), atol=1e-6)
    assert s["rgb"].shape == (3, H, W) and s["normal"].abs().sum() == 0
    assert s["intrinsics"][0, 0] == pytest.approx(518.8579, abs=1e-3)
    assert s["name"] == "test/k/rgb_1.png" and s["dataset"] == "nyuv2"


def kitti_files(rng, n_gt=3, n_none=2, H=375, W=1242):
    members, lines, data = {}, [], []
    for i in range(n_gt + n_none):
        rgb_rel = f"2011_09_26/2011_09_26_drive_0002_sync/image_02/data/{i:010d}.png"
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        members[rgb_rel] = png_bytes(rgb)
        if i < n_none:
            lines.append(f"{rgb_rel} None 721.5377")
            continue
        gt_rel = f"2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/{i:010d}.png"
        raw = rng.integers(0, 90 * 256, (H, W)).astype(np.uint16)
        raw[rng.random((H, W)) < 0.7] = 0  # sparse LiDAR
        members[gt_rel] = png_bytes(raw)
        lines.append(f"{rgb_rel} {gt_rel} 700.5")
        data.append((rgb, raw))
    return members, lines, data


def test_kitti_none_excluded_kb_crop_and_eigen_mask(tmp_path, rng):
    members, lines, data = kitti_files(rng)
    make_tar(tmp_path / "kitti/kitti_eigen_split_test.tar", members)
    write_list(tmp_path, "data_split/kitti/eigen_test_files_with_gt.txt", lines)
    ds = DepthBenchmark("kitti", tmp_path, PROTO["kitti"])
    assert len(ds) == 3 and ds.num_without_gt == 2
    rgb, raw = data[0]
    s = ds[0]
    # KB crop of 375x1242: top = 375 - 352 = 23, left = (1242 - 1216) // 2 = 13
    assert s["rgb"].shape == (3, 352, 1216) and s["depth"].shape == (1, 352, 1216)
    np.testing.assert_allclose(s["rgb"].numpy(), unit(rgb[23:375, 13:1229]), atol=1e-6)
    d = raw[23:375, 13:1229].astype(np.float64) / 256.0
    np.testing.assert_allclose(s["depth"][0].numpy(), d, rtol=1e-6)
    # Eigen mask on 352x1216: rows 117:321, cols 43:1172 (int() of the published fractions)
    eig = np.zeros((352, 1216), bool)
    eig[int(0.3324324 * 352) : int(0.91351351 * 352), int(0.0359477 * 1216) : int(0.96405229 * 1216)] = True
    assert eig[117:321, 43:1172].all() and eig.sum() == (321 - 117) * (1172 - 43)
    expected = (d > 1e-5) & (d < 80.0) & eig
    assert torch.equal(s["valid_mask"][0], torch.from_numpy(expected))
    K = s["intrinsics"].numpy()
    assert K[0, 0] == pytest.approx(700.5) and K[1, 1] == pytest.approx(700.5)
    assert K[0, 2] == pytest.approx((1242 - 1) / 2 - 13) and K[1, 2] == pytest.approx((375 - 1) / 2 - 23)


def test_eth3d_raw_float32_inf_invalid(tmp_path, rng):
    H, W = 40, 60  # the reader takes the shape from the RGB (the released files are 4032x6048)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 30.0, (H, W)).astype(np.float32)
    depth[:5] = np.inf
    depth[10, 10] = 0.0
    rgb_rel = "rgb/office/images/dslr_images/DSC_0219.JPG"
    gt_rel = "depth/office_dslr_depth/office/ground_truth_depth/dslr_images/DSC_0219.JPG"
    make_tar(tmp_path / "eth3d/eth3d.tar", {rgb_rel: png_bytes(rgb, "JPEG"), gt_rel: depth.astype("<f4").tobytes()})
    write_list(tmp_path, "data_split/eth3d/eth3d_filename_list.txt", [f"{rgb_rel} {gt_rel}"])
    s = DepthBenchmark("eth3d", tmp_path, PROTO["eth3d"])[0]
    expected_depth = np.where(np.isinf(depth), 0.0, depth)
    np.testing.assert_array_equal(s["depth"][0].numpy(), expected_depth)
    expected = np.isfinite(depth) & (depth > 1e-5)
    assert torch.equal(s["valid_mask"][0], torch.from_numpy(expected))
    assert not s["valid_mask"][0, :5].any() and not s["valid_mask"][0, 10, 10]


def test_eth3d_wrong_size_names_member(tmp_path, rng):
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    make_tar(tmp_path / "eth3d/eth3d.tar", {"a.JPG": png_bytes(rgb, "JPEG"), "b.JPG": b"\0" * 12})
    write_list(tmp_path, "data_split/eth3d/eth3d_filename_list.txt", ["a.JPG b.JPG"])
    with pytest.raises(BadSampleError, match=r"b\.JPG"):
        DepthBenchmark("eth3d", tmp_path, PROTO["eth3d"])[0]


def test_scannet_png_mm_and_upper_bound(tmp_path, rng):
    H, W = 48, 64
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    raw = rng.integers(0, 11000, (H, W)).astype(np.uint16)
    make_tar(tmp_path / "scannet/scannet_val_sampled_800_1.tar",
             {"scene0406_02/color/000300.jpg": png_bytes(rgb, "JPEG"), "scene0406_02/depth/000300.png": png_bytes(raw)})
    write_list(tmp_path, "data_split/scannet/scannet_val_sampled_list_800_1.txt",
               ["scene0406_02/color/000300.jpg scene0406_02/depth/000300.png"])
    s = DepthBenchmark("scannet", tmp_path, PROTO["scannet"])[0]
    d = raw / 1000.0
    np.testing.assert_allclose(s["depth"][0].numpy(), d, rtol=1e-6)
    assert torch.equal(s["valid_mask"][0], torch.from_numpy((d > 1e-3) & (d < 10.0)))
    assert s["rgb"].shape == (3, H, W) and float(s["rgb"].abs().max()) <= 1.0


def test_diode_file_mask(tmp_path, rng):
    H, W = 24, 32
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.uniform(0.0, 400.0, (H, W, 1)).astype(np.float32)
    mask = (rng.random((H, W)) > 0.3).astype(np.float32)
    base = "indoors/scene_00021/scan_00189/00021_00189_indoors_200_010"
    make_tar(tmp_path / "diode/diode_val.tar", {f"{base}.png": png_bytes(rgb), f"{base}_depth.npy": npy_bytes(depth),
                                                 f"{base}_depth_mask.npy": npy_bytes(mask)})
    write_list(tmp_path, "data_split/diode/diode_val_all_filename_list.txt",
               [f"{base}.png {base}_depth.npy {base}_depth_mask.npy"])
    s = DepthBenchmark("diode", tmp_path, PROTO["diode"])[0]
    np.testing.assert_array_equal(s["depth"][0].numpy(), depth[..., 0])
    # Marigold's DIODE: the file's mask as is; (0.6, 350) only clips the aligned prediction
    assert ((depth[..., 0] < 0.6) | (depth[..., 0] > 350.0))[mask > 0].sum() > 20  # the range would matter
    assert torch.equal(s["valid_mask"][0], torch.from_numpy(mask > 0))
    assert s["intrinsics"][0, 0] == pytest.approx(886.81 * W / 1024, rel=1e-5)


def _nyu_two(tmp_path, rng, corrupt=False, missing=False):
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    raw = rng.integers(1, 5000, (480, 640)).astype(np.uint16)
    members = {"a/rgb_1.png": png_bytes(rgb), "a/depth_1.png": png_bytes(raw), "a/rgb_2.png": png_bytes(rgb),
               "a/depth_2.png": png_bytes(raw)[:200] if corrupt else png_bytes(raw)}
    if missing:
        del members["a/depth_2.png"]
    make_tar(tmp_path / "nyuv2/nyu_labeled_extracted.tar", members)
    write_list(tmp_path, "data_split/nyu/labeled/filename_list_test.txt",
               ["a/rgb_1.png a/depth_1.png a/filled_1.png", "a/rgb_2.png a/depth_2.png a/filled_2.png"])


def test_missing_member_raises_naming_it(tmp_path, rng):
    _nyu_two(tmp_path, rng, missing=True)
    with pytest.raises(BadSampleError, match=r"a/depth_2\.png"):
        DepthBenchmark("nyuv2", tmp_path, PROTO["nyuv2"])


def test_corrupt_png_raise_or_skip(tmp_path, rng, caplog):
    _nyu_two(tmp_path, rng, corrupt=True)
    ds = DepthBenchmark("nyuv2", tmp_path, PROTO["nyuv2"])
    ds[0]
    with pytest.raises(BadSampleError, match=r"a/depth_2\.png"):
        ds[1]
    with caplog.at_level(logging.WARNING):
        ds = DepthBenchmark("nyuv2", tmp_path, PROTO["nyuv2"], on_bad_sample="skip")
    assert len(ds) == 1 and ds.num_skipped == 1 and "a/depth_2.png" in ds.skipped[0]
    assert "skipped 1 bad samples" in caplog.text


def test_protocol_fields_drive_decoding(tmp_path, rng):
    _nyu_two(tmp_path, rng)
    proto = replace(PROTO["nyuv2"], depth_scale=500.0, max_depth=4.0, crop="none")
    s = DepthBenchmark("nyuv2", tmp_path, proto)[0]
    with tarfile.open(tmp_path / "nyuv2/nyu_labeled_extracted.tar") as tar:
        raw = np.asarray(Image.open(io.BytesIO(tar.extractfile("./a/depth_1.png").read())), dtype=np.float64)
    np.testing.assert_allclose(s["depth"][0].numpy(), raw / 500.0, rtol=1e-6)
    assert torch.equal(s["valid_mask"][0], torch.from_numpy((raw / 500.0 > 1e-3) & (raw / 500.0 < 4.0)))


def test_picklable_for_workers(tmp_path, rng):
    _nyu_two(tmp_path, rng)
    ds = DepthBenchmark("nyuv2", tmp_path, PROTO["nyuv2"])
    first = ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[1]["depth"], first["depth"])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1)
    batch = next(iter(loader))
    assert batch["depth"].shape == (2, 1, 480, 640) and batch["valid_mask"].dtype == torch.bool
