"""Normal benchmark readers (DSINE packaging) and the minimal EXR reader, on hand-made arrays."""

import io
import struct
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.benchmarks import BadSampleError, NormalBenchmark
from datamodules.benchmarks.exr import read_exr, write_exr
from datamodules.benchmarks.protocol import load_protocols

PROTO = load_protocols().normal


def save_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def write_sample(folder, stem, rgb, gt, fmt, K=None):
    save_png(folder / f"{stem}_img.png", rgb)
    if fmt == "png":
        save_png(folder / f"{stem}_normal.png", gt)
    elif fmt == "exr":
        write_exr(folder / f"{stem}_normal.exr", gt)
    else:
        np.save(folder / f"{stem}_normal.npy", gt)
    np.save(folder / f"{stem}_intrins.npy", np.eye(3) if K is None else K)


def write_split(root, rel, entries):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(entries) + "\n")


def test_png_wall_facing_camera_and_validity(tmp_path):
    H, W = 6, 8
    rgb = np.full((H, W, 3), 128, np.uint8)
    gt = np.zeros((H, W, 3), np.uint8)
    gt[:, :4] = (128, 128, 255)  # a wall facing the camera: (0, 0, 1)
    gt[:, 4:6] = (255, 128, 128)  # facing +x (left in the project convention)
    # columns 6, 7 stay (0, 0, 0): no ground truth
    K = np.array([[500.0, 0, 3.5], [0, 500.0, 2.5], [0, 0, 1]])
    write_sample(tmp_path / "dsine_eval/nyuv2/test", "000000", rgb, gt, "png", K)
    write_split(tmp_path, "data/datasets/nyuv2/split/test.txt", ["test/000000_img.png"])
    ds = NormalBenchmark("nyuv2_normal", tmp_path, PROTO["nyuv2_normal"])
    assert len(ds) == 1
    s = ds[0]
    n = s["normal"].numpy()
    # png/255*2-1 with no flip: 128 -> 1/255, 255 -> 1
    np.testing.assert_allclose(n[:, 0, 0], [1 / 255, 1 / 255, 1.0], atol=1e-6)
    np.testing.assert_allclose(n[:, 0, 4], [1.0, 1 / 255, 1 / 255], atol=1e-6)
    assert (n[:, :, 6:] == 0).all()
    expected = np.zeros((H, W), bool)
    expected[:, :6] = True
    assert torch.equal(s["valid_mask"][0], torch.from_numpy(expected))
    assert s["depth"].shape == (1, H, W) and s["depth"].abs().sum() == 0
    np.testing.assert_allclose(s["intrinsics"].numpy(), K)
    assert s["name"] == "test/000000" and s["dataset"] == "nyuv2_normal"


def test_exr_normals_and_norm_validity(tmp_path):
    H, W = 5, 7
    gt = np.zeros((H, W, 3), np.float32)
    gt[..., 2] = 1.0
    gt[0, 0] = (0.6, 0.0, 0.8)
    gt[1, :] = (0.2, 0.2, 0.2)  # ||n|| = 0.35 < 0.5 -> invalid
    rgb = np.zeros((H, W, 3), np.uint8)
    write_sample(tmp_path / "dsine_eval/sintel/alley_1", "frame_0001", rgb, gt, "exr")
    write_split(tmp_path, "data/datasets/sintel/split/sintel.txt", ["alley_1/frame_0001_img.png"])
    s = NormalBenchmark("sintel_normal", tmp_path, PROTO["sintel_normal"])[0]
    n = s["normal"].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(n[0, 0], [0.6, 0.0, 0.8], atol=1e-7)
    np.testing.assert_allclose(n[2, 3], [0.0, 0.0, 1.0])
    assert (n[1] == 0).all()
    expected = np.ones((H, W), bool)
    expected[1] = False
    assert torch.equal(s["valid_mask"][0], torch.from_numpy(expected))


def test_npy_negates_x(tmp_path):
    H, W = 4, 4
    gt = np.zeros((H, W, 3), np.float32)
    gt[...] = (0.6, 0.0, 0.8)  # GeoNet/FrameNet: x points right
    gt[3, 3] = 0.0
    write_sample(tmp_path / "dsine_eval/scannet/scene0532_00", "000000", np.zeros((H, W, 3), np.uint8), gt, "npy")
    write_split(tmp_path, "data/datasets/scannet/split/test.txt", ["scene0532_00/000000_img.png"])
    proto = replace(PROTO["scannet_normal"], gt_format="npy")
    s = NormalBenchmark("scannet_normal", tmp_path, proto)[0]
    np.testing.assert_allclose(s["normal"][:, 0, 0].numpy(), [-0.6, 0.0, 0.8], atol=1e-7)
    assert not s["valid_mask"][0, 3, 3] and s["valid_mask"][0].sum() == H * W - 1


def test_missing_and_corrupt_files(tmp_path, caplog):
    gt = np.full((4, 4, 3), 200, np.uint8)
    for i in range(3):
        write_sample(tmp_path / "dsine_eval/nyuv2/test", f"{i:06d}", np.zeros((4, 4, 3), np.uint8), gt, "png")
    (tmp_path / "dsine_eval/nyuv2/test/000001_normal.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "dsine_eval/nyuv2/test/000002_intrins.npy").unlink()
    write_split(tmp_path, "data/datasets/nyuv2/split/test.txt", [f"test/{i:06d}_img.png" for i in range(3)])
    ds = NormalBenchmark("nyuv2_normal", tmp_path, PROTO["nyuv2_normal"])
    ds[0]
    with pytest.raises(BadSampleError, match=r"000001_normal\.png"):
        ds[1]
    with pytest.raises(BadSampleError, match=r"000002_intrins\.npy"):
        ds[2]
    ds = NormalBenchmark("nyuv2_normal", tmp_path, PROTO["nyuv2_normal"], on_bad_sample="skip")
    assert len(ds) == 1 and ds.num_skipped == 2
    assert "skipped 2 bad samples" in caplog.text


def _exr_by_hand(width, height, rows):
    """An uncompressed FLOAT EXR with channels B, G, R, assembled byte by byte from the spec."""

    def attr(name, typ, value):
        return name.encode() + b"\0" + typ.encode() + b"\0" + struct.pack("<i", len(value)) + value

    ch = b"".join(c + b"\0" + struct.pack("<i", 2) + b"\0\0\0\0" + struct.pack("<ii", 1, 1) for c in (b"B", b"G", b"R"))
    header = (attr("channels", "chlist", ch + b"\0") + attr("compression", "compression", b"\0")
              + attr("dataWindow", "box2i", struct.pack("<4i", 0, 0, width - 1, height - 1))
              + attr("displayWindow", "box2i", struct.pack("<4i", 0, 0, width - 1, height - 1))
              + attr("lineOrder", "lineOrder", b"\0") + attr("pixelAspectRatio", "float", struct.pack("<f", 1))
              + attr("screenWindowCenter", "v2f", struct.pack("<2f", 0, 0))
              + attr("screenWindowWidth", "float", struct.pack("<f", 1)) + b"\0")
    start = 8 + len(header) + 8 * height
    chunks = []
    for y, (b, g, r) in enumerate(rows):
        data = struct.pack(f"<{width}f", *b) + struct.pack(f"<{width}f", *g) + struct.pack(f"<{width}f", *r)
        chunks.append(struct.pack("<ii", y, len(data)) + data)
    offsets = [start + sum(len(c) for c in chunks[:i]) for i in range(height)]
    return struct.pack("<ii", 20000630, 2) + header + struct.pack(f"<{height}Q", *offsets) + b"".join(chunks)


def test_exr_reader_on_spec_bytes():
    rows = [([1.0, 2.0], [3.0, 4.0], [5.0, 6.0]), ([-1.0, 0.5], [0.25, 0.0], [7.0, 8.0])]
    planes = read_exr("hand.exr", _exr_by_hand(2, 2, rows))
    np.testing.assert_array_equal(planes["B"], [[1, 2], [-1, 0.5]])
    np.testing.assert_array_equal(planes["G"], [[3, 4], [0.25, 0]])
    np.testing.assert_array_equal(planes["R"], [[5, 6], [7, 8]])


@pytest.mark.parametrize("compression", ["none", "zips", "zip", "piz"])
def test_exr_roundtrip(tmp_path, compression):
    img = np.random.default_rng(1).normal(size=(37, 19, 3)).astype(np.float32)
    img[3:30] = 0.5  # compressible rows
    write_exr(tmp_path / "a.exr", img, compression=compression)
    planes = read_exr(tmp_path / "a.exr")
    np.testing.assert_array_equal(np.stack([planes["R"], planes["G"], planes["B"]], -1), img)


def test_exr_rejects_garbage(tmp_path):
    with pytest.raises(ValueError, match="bad.exr"):
        read_exr("bad.exr", b"not an exr file")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(buf, format="PNG")
    with pytest.raises(ValueError, match="p.exr"):
        read_exr("p.exr", buf.getvalue())


@pytest.mark.parametrize("cut", ["truncated", "corrupt"])
def test_exr_damage_is_a_named_error_and_the_skip_policy_applies(tmp_path, cut):
    """Issue 11 item 8: a truncated or corrupt ZIP-compressed EXR raised zlib.error / struct.error,
    which escaped the benchmark's 'skip' policy."""
    rgb = np.full((8, 12, 3), 100, np.uint8)
    gt = np.zeros((8, 12, 3), np.float32)
    gt[..., 2] = 1.0  # compressible: the ZIP chunks really hold deflate streams
    folder = tmp_path / "dsine_eval/sintel/alley_1"
    for stem in ("frame_0001", "frame_0002"):
        write_sample(folder, stem, rgb, gt, "exr")
        write_exr(folder / f"{stem}_normal.exr", gt, compression="zip")
    bad = folder / "frame_0002_normal.exr"
    data = bad.read_bytes()
    if cut == "truncated":
        bad.write_bytes(data[: len(data) * 2 // 3])
    else:  # scramble the end of the compressed pixel data, keep the header and offsets
        bad.write_bytes(data[:-30] + bytes(255 - b for b in data[-30:]))
    with pytest.raises(ValueError, match="frame_0002_normal.exr"):
        read_exr(bad)
    write_split(tmp_path, "data/datasets/sintel/split/sintel.txt", ["alley_1/frame_0001_img.png", "alley_1/frame_0002_img.png"])
    ds = NormalBenchmark("sintel_normal", tmp_path, PROTO["sintel_normal"], on_bad_sample="skip")
    assert len(ds) == 1 and ds.num_skipped == 1 and "frame_0002_normal.exr" in ds.skipped[0]
