"""Hypersim reader: the raw released HDF5 layout, or a preprocessed cache of it (SPEC sections 5, 6).

Each sample: tone-mapped rgb (quantised to 8 bits, as an image the model would see), planar depth
from Hypersim's distance, validity (entity != -1 and finite distance), normals in the project
convention (normal_cam with x negated; inward normals flipped in the world frame), K.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from datamodules.hypersim_kernels import (  # noqa: F401 (FLIP_THRESHOLD, tone_map, ...: this module's API)
    FLIP_THRESHOLD,
    apply_tone,
    finite_pixels,
    hypersim_intrinsics,
    inward_normals,
    inward_normals_fast,
    planar_depth_from_distance,
    tone_map,
    tone_map_uint8,
    tone_scale,
)
from datamodules.hypersim_layout import CSV_NAME, camera_positions_path, frame_paths
from datamodules.hypersim_raw import distance_validity, load_raw_sample
from datamodules.io_utils import BadSampleError, SkipCounter, check_policy, make_sample, read_hdf5
from datamodules.transforms import resize

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameId:
    scene: str
    cam: str
    frame: int

    @property
    def name(self) -> str:
        return f"{self.scene}/{self.cam}/{self.frame:04d}"

    @property
    def cache_file(self) -> str:
        return f"{self.scene}__{self.cam}__{self.frame:04d}.npz"


def read_split(root: str | Path, split: str) -> list[FrameId]:
    """Frames of the official split: included_in_public_release and split_partition_name == split."""
    path = Path(root) / CSV_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing Hypersim split file (expected the released {CSV_NAME})")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"scene_name", "camera_name", "frame_id", "included_in_public_release", "split_partition_name"}
        if not need <= set(reader.fieldnames or []):
            raise ValueError(f"{path}: expected columns {sorted(need)}, got {reader.fieldnames}")
        return [
            FrameId(r["scene_name"], r["camera_name"], int(r["frame_id"]))
            for r in reader
            if r["included_in_public_release"].strip().lower() == "true" and r["split_partition_name"] == split
        ]


def read_validity(root: Path, fid: FrameId) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distance (H,W) as stored, has_entity = entity != -1, valid = has_entity & finite distance);
    raises BadSampleError on infinite or negative distance."""
    paths = frame_paths(root, fid.scene, fid.frame, fid.cam)
    entity = read_hdf5(paths["render_entity_id"])
    dist = read_hdf5(paths["depth_meters"])
    has_entity, valid, _ = distance_validity(entity, dist, paths["depth_meters"])
    return dist, has_entity, valid


class _CameraPositions:
    """Per-scene camera keyframe positions, read once per process."""

    def __init__(self, root: Path) -> None:
        self.root, self.cache = root, {}

    def __call__(self, fid: FrameId) -> np.ndarray:
        key = (fid.scene, fid.cam)
        if key not in self.cache:
            self.cache[key] = read_hdf5(camera_positions_path(self.root, fid.scene, fid.cam)).astype(np.float64)
        pos = self.cache[key]
        if fid.frame >= len(pos):
            raise BadSampleError(f"{camera_positions_path(self.root, fid.scene, fid.cam)}: no keyframe {fid.frame}")
        return pos[fid.frame]


def project_normals(normal_cam: np.ndarray, flip: np.ndarray, good: np.ndarray) -> np.ndarray:
    """float16 (H,W,3) normals in the project convention: Hypersim's normal_cam with x negated, the
    `flip` pixels negated, 0 outside `good`. float16 input is handled on its sign bits (exact)."""
    if normal_cam.dtype == np.float16:
        signs = flip.astype(np.uint16) << 15
        bits = normal_cam.view(np.uint16) ^ signs[..., None]
        bits[..., 0] ^= 0x8000
        bits *= good[..., None]
        return bits.view(np.float16)
    n_cam = normal_cam.astype(np.float32)
    n_cam[..., 0] *= -1.0
    n_cam[flip] *= -1.0
    n_cam[~good] = 0.0
    return n_cam.astype(np.float16)


def decode_raw(root: Path, fid: FrameId, camera_position: Callable[[FrameId], np.ndarray]) -> dict:
    """Native-resolution decoded frame: rgb uint8 (H,W,3), distance float16 (H,W), normal float16
    (H,W,3, project convention, outward, 0 where invalid), valid bool (H,W)."""
    paths = frame_paths(root, fid.scene, fid.frame, fid.cam)
    dist, has_entity, valid = read_validity(root, fid)
    if not valid.any():
        raise BadSampleError(f"{paths['depth_meters']}: no valid pixel (all entity ids -1 or NaN distance)")
    arrays = {k: read_hdf5(paths[k]) for k in ("color", "normal_cam", "normal_world", "position")}
    for key, arr in arrays.items():
        if arr.shape != (*dist.shape, 3):
            raise BadSampleError(f"{paths[key]}: shape {arr.shape}, expected {(*dist.shape, 3)}")
    hdr = arrays["color"]
    if (has_entity & ~finite_pixels(hdr)).any():
        raise BadSampleError(f"{paths['color']}: non-finite colour values at valid pixels")
    rgb = tone_map_uint8(hdr, has_entity)
    flip = inward_normals_fast(arrays["normal_world"], arrays["position"], camera_position(fid))
    normal = project_normals(arrays["normal_cam"], flip, valid & finite_pixels(arrays["normal_cam"]))
    return {"rgb": rgb, "distance": dist.astype(np.float16, copy=False), "normal": normal, "valid": valid}


class HypersimDataset(Dataset):
    """Hypersim frames of one official split as sample dicts (`datamodules/__init__.py`).

    `height`/`width`: output resolution (None = native). Frames with more than
    `max_invalid_fraction` invalid pixels are dropped at construction (count logged).
    `cache_dir`: a folder written by `preprocess_hypersim` (faster, identical samples); None reads
    the raw HDF5 files, scanning every frame's depth and entity ids once at construction.
    `on_bad_sample`: 'raise' (BadSampleError naming the file) or 'skip' (logged, counted in
    `num_skipped`). `transform`: applied to each sample dict last (e.g. a flip).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        height: int | None = None,
        width: int | None = None,
        max_invalid_fraction: float = 0.01,
        on_bad_sample: str = "raise",
        cache_dir: str | Path | None = None,
        transform: Callable[[dict], dict] | None = None,
        name: str = "hypersim",
    ) -> None:
        self.root, self.split, self.height, self.width = Path(root), split, height, width
        self.transform, self.dataset_name = transform, name
        self.skips = SkipCounter(check_policy(on_bad_sample), name)
        self.cache_dir = Path(cache_dir) / split if cache_dir is not None else None
        self._camera_position = _CameraPositions(self.root)
        if self.cache_dir is not None:
            index_file = self.cache_dir / "index.json"
            if not index_file.is_file():
                raise FileNotFoundError(f"{index_file}: missing (cache_dir must be written by preprocess_hypersim)")
            meta = json.loads(index_file.read_text())
            self.frames = [FrameId(*f) for f in meta["frames"]]
            self.num_dropped_invalid = meta["dropped_invalid"]
            if meta["max_invalid_fraction"] != max_invalid_fraction:
                raise ValueError(
                    f"{index_file}: preprocessed with max_invalid_fraction={meta['max_invalid_fraction']}, "
                    f"but {max_invalid_fraction} was requested; preprocess again or match the setting"
                )
        else:
            self.frames = self._scan(read_split(self.root, split), max_invalid_fraction)
        logger.info("%s[%s]: %d frames", name, split, len(self.frames))

    def _scan(self, frames: list[FrameId], max_invalid_fraction: float) -> list[FrameId]:
        kept, dropped = [], 0
        for fid in frames:
            try:
                _, _, valid = read_validity(self.root, fid)
            except BadSampleError as err:
                if self.skips.policy == "raise":
                    raise
                self.skips.num_skipped += 1
                logger.warning("%s: skipping bad frame: %s", self.dataset_name, err)
                continue
            if 1.0 - valid.mean() > max_invalid_fraction:
                dropped += 1
                continue
            kept.append(fid)
        logger.info("%s[%s]: dropped %d of %d frames with > %.1f%% invalid pixels", self.dataset_name, self.split, dropped, len(frames), 100 * max_invalid_fraction)
        self.num_dropped_invalid = dropped
        return kept

    @property
    def num_skipped(self) -> int:
        return self.skips.num_skipped

    def __len__(self) -> int:
        return len(self.frames)

    def decoded(self, index: int) -> dict:
        """Native-resolution decoded arrays of frame `index` (see `decode_raw`)."""
        fid = self.frames[index]
        if self.cache_dir is None:
            return decode_raw(self.root, fid, self._camera_position)
        path = self.cache_dir / fid.cache_file
        try:
            with np.load(path) as z:
                return {k: z[k] for k in ("rgb", "distance", "normal", "valid")}
        except (OSError, ValueError, KeyError) as err:
            raise BadSampleError(f"{path}: cannot read cached Hypersim frame: {err}") from err

    def _load(self, index: int) -> dict:
        fid, sample = self.frames[index], None
        if self.cache_dir is None:  # the raw files' fast path: the same tensors as below
            paths = frame_paths(self.root, fid.scene, fid.frame, fid.cam)
            sample = load_raw_sample(paths, lambda: self._camera_position(fid), fid.name, self.dataset_name)
        if sample is None:
            d = self.decoded(index)
            h, w = d["distance"].shape
            depth = planar_depth_from_distance(np.nan_to_num(d["distance"].astype(np.float32)))
            sample = make_sample(d["rgb"], depth, d["valid"], d["normal"], hypersim_intrinsics(h, w), fid.name, self.dataset_name)
        if self.height is not None and self.width is not None:
            sample = resize(sample, self.height, self.width)
        return self.transform(sample) if self.transform is not None else sample

    def __getitem__(self, index: int) -> dict:
        return self.skips.get(index, len(self), self._load)


def preprocess_hypersim(
    root: str | Path,
    out_dir: str | Path,
    split: str = "train",
    max_invalid_fraction: float = 0.01,
    on_bad_sample: str = "raise",
) -> Path:
    """Decode every kept frame of `split` once into `out_dir/{split}/*.npz` (uncompressed rgb uint8,
    distance/normal float16, valid bool) plus `index.json`; returns that folder. A HypersimDataset
    with cache_dir=out_dir then yields samples identical to the raw reader's."""
    raw = HypersimDataset(root, split, max_invalid_fraction=max_invalid_fraction, on_bad_sample=on_bad_sample)
    folder = Path(out_dir) / split
    folder.mkdir(parents=True, exist_ok=True)
    kept = []
    for i, fid in enumerate(raw.frames):
        try:
            d = raw.decoded(i)
        except BadSampleError as err:
            if on_bad_sample == "raise":
                raise
            logger.warning("preprocess_hypersim: skipping bad frame: %s", err)
            continue
        np.savez(folder / fid.cache_file, **d)
        kept.append([fid.scene, fid.cam, fid.frame])
    meta = {
        "root": str(root),
        "split": split,
        "max_invalid_fraction": max_invalid_fraction,
        "frames": kept,
        "dropped_invalid": raw.num_dropped_invalid,
        "skipped": raw.num_skipped + len(raw.frames) - len(kept),
    }
    (folder / "index.json").write_text(json.dumps(meta))
    logger.info("preprocess_hypersim: wrote %d frames to %s", len(kept), folder)
    return folder
