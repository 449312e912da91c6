"""Zero-shot normal benchmarks in DSINE's evaluation packaging (SPEC sections 5 and 7).

Ground truth decodes into the project convention (x LEFT, y UP, z TOWARD the camera), which is
DSINE's own, per NormalProtocol.gt_format:
- 'png': n = png / 255 * 2 - 1, no flip; valid where the PNG's RGB sum > 0.
- 'exr': float channels R, G, B = x, y, z (as DSINE reads them with OpenCV); valid where ||n|| > 0.5.
- 'npy': GeoNet/FrameNet arrays (H, W, 3) with x pointing right: x is negated; valid where ||n|| > 0.5.
Normals are zero where invalid. `depth` is zeros (these sets carry no depth) and `valid_mask`
marks the pixels with ground-truth normals.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .exr import read_exr
from .io import BadSampleError, ListedBenchmark, decode_image, decode_npy, rgb_to_unit
from .layouts import NORMAL_LAYOUTS, NORMAL_SUFFIX, layout_for
from .protocol import NormalProtocol
from .sizing import scaled_input_size

logger = logging.getLogger(__name__)


def decode_normal(data: bytes, gt_format: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth bytes -> (normals (H, W, 3) float32 in the project convention, valid (H, W))."""
    if gt_format == "png":
        raw = decode_image(data, where)
        if raw.ndim != 3 or raw.dtype != np.uint8:
            raise BadSampleError(f"{where}: expected an 8-bit RGB normal PNG, got {raw.dtype} {raw.shape}")
        valid = raw.astype(np.int32).sum(axis=2) > 0
        n = raw.astype(np.float32) / 255.0 * 2.0 - 1.0
    elif gt_format == "exr":
        try:
            planes = read_exr(where, data)
            n = np.stack([planes["R"], planes["G"], planes["B"]], axis=-1)
        except (ValueError, KeyError) as err:
            raise BadSampleError(f"{where}: cannot read normal EXR ({err})") from err
        valid = np.linalg.norm(n, axis=2) > 0.5
    elif gt_format == "npy":
        n = decode_npy(data, where).astype(np.float32)
        if n.ndim != 3 or n.shape[2] != 3:
            raise BadSampleError(f"{where}: expected (H, W, 3) normals, got {n.shape}")
        n[..., 0] *= -1.0
        valid = np.linalg.norm(n, axis=2) > 0.5
    else:
        raise ValueError(f"unknown normal gt_format {gt_format!r}; expected one of {sorted(NORMAL_SUFFIX)}")
    n = np.where(valid[..., None], n, 0.0).astype(np.float32)
    return n, valid


class NormalBenchmark(ListedBenchmark):
    """One DSINE-packaged normal benchmark; items follow the sample dict of `datamodules`.

    name: protocol/layout name ('nyuv2_normal', 'scannet_normal', 'ibims_normal', 'sintel_normal').
    root: data root holding `dsine_eval/<dataset>/...`.
    protocol: its NormalProtocol (gt_format).
    split_root: where DSINE's split list lives (a DSINE checkout); defaults to root.
    on_bad_sample: as DepthBenchmark ('raise' or 'skip', counted in num_skipped and logged).
    """

    def __init__(self, name: str, root: str | Path, protocol: NormalProtocol,
                 split_root: str | Path | None = None, on_bad_sample: str = "raise", input_scale: float = 1.0) -> None:
        if protocol.gt_format not in NORMAL_SUFFIX:
            raise ValueError(f"protocol '{protocol.name}': unknown gt_format {protocol.gt_format!r}")
        self.name, self.protocol = name, protocol
        self.input_size = scaled_input_size(protocol.input_size, input_scale)
        layout = layout_for(NORMAL_LAYOUTS, name, "normal")
        self.folder = Path(root) / layout.folder
        list_path = Path(split_root if split_root is not None else root) / layout.filename_list
        if not list_path.is_file():
            raise FileNotFoundError(f"normal benchmark split list not found: {list_path}")
        entries = [s.strip() for s in list_path.read_text().splitlines() if s.strip()]
        for e in entries:
            if "_img." not in e:
                raise ValueError(f"{list_path}: entry {e!r} does not name an '<id>_img.<ext>' image")
        if len(entries) != protocol.num_images:
            logger.info("%s: %d samples, the released benchmark has %d", name, len(entries), protocol.num_images)
        self._select(entries, on_bad_sample, logger)

    def _read(self, rel: str) -> tuple[bytes, str]:
        path = self.folder / rel
        if not path.is_file():
            raise BadSampleError(f"{path}: listed but missing")
        return path.read_bytes(), str(path)

    def _load(self, entry: str) -> dict:
        stem = entry.rsplit("_img.", 1)[0]
        data, where = self._read(entry)
        rgb = decode_image(data, where)
        normal, valid = self._gt(stem)
        if normal.shape[:2] != rgb.shape[:2]:
            raise BadSampleError(f"{self.folder / stem}: normal size {normal.shape[:2]} differs from RGB {rgb.shape[:2]}")
        K_data, K_where = self._read(stem + "_intrins.npy")
        K = decode_npy(K_data, K_where)
        if K.shape != (3, 3):
            raise BadSampleError(f"{K_where}: expected a (3, 3) intrinsics array, got {K.shape}")
        h, w = valid.shape
        return {
            "rgb": torch.from_numpy(rgb_to_unit(rgb, where)),
            "depth": torch.zeros(1, h, w),
            "valid_mask": torch.from_numpy(valid)[None],
            "normal": torch.from_numpy(normal.transpose(2, 0, 1).copy()),
            "intrinsics": torch.from_numpy(K.astype(np.float32)),
            "name": stem,
            "dataset": self.name,
        }

    def _gt(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        data, where = self._read(stem + NORMAL_SUFFIX[self.protocol.gt_format])
        return decode_normal(data, self.protocol.gt_format, where)
