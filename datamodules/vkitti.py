"""Virtual KITTI 2 reader of the released layout (SPEC sections 5, 6).

Each sample: rgb from the JPEG, planar depth from the uint16 centimetre PNG (65535 = sky), valid
where min_depth < depth < max_depth, normals derived from depth with the frame's intrinsics
(local plane fit, cached once per frame as .npy under `cache_dir`), optional KB crop (352x1216).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from torch.utils.data import Dataset

from datamodules.io_utils import BadSampleError, SkipCounter, make_sample, read_image
from datamodules.normals_from_depth import normals_from_depth
from datamodules.transforms import crop as crop_sample
from datamodules.transforms import resize
from datamodules.vkitti_layout import (
    CONDITIONS,
    DEPTH_UNITS_PER_METRE,
    INTRINSIC_HEADER,
    SCENES,
    SKY,
    depth_path,
    intrinsics_path,
    rgb_path,
)

VKittiCrop = Literal["kb"]
"""'kb': the 352x1216 KITTI benchmark crop (None = no crop)."""

logger = logging.getLogger(__name__)

KB_HEIGHT, KB_WIDTH = 352, 1216


@dataclass(frozen=True)
class VKFrame:
    scene: str
    cond: str
    cam: int
    frame: int

    @property
    def name(self) -> str:
        return f"{self.scene}/{self.cond}/Camera_{self.cam}/{self.frame:05d}"


def read_intrinsics(path: Path) -> dict[tuple[int, int], np.ndarray]:
    """intrinsic.txt -> {(frame, camera): (3,3) K}; raises ValueError naming the file on a bad row."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing Virtual KITTI 2 intrinsics file")
    out = {}
    lines = path.read_text().splitlines()
    if not lines or lines[0].split()[:2] != ["frame", "cameraID"]:
        raise ValueError(f"{path}: expected header '{INTRINSIC_HEADER}'")
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split()
        try:
            frame, cam = int(parts[0]), int(parts[1])
            fx, fy, cx, cy = (float(v) for v in parts[2:6])
        except (ValueError, IndexError) as err:
            raise ValueError(f"{path}:{n}: expected 'frame cameraID fx fy cx cy', got {line!r}") from err
        out[(frame, cam)] = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    return out


class VirtualKITTIDataset(Dataset):
    """Virtual KITTI 2 frames as sample dicts (`datamodules/__init__.py`).

    `crop`: 'kb' (rows H-352:H, cols (W-1216)//2 : +1216, intrinsics shifted) or None.
    `height`/`width`: resize after the crop (None = keep). Valid depth: (min_depth, max_depth) m (open, as Marigold).
    `cache_dir`: where derived normals are kept as .npy (float16, full frame); None recomputes.
    `on_bad_sample`: 'raise' or 'skip' (logged, counted in `num_skipped`).
    """

    def __init__(
        self,
        root: str | Path,
        scenes: tuple[str, ...] | list[str] = SCENES,
        conditions: tuple[str, ...] | list[str] = CONDITIONS,
        cameras: tuple[int, ...] | list[int] = (0, 1),
        crop: str | None = "kb",
        max_depth: float = 80.0,
        min_depth: float = 1e-5,
        height: int | None = None,
        width: int | None = None,
        cache_dir: str | Path | None = None,
        on_bad_sample: str = "raise",
        transform: Callable[[dict], dict] | None = None,
        name: str = "vkitti",
    ) -> None:
        if crop is not None and crop not in get_args(VKittiCrop):
            raise ValueError(f"crop: expected one of {[*get_args(VKittiCrop), None]}, got {crop!r}")
        self.root, self.crop, self.min_depth, self.max_depth = Path(root), crop, min_depth, max_depth
        self.height, self.width, self.transform, self.dataset_name = height, width, transform, name
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.skips = SkipCounter(on_bad_sample, name)
        self.frames: list[VKFrame] = []
        self.intrinsics: dict[tuple[str, str], dict] = {}
        for scene in scenes:
            for cond in conditions:
                self.intrinsics[(scene, cond)] = read_intrinsics(intrinsics_path(self.root, scene, cond))
                for cam in cameras:
                    folder = depth_path(self.root, scene, cond, cam, 0).parent
                    if not folder.is_dir():
                        raise FileNotFoundError(f"{folder}: missing Virtual KITTI 2 depth folder")
                    ids = sorted(int(p.stem.split("_")[1]) for p in folder.glob("depth_*.png"))
                    self.frames.extend(VKFrame(scene, cond, cam, i) for i in ids)
        logger.info("%s: %d frames from %s", name, len(self.frames), self.root)

    @property
    def num_skipped(self) -> int:
        return self.skips.num_skipped

    def __len__(self) -> int:
        return len(self.frames)

    def _normals(self, fr: VKFrame, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
        valid = (depth > 0) & np.isfinite(depth)
        if self.cache_dir is None:
            return normals_from_depth(depth, valid, K)
        path = self.cache_dir / fr.scene / fr.cond / f"Camera_{fr.cam}" / f"normal_{fr.frame:05d}.npy"
        if path.is_file():
            try:
                cached = np.load(path)
                if cached.shape == (*depth.shape, 3):
                    return cached.astype(np.float32)
            except (OSError, ValueError) as err:
                logger.warning("%s: unreadable normal cache, recomputing: %s", path, err)
        normal = normals_from_depth(depth, valid, K).astype(np.float16)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, normal)
        os.replace(tmp, path)  # atomic: loader workers may race
        return normal.astype(np.float32)

    def _load(self, index: int) -> dict:
        fr = self.frames[index]
        rgb = read_image(rgb_path(self.root, fr.scene, fr.cond, fr.cam, fr.frame))
        dpath = depth_path(self.root, fr.scene, fr.cond, fr.cam, fr.frame)
        raw = read_image(dpath)
        if raw.dtype != np.uint16 or raw.ndim != 2:
            raise BadSampleError(f"{dpath}: expected a 16-bit single-channel PNG, got {raw.dtype} {raw.shape}")
        if rgb.shape != (*raw.shape, 3):
            raise BadSampleError(f"{rgb_path(self.root, fr.scene, fr.cond, fr.cam, fr.frame)}: shape {rgb.shape} does not match depth {raw.shape}")
        K = self.intrinsics[(fr.scene, fr.cond)].get((fr.frame, fr.cam))
        if K is None:
            raise BadSampleError(f"{intrinsics_path(self.root, fr.scene, fr.cond)}: no row for frame {fr.frame} camera {fr.cam}")
        depth = np.where(raw == SKY, 0.0, raw.astype(np.float32) / DEPTH_UNITS_PER_METRE).astype(np.float32)
        valid = (depth > self.min_depth) & (depth < self.max_depth)
        if not valid.any():
            raise BadSampleError(f"{dpath}: no valid depth pixel in ({self.min_depth}, {self.max_depth}) m")
        normal = self._normals(fr, depth, K) * valid[..., None]
        sample = make_sample(rgb.astype(np.float32) / 255.0, depth, valid, normal, K, fr.name, self.dataset_name)
        if self.crop == "kb":
            h, w = raw.shape
            if h < KB_HEIGHT or w < KB_WIDTH:
                raise ValueError(f"crop='kb' needs images of at least {KB_HEIGHT}x{KB_WIDTH}, {dpath} is {h}x{w}")
            sample = crop_sample(sample, h - KB_HEIGHT, (w - KB_WIDTH) // 2, KB_HEIGHT, KB_WIDTH)
        if self.height is not None and self.width is not None:
            sample = resize(sample, self.height, self.width)
        return self.transform(sample) if self.transform is not None else sample

    def __getitem__(self, index: int) -> dict:
        return self.skips.get(index, len(self), self._load)
