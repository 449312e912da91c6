"""Procedural zero-shot benchmarks written exactly in the released packagings.

Depth (Marigold): `<out>/<tar>` holding './<member>' entries, and `<out>/data_split/...` filename
lists, per `datamodules.benchmarks.layouts.DEPTH_LAYOUTS`; each dataset in its own encoding:
- nyuv2: RGB png, raw depth png uint16 mm with holes (0) as the Kinect leaves them, filled png.
- kitti: RGB png at 375x1242 with KITTI-like intrinsics, sparse LiDAR-like depth png uint16 (x256),
  list lines 'rgb gt focal', and some frames listed with 'None' ground truth (the released list has
  45 of 697) whose RGB alone is in the tar.
- eth3d: RGB .JPG and headerless float32 depth (also named .JPG), inf where no laser return.
- scannet: RGB .jpg, depth png uint16 mm with holes.
- diode: RGB png, depth .npy (H, W, 1) float32, validity mask .npy (H, W).
Normals (DSINE): `<out>/dsine_eval/<dataset>/<scene>/<id>_img.png`, `<id>_normal.png|.exr|.npy`
per the protocol's gt_format (png = round((n + 1) / 2 * 255), 0 where unknown; exr float RGB = xyz;
npy with x negated as GeoNet/FrameNet), `<id>_intrins.npy`, and DSINE's split lists under
`<out>/data/datasets/<dataset>/split/`.

Scenes come from `datamodules.synthetic.render.render_scene` (room indoors, road for KITTI,
ETH3D and Sintel), rendered with the layout's intrinsics so K is consistent with what the reader
reports. Everything is deterministic per seed (tar headers carry no time or owner).
"""

from __future__ import annotations

import io
import logging
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.benchmarks.exr import write_exr
from datamodules.benchmarks.layouts import (
    DEPTH_LAYOUTS,
    NORMAL_LAYOUTS,
    NORMAL_SUFFIX,
    scale_intrinsics,
)
from datamodules.benchmarks.protocol import load_protocols
from datamodules.hypersim import tone_map
from datamodules.synthetic.render import RenderedView, render_scene

logger = logging.getLogger(__name__)

DEFAULT_SIZES: dict[str, tuple[int, int]] = {name: lay.size_hw for name, lay in DEPTH_LAYOUTS.items()}
DEFAULT_SIZES["eth3d"] = (504, 756)  # 1/8 of the released 4032x6048 (pass sizes to get the full size)
DEFAULT_SIZES.update({name: lay.size_hw for name, lay in NORMAL_LAYOUTS.items()})
KITTI_NONE_FRACTION = 45 / 697


def sample_seed(seed: int, name: str, index: int) -> int:
    """The render seed of sample `index` of benchmark `name` under the writer's `seed`."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode()), index]).generate_state(1)[0])


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "npy":
        np.save(buf, arr)
    else:
        Image.fromarray(arr).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _rgb8(view: RenderedView) -> np.ndarray:
    valid = np.isfinite(view.depth)
    rgb = tone_map(view.rgb_linear, valid if valid.any() else np.ones_like(valid))
    return np.round(rgb * 255.0).astype(np.uint8)


def _holes(rng: np.random.Generator, hw: tuple[int, int], n: int, max_frac: float = 0.12) -> np.ndarray:
    """Boolean (H, W) mask of n random rectangles (sensor dropouts)."""
    mask = np.zeros(hw, bool)
    for _ in range(n):
        h, w = (rng.uniform(0.02, max_frac, 2) * hw).astype(int) + 1
        r, c = rng.integers(0, hw[0] - h + 1), rng.integers(0, hw[1] - w + 1)
        mask[r : r + h, c : c + w] = True
    return mask


def _mm_png(depth: np.ndarray, scale: float, invalid: np.ndarray) -> bytes:
    raw = np.clip(np.round(np.nan_to_num(depth, nan=0.0) * scale), 0, 65535).astype(np.uint16)
    raw[invalid | ~np.isfinite(depth)] = 0
    return _encode(raw, "PNG")


class _TarWriter:
    """Deterministic uncompressed tar with './'-prefixed members (Marigold's naming)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tar = tarfile.open(path, "w", format=tarfile.GNU_FORMAT)  # noqa: SIM115 - closed in close()

    def add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo("./" + name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        self.tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()


def _depth_sample(name: str, i: int, view: RenderedView, rng: np.random.Generator, proto) -> tuple[list, dict]:
    """(list-line columns, {member: bytes}) of sample i of depth benchmark `name`."""
    rgb, depth, hw = _rgb8(view), view.depth, view.depth.shape
    scale = proto.depth_scale
    if name == "nyuv2":
        base = f"test/room_{i // 4:04d}"
        cols = [f"{base}/rgb_{i:04d}.png", f"{base}/depth_{i:04d}.png", f"{base}/filled_{i:04d}.png"]
        filled = np.where(np.isfinite(depth), depth, proto.max_depth)
        files = [_encode(rgb, "PNG"), _mm_png(depth, scale, _holes(rng, hw, 4)), _mm_png(filled, scale, np.zeros(hw, bool))]
    elif name == "kitti":
        drive = f"2011_09_26_drive_{i // 5 + 1:04d}_sync"
        cols = [f"2011_09_26/{drive}/image_02/data/{i:010d}.png",
                f"{drive}/proj_depth/groundtruth/image_02/{i:010d}.png", f"{view.K[0, 0]:.4f}"]
        rows = np.arange(hw[0])[:, None] < int(0.3 * hw[0])  # no LiDAR returns at the top
        lidar_gap = (rng.random(hw) > 0.25) | rows
        files = [_encode(rgb, "PNG"), _mm_png(depth, scale, lidar_gap)]
    elif name == "eth3d":
        scene = ["courtyard", "facade", "terrace"][i % 3]
        cols = [f"rgb/{scene}/images/dslr_images/DSC_{i:04d}.JPG",
                f"depth/{scene}_dslr_depth/{scene}/ground_truth_depth/dslr_images/DSC_{i:04d}.JPG"]
        raw = np.where(np.isfinite(depth) & ~_holes(rng, hw, 3), depth, np.inf).astype("<f4")
        files = [_encode(rgb, "JPEG"), raw.tobytes()]
    elif name == "scannet":
        scene = f"scene{i // 4:04d}_00"
        cols = [f"{scene}/color/{i % 4 * 100:06d}.jpg", f"{scene}/depth/{i % 4 * 100:06d}.png"]
        files = [_encode(rgb, "JPEG"), _mm_png(depth, scale, _holes(rng, hw, 2))]
    elif name == "diode":
        kind = "indoors" if i % 2 == 0 else "outdoor"
        stem = f"{kind}/scene_{i // 4:05d}/scan_{i:05d}/{i // 4:05d}_{i:05d}_{kind}_000_000"
        cols = [f"{stem}.png", f"{stem}_depth.npy", f"{stem}_depth_mask.npy"]
        mask = np.isfinite(depth) & ~_holes(rng, hw, 2)
        d = np.where(mask, depth, 0.0).astype(np.float32)[..., None]
        files = [_encode(rgb, "PNG"), _encode(d, "npy"), _encode(mask.astype(np.float32), "npy")]
    else:
        raise KeyError(f"no synthetic writer for depth benchmark '{name}'")
    return cols, dict(zip(cols, files))


def write_depth_benchmarks(out_root: str | Path, names=tuple(DEPTH_LAYOUTS), n_images: int = 10, seed: int = 0,
                           size: dict[str, tuple[int, int]] | tuple[int, int] | None = None,
                           protocol_file: str | Path | None = None) -> dict[str, int]:
    """Render and pack `n_images` ground-truth samples per depth benchmark; returns {name: count}.

    size: one (H, W) for every dataset, or {name: (H, W)}; default DEFAULT_SIZES (the released
    sizes, except ETH3D at 1/8). KITTI additionally lists ~45/697 of n_images frames with 'None'.
    """
    protos = load_protocols(protocol_file).depth
    out_root, counts = Path(out_root), {}
    for name in names:
        layout, proto = DEPTH_LAYOUTS[name], protos[name]
        hw = _size_for(name, size)
        K = scale_intrinsics(layout.ref_K, layout.size_hw, hw)
        n_none = max(1, round(n_images * KITTI_NONE_FRACTION)) if layout.extra_column == "focal" else 0
        none_at = set(np.linspace(0, n_images + n_none - 1, n_none + 2)[1:-1].round().astype(int)) if n_none else set()
        tar, lines = _TarWriter(out_root / layout.tar), []
        for i in range(n_images + n_none):
            kind = "road" if name == "diode" and i % 2 else layout.render_kind  # DIODE: indoors, outdoor
            view = render_scene(kind, hw[0], hw[1], sample_seed(seed, name, i), K=K)
            cols, files = _depth_sample(name, i, view, np.random.default_rng(sample_seed(seed, name + "/holes", i)), proto)
            if i in none_at:
                cols, files = [cols[0], "None", *cols[2:]], {cols[0]: files[cols[0]]}
            for member, data in files.items():
                tar.add(member, data)
            lines.append(" ".join(cols))
        tar.close()
        counts[name] = _write_list(out_root / layout.filename_list, lines, n_images)
        logger.info("wrote %s: %d samples (%d listed without ground truth) at %s", name, n_images, n_none, hw)
    return counts


def _write_list(path: Path, lines: list[str], count: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return count


def _size_for(name: str, size) -> tuple[int, int]:
    if size is None:
        return DEFAULT_SIZES[name]
    if isinstance(size, dict):
        return tuple(size.get(name, DEFAULT_SIZES[name]))
    return tuple(size)


def _normal_entry(name: str, i: int) -> str:
    """DSINE-style relative image path of sample i."""
    if name == "nyuv2_normal":
        return f"test/{i:06d}_img.png"
    if name == "scannet_normal":
        return f"scene{i // 5:04d}_00/{i % 5 * 10:06d}_img.png"
    if name == "ibims_normal":
        return f"ibims/{['corridor', 'kitchen', 'office'][i % 3]}_{i // 3 + 1:02d}_img.png"
    if name == "sintel_normal":
        return f"alley_{i // 10 + 1}/frame_{i % 10 + 1:04d}_img.png"
    raise KeyError(f"no synthetic writer for normal benchmark '{name}'")


def _normal_file(normal: np.ndarray, valid: np.ndarray, gt_format: str, path: Path) -> None:
    n = np.where(valid[..., None], normal, 0.0).astype(np.float32)
    if gt_format == "png":
        png = np.round((n + 1.0) / 2.0 * 255.0).astype(np.uint8)
        png[~valid] = 0
        path.write_bytes(_encode(png, "PNG"))
    elif gt_format == "exr":
        write_exr(path, n, compression="zip")
    elif gt_format == "npy":
        n[..., 0] *= -1.0  # GeoNet/FrameNet store x pointing right
        np.save(path, n)
    else:
        raise ValueError(f"unknown normal gt_format {gt_format!r}")


def write_normal_benchmarks(out_root: str | Path, names=tuple(NORMAL_LAYOUTS), n_images: int = 10, seed: int = 0,
                            size: dict[str, tuple[int, int]] | tuple[int, int] | None = None,
                            protocol_file: str | Path | None = None) -> dict[str, int]:
    """Render and write `n_images` samples per normal benchmark in DSINE's layout; returns {name: count}."""
    protos = load_protocols(protocol_file).normal
    out_root, counts = Path(out_root), {}
    for name in names:
        layout, gt_format = NORMAL_LAYOUTS[name], protos[name].gt_format
        hw = _size_for(name, size)
        entries = []
        for i in range(n_images):
            view = render_scene(layout.render_kind, hw[0], hw[1], sample_seed(seed, name, i))
            valid = np.linalg.norm(view.normal, axis=2) > 0.5
            if name == "nyuv2_normal":  # GeoNet ground truth has holes
                valid &= ~_holes(np.random.default_rng(sample_seed(seed, name + "/holes", i)), hw, 3)
            entry = _normal_entry(name, i)
            stem = out_root / layout.folder / entry.rsplit("_img.", 1)[0]
            stem.parent.mkdir(parents=True, exist_ok=True)
            (stem.parent / Path(entry).name).write_bytes(_encode(_rgb8(view), "PNG"))
            _normal_file(view.normal, valid, gt_format, Path(str(stem) + NORMAL_SUFFIX[gt_format]))
            np.save(str(stem) + "_intrins.npy", view.K.astype(np.float32))
            entries.append(entry)
        counts[name] = _write_list(out_root / layout.filename_list, entries, n_images)
        logger.info("wrote %s: %d samples (%s ground truth) at %s", name, n_images, gt_format, hw)
    return counts
