"""Zero-shot depth benchmarks read straight from Marigold's released tars (SPEC section 7).

Per sample: the RGB at native resolution, the ground truth decoded by the layout's format and the
protocol's depth_scale, and valid_mask = decode-valid & the protocol's crop/mask rule &
(min_depth < g < max_depth) unless the protocol says `range_masks_gt: false` (DIODE: the range
then only clips aligned predictions). Crop/mask rules:
- 'nyu_eigen': rows 45:471, cols 41:601 of 480x640 (scaled proportionally at other sizes).
- 'kitti_eigen': KB crop to 352x1216 (top = H - 352, left = (W - 1216) // 2) of RGB, depth and
  intrinsics, then the Eigen mask rows int(0.3324324 H):int(0.91351351 H),
  cols int(0.0359477 W):int(0.96405229 W) of the cropped size.
- 'file': the dataset's own validity mask (DIODE's *_depth_mask.npy, list column 2).
- 'none'.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .io import (
    BadSampleError,
    ListedBenchmark,
    TarMembers,
    decode_image,
    decode_npy,
    rgb_to_unit,
)
from .layouts import DEPTH_LAYOUTS, layout_for, scale_intrinsics
from .protocol import DepthProtocol
from .sizing import scaled_input_size

logger = logging.getLogger(__name__)

KB_CROP_HW = (352, 1216)
NYU_EIGEN = ((45, 471), (41, 601), (480, 640))  # rows, cols, at this reference size
KITTI_EIGEN_FRACS = ((0.3324324, 0.91351351), (0.0359477, 0.96405229))
CROP_RULES = ("none", "nyu_eigen", "kitti_eigen", "file")


def kb_crop_box(height: int, width: int) -> tuple[int, int]:
    """(top, left) of KITTI's 352x1216 benchmark crop; raises ValueError for smaller images."""
    if height < KB_CROP_HW[0] or width < KB_CROP_HW[1]:
        raise ValueError(f"KITTI benchmark crop needs at least {KB_CROP_HW} pixels, image is {(height, width)}")
    return height - KB_CROP_HW[0], (width - KB_CROP_HW[1]) // 2


def eval_mask(rule: str, height: int, width: int) -> np.ndarray:
    """Boolean (H, W) region kept by a crop rule ('file' and 'none' keep everything)."""
    mask = np.zeros((height, width), bool)
    if rule == "nyu_eigen":
        (r0, r1), (c0, c1), (rh, rw) = NYU_EIGEN
        sy, sx = height / rh, width / rw
        mask[round(r0 * sy) : round(r1 * sy), round(c0 * sx) : round(c1 * sx)] = True
    elif rule == "kitti_eigen":
        (a, b), (c, d) = KITTI_EIGEN_FRACS
        mask[int(a * height) : int(b * height), int(c * width) : int(d * width)] = True
    elif rule in ("none", "file"):
        mask[:] = True
    else:
        raise ValueError(f"unknown crop rule {rule!r}; expected one of {CROP_RULES}")
    return mask


def read_filename_list(path: Path) -> list[list[str]]:
    """Whitespace-split non-empty lines of a filename list; FileNotFoundError naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"benchmark filename list not found: {path}")
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


class DepthBenchmark(ListedBenchmark):
    """One Marigold-packaged depth benchmark; items follow the sample dict of `datamodules`.

    name: protocol/layout name ('nyuv2', 'kitti', 'eth3d', 'scannet', 'diode').
    root: data root holding the tar at the layout's relative path.
    protocol: the benchmark's DepthProtocol (scale, valid range, crop rule).
    on_bad_sample: 'raise' (default) raises BadSampleError naming the file on a missing or
        undecodable member; 'skip' checks every listed sample once at construction, drops the bad
        ones, logs each and counts them in `num_skipped` / `skipped`.
    split_root: where the filename list lives (a Marigold checkout); defaults to root.
    Lines whose ground-truth column is 'None' are excluded (the released protocol, e.g. KITTI 652
    of 697), counted in `num_without_gt`.
    """

    def __init__(self, name: str, root: str | Path, protocol: DepthProtocol, on_bad_sample: str = "raise",
                 split_root: str | Path | None = None, input_scale: float = 1.0) -> None:
        if protocol.crop not in CROP_RULES:
            raise ValueError(f"protocol '{protocol.name}': unknown crop {protocol.crop!r}; expected {CROP_RULES}")
        self.name, self.protocol = name, protocol
        self.input_size = scaled_input_size(protocol.input_size, input_scale)
        self.layout = layout_for(DEPTH_LAYOUTS, name, "depth")
        self.tar = TarMembers(Path(root) / self.layout.tar)
        list_path = Path(split_root if split_root is not None else root) / self.layout.filename_list
        min_cols = 3 if self.layout.extra_column in ("focal", "mask") else 2
        entries, self.num_without_gt = [], 0
        for lineno, cols in enumerate(read_filename_list(list_path), 1):
            if len(cols) < min_cols:
                raise ValueError(f"{list_path}:{lineno}: expected >= {min_cols} columns, got {cols}")
            if cols[1] == "None":
                self.num_without_gt += 1
                continue
            entries.append(cols)
        if self.num_without_gt:
            logger.info("%s: %d of %d listed frames have ground truth", name, len(entries),
                        len(entries) + self.num_without_gt)
        if len(entries) != protocol.num_images:
            logger.info("%s: %d samples, the released benchmark has %d", name, len(entries), protocol.num_images)
        if not self.layout.K_known:
            logger.info("%s: the archive carries no calibration; intrinsics are nominal", name)
        if on_bad_sample == "raise":
            for cols in entries:  # fail early on a listed member the archive lacks
                for member in cols[: min_cols if self.layout.extra_column == "mask" else 2]:
                    if member not in self.tar:
                        raise BadSampleError(f"{self._where(member)}: listed in {list_path} but not in the archive")
        self._select(entries, on_bad_sample, logger)

    def _where(self, member: str) -> str:
        return f"{self.tar.path}:./{member}"

    def _decode_gt(self, member: str, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(depth metres with 0 where undecodable, decode-valid mask), both (H, W)."""
        data, where, fmt = self.tar.read(member), self._where(member), self.layout.gt_format
        if fmt == "png16":
            raw = decode_image(data, where)
            if raw.ndim != 2:
                raise BadSampleError(f"{where}: expected a single-channel depth PNG, got shape {raw.shape}")
            raw = raw.astype(np.float32)
            ok = raw > 0
        elif fmt == "raw_f32":
            if len(data) != 4 * hw[0] * hw[1]:
                raise BadSampleError(f"{where}: {len(data)} bytes, expected float32 of the RGB size {hw}")
            raw = np.frombuffer(data, "<f4").reshape(hw).copy()
            ok = np.isfinite(raw)
        elif fmt == "npy":
            raw = decode_npy(data, where).squeeze().astype(np.float32)
            ok = np.isfinite(raw)
        else:
            raise ValueError(f"unknown depth gt_format {fmt!r}")
        if raw.shape != hw:
            raise BadSampleError(f"{where}: depth shape {raw.shape} differs from the RGB's {hw}")
        depth = np.where(ok, raw / self.protocol.depth_scale, 0.0).astype(np.float32)
        return depth, ok

    def _load(self, cols: list[str]) -> dict:
        p, layout = self.protocol, self.layout
        rgb = decode_image(self.tar.read(cols[0]), self._where(cols[0]))
        hw = rgb.shape[:2]
        depth, valid = self._decode_gt(cols[1], hw)
        if layout.extra_column == "mask":
            mask = decode_npy(self.tar.read(cols[2]), self._where(cols[2])).squeeze()
            if mask.shape != hw:
                raise BadSampleError(f"{self._where(cols[2])}: mask shape {mask.shape}, expected {hw}")
            if p.crop == "file":
                valid &= mask.astype(bool)
        K = scale_intrinsics(layout.ref_K, layout.size_hw, hw)
        if layout.extra_column == "focal":
            K[0, 0] = K[1, 1] = float(cols[2])
        if p.crop == "kitti_eigen":
            top, left = kb_crop_box(*hw)
            box = (slice(top, top + KB_CROP_HW[0]), slice(left, left + KB_CROP_HW[1]))
            rgb, depth, valid = rgb[box], depth[box], valid[box]
            K[0, 2] -= left
            K[1, 2] -= top
        valid &= eval_mask(p.crop, *depth.shape)
        if p.range_masks_gt:
            valid &= (depth > p.min_depth) & (depth < p.max_depth)
        return {
            "rgb": torch.from_numpy(rgb_to_unit(rgb, self._where(cols[0]))),
            "depth": torch.from_numpy(depth)[None],
            "valid_mask": torch.from_numpy(valid)[None],
            "normal": torch.zeros(3, *depth.shape),
            "intrinsics": torch.from_numpy(K.astype(np.float32)),
            "name": cols[0],
            "dataset": self.name,
        }
