"""Write rendered rooms in Hypersim's released on-disk layout (SPEC section 6; paths and constants in
`datamodules/hypersim_layout.py`, which the reader uses too).

Colour, distance, normals and positions are written as float16, entity ids as int32, each under the
HDF5 key "dataset"; NaN where no geometry.
Entity `INWARD_ENTITY` (the first box of every room) is written with INWARD normals (normal_cam and
normal_world negated), as some real Hypersim meshes have, so readers must flip them back.
"""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np

from datamodules.hypersim_layout import (
    CSV_COLUMNS,
    CSV_NAME,
    FOCAL_AT_1024,
    camera_orientations_path,
    camera_positions_path,
    frame_paths,
)
from datamodules.synthetic.render import RenderedView, render_scene

INWARD_ENTITY = 6
"""Render entity written with inward normals (see the module docstring)."""


def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("dataset", data=arr)


def write_hypersim_frame(root: str | Path, scene: str, frame: int, view: RenderedView, cam: str = "cam_00") -> None:
    """Write one rendered view as Hypersim frame `frame` of `scene` (keyframe files not included)."""
    paths = frame_paths(root, scene, frame, cam)
    none = view.entity_id < 0
    rot = view.cam_to_world[:3, :3]
    n_cam = view.normal.copy()
    n_cam[..., 0] *= -1.0  # project (x left) -> Hypersim (x right)
    n_world = n_cam @ rot.T
    inward = view.entity_id == INWARD_ENTITY
    n_cam[inward] *= -1.0
    n_world[inward] *= -1.0
    n_cam[none] = np.nan
    n_world[none] = np.nan
    _write(paths["color"], view.rgb_linear.astype(np.float16))
    _write(paths["depth_meters"], view.distance.astype(np.float16))
    _write(paths["normal_cam"], n_cam.astype(np.float16))
    _write(paths["normal_world"], n_world.astype(np.float16))
    _write(paths["position"], view.position.astype(np.float16))
    _write(paths["render_entity_id"], view.entity_id.astype(np.int32))


def write_hypersim(
    root: str | Path,
    num_scenes: int = 3,
    frames_per_scene: int = 4,
    height: int = 768,
    width: int = 1024,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "val", "test"),
    excluded_frames: int = 0,
    render_kwargs: dict | None = None,
) -> list[dict]:
    """Render `num_scenes` rooms x `frames_per_scene` views into `root` in Hypersim's layout.

    Scene k (named ai_001_{k+1:03d}) goes to split `splits[k % len(splits)]`. The first
    `excluded_frames` frames of each scene are listed with included_in_public_release=False.
    `render_kwargs` go to `render_scene` (e.g. yaw_deg=0, pitch_deg=0 for a level camera).
    Returns the CSV rows written (dicts of CSV_COLUMNS).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    focal_scale = width / 1024.0
    for s in range(num_scenes):
        scene = f"ai_001_{s + 1:03d}"
        positions, orientations = [], []
        for frame in range(frames_per_scene):
            view = render_scene("room", height, width, seed=seed * 100003 + s * 1009 + frame, **(render_kwargs or {}))
            assert abs(view.K[0, 0] - FOCAL_AT_1024 * focal_scale) < 0.01 * focal_scale
            write_hypersim_frame(root, scene, frame, view)
            positions.append(view.cam_to_world[:3, 3])
            orientations.append(view.cam_to_world[:3, :3])
            included = frame >= excluded_frames
            rows.append(
                {
                    "scene_name": scene,
                    "camera_name": "cam_00",
                    "frame_id": frame,
                    "included_in_public_release": str(included),
                    "exclude_reason": "" if included else "not_in_public_release",
                    "split_partition_name": splits[s % len(splits)],
                }
            )
        _write(camera_positions_path(root, scene), np.asarray(positions, dtype=np.float32))
        _write(camera_orientations_path(root, scene), np.asarray(orientations, dtype=np.float32))
    with open(root / CSV_NAME, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows
