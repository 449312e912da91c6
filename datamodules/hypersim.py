"""Hypersim reader: the raw released HDF5 layout, or a preprocessed cache of it (SPEC sections 5, 6).

Each sample: tone-mapped rgb (quantised to 8 bits, as an image the model would see), planar depth
from Hypersim's distance, validity (entity != -1 and finite distance), normals in the project
convention (normal_cam with x negated; inward normals flipped in the world frame), K.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from datamodules.hypersim_layout import (
    CSV_NAME,
    FOCAL_AT_1024,
    camera_positions_path,
    frame_paths,
)
from datamodules.io_utils import (
    BadSampleError,
    SkipCounter,
    check_policy,
    lookup,
    make_sample,
    read_hdf5,
)
from datamodules.transforms import resize

logger = logging.getLogger(__name__)

FLIP_THRESHOLD = -1e-3
"""A normal n is inward when n . u is below this, u the unit vector from the point to the camera
(world frame, as Marigold)."""


def hypersim_intrinsics(height: int, width: int) -> np.ndarray:
    """(3,3) K of a Hypersim frame: f = 886.81 * W / 1024, principal point at the centre ((W-1)/2, (H-1)/2)."""
    f = FOCAL_AT_1024 * width / 1024.0
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


@functools.lru_cache(maxsize=8)
def _ray_length(height: int, width: int) -> np.ndarray:
    """(H,W) float32 ||(x, y, f)|| of `planar_depth_from_distance` (read-only, cached per size)."""
    f = FOCAL_AT_1024 * width / 1024.0
    x = np.linspace(-width / 2 + 0.5, width / 2 - 0.5, width, dtype=np.float32)[None, :]
    y = np.linspace(-height / 2 + 0.5, height / 2 - 0.5, height, dtype=np.float32)[:, None]
    out = np.sqrt(x * x + y * y + np.float32(f * f))
    out.flags.writeable = False
    return out


def planar_depth_from_distance(distance: np.ndarray) -> np.ndarray:
    """Planar z-depth (metres) = distance * f / ||(x, y, f)||, x = linspace(-W/2+0.5, W/2-0.5, W)."""
    h, w = distance.shape
    f = FOCAL_AT_1024 * w / 1024.0
    return (distance.astype(np.float32) * np.float32(f) / _ray_length(h, w)).astype(np.float32, copy=False)


def tone_scale(hdr: np.ndarray, valid: np.ndarray):
    """The exposure scale of Hypersim's tone mapping (SPEC 6): 0.8^2.2 / p90 of the brightness
    0.3R+0.59G+0.11B (float32) over the (H,W) `valid` pixels of (H,W,3) HDR, 0 if p90 < 1e-4.
    float16 HDR: each weighted channel is a look-up in a table of the float32 products."""
    if hdr.dtype == np.float16:
        bits = hdr.view(np.uint16)
        brightness = lookup(_BRIGHTNESS_TABLES[0], bits[..., 0])
        brightness += lookup(_BRIGHTNESS_TABLES[1], bits[..., 1])
        brightness += lookup(_BRIGHTNESS_TABLES[2], bits[..., 2])
    else:
        px = hdr.astype(np.float32)
        brightness = 0.3 * px[..., 0] + 0.59 * px[..., 1] + 0.11 * px[..., 2]
    brightness = brightness.reshape(-1) if valid.all() else brightness[valid]
    p90 = np.percentile(brightness, 90, overwrite_input=True)
    return 0.0 if p90 < 1e-4 else 0.8**2.2 / p90


def apply_tone(hdr: np.ndarray, scale) -> np.ndarray:
    """clip(max(scale * hdr, 0) ^ (1/2.2), 0, 1) in float32: HDR -> [0, 1] (SPEC 6)."""
    return np.clip(np.maximum(scale * hdr.astype(np.float32), 0.0) ** (1.0 / 2.2), 0.0, 1.0).astype(np.float32)


def tone_map(hdr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Hypersim's tone mapping (SPEC 6): (H,W,3) linear HDR -> (H,W,3) float32 in [0, 1]."""
    return apply_tone(hdr, tone_scale(hdr, valid))


_FLOAT16_VALUES = np.nan_to_num(np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32))
"""Every float16 bit pattern as float32, NaN -> 0 and inf -> +-float32 max (as np.nan_to_num)."""
with np.errstate(over="ignore"):
    _BRIGHTNESS_TABLES = tuple(w * _FLOAT16_VALUES for w in (0.3, 0.59, 0.11))
"""0.3 R, 0.59 G, 0.11 B in float32 for every float16 bit pattern (finite ones are the ones used)."""


def tone_map_uint8(hdr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 round(tone_map(nan_to_num(hdr), valid) * 255); `hdr` finite at `valid` pixels.

    float16 HDR (the release's) goes through a 65536-entry table of the same float32 formula
    indexed by the bit patterns: the same bytes, without a float pass over the image."""
    scale = tone_scale(hdr, valid)  # valid pixels are finite: nan_to_num leaves them unchanged
    if hdr.dtype == np.float16:
        with np.errstate(over="ignore"):  # scale * float32 max -> inf -> 255, as on the image
            table = np.round(apply_tone(_FLOAT16_VALUES, scale) * 255.0).astype(np.uint8)
        return lookup(table, hdr.view(np.uint16))
    return np.round(apply_tone(np.nan_to_num(hdr.astype(np.float32)), scale) * 255.0).astype(np.uint8)


def finite_pixels(a: np.ndarray) -> np.ndarray:
    """(H,W) bool: every channel of the (H,W,C) array is finite (float16: from the exponent bits)."""
    if a.dtype == np.float16:
        bits = a.view(np.uint16)
        finite = (bits[..., 0] & 0x7C00) != 0x7C00
        for c in range(1, a.shape[-1]):
            finite &= (bits[..., c] & 0x7C00) != 0x7C00
        return finite
    return np.isfinite(a).all(-1)


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
    if dist.shape != entity.shape or dist.ndim != 2:
        raise BadSampleError(f"{paths['depth_meters']}: shape {dist.shape} does not match entity ids {entity.shape}")
    finite = finite_pixels(dist[..., None])
    if dist.dtype == np.float16:  # on the bits: +-inf, or sign set on a non-zero, non-NaN value
        bits = dist.view(np.uint16)
        magnitude = bits & 0x7FFF
        bad = bool(((magnitude == 0x7C00) | ((bits > 0x8000) & (magnitude < 0x7C00))).any())
    else:
        bad = bool(np.isinf(dist).any() or (dist < 0).any())  # NaN compares False
    if bad:
        raise BadSampleError(f"{paths['depth_meters']}: infinite or negative distance values")
    has_entity = entity != -1
    return dist, has_entity, has_entity & finite


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


def inward_normals(normal_world: np.ndarray, position: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """(H,W) bool: True where the world-frame normal points away from the camera, n . u < FLIP_THRESHOLD
    with u = (camera - point) / ||camera - point|| (Marigold), in float64 (SPEC 5). Those normals are
    flipped to face outward. normal_world, position (H,W,3); camera (3,)."""
    facing = np.zeros(position.shape[:2])
    dist2 = np.zeros(position.shape[:2])
    for c in range(3):  # channel by channel: no (H,W,3) float64 temporaries
        to_cam = camera[c] - position[..., c].astype(np.float64)
        facing += normal_world[..., c].astype(np.float64) * to_cam
        dist2 += to_cam * to_cam
    with np.errstate(invalid="ignore"):
        return facing < FLIP_THRESHOLD * np.sqrt(dist2)  # n . u < T  <=>  n . (camera - point) < T ||camera - point||


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
    flip = inward_normals(arrays["normal_world"], arrays["position"], camera_position(fid))
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
        d = self.decoded(index)
        h, w = d["distance"].shape
        depth = planar_depth_from_distance(np.nan_to_num(d["distance"].astype(np.float32)))
        sample = make_sample(d["rgb"], depth, d["valid"], d["normal"], hypersim_intrinsics(h, w), self.frames[index].name, self.dataset_name)
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
