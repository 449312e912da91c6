"""Hypersim's released on-disk layout (SPEC section 6): paths and constants shared by the reader
(`datamodules/hypersim.py`) and the synthetic writer (`datamodules/synthetic/hypersim_writer.py`).

    {root}/metadata_images_split_scene_v1.csv                       split list (CSV_COLUMNS)
    {root}/{scene}/_detail/{cam}/camera_keyframe_positions.hdf5      (N,3) world, asset units (metres)
    {root}/{scene}/_detail/{cam}/camera_keyframe_orientations.hdf5   (N,3,3) camera-to-world rotations
    {root}/{scene}/images/scene_{cam}_final_hdf5/frame.NNNN.color.hdf5          linear HDR
    {root}/{scene}/images/scene_{cam}_geometry_hdf5/frame.NNNN.{key}.hdf5       key in GEOMETRY_KEYS
All arrays under the HDF5 key "dataset"; NaN where no geometry. Frame NNNN indexes the keyframe files.
"""

from __future__ import annotations

from pathlib import Path

CSV_NAME = "metadata_images_split_scene_v1.csv"
"""The released split list, at the root of the release."""
CSV_COLUMNS = ["scene_name", "camera_name", "frame_id", "included_in_public_release", "exclude_reason",
               "split_partition_name"]
"""Columns of CSV_NAME, in the released order."""
GEOMETRY_KEYS = ("depth_meters", "normal_cam", "normal_world", "position", "render_entity_id")
"""Per-frame files under scene_{cam}_geometry_hdf5/: distance to the camera centre (metres, not planar
depth), normals in the camera frame (x RIGHT, y up, z toward the camera) and world frame, world
positions, and the render entity id (int32, -1 where no geometry)."""
FOCAL_AT_1024 = 886.81
"""Hypersim focal length in pixels at width 1024 (60 deg horizontal FOV); scales with width."""


def frame_paths(root: str | Path, scene: str, frame: int, cam: str = "cam_00") -> dict[str, Path]:
    """Paths of one frame's files, keyed 'color' and each of GEOMETRY_KEYS."""
    images = Path(root) / scene / "images"
    out = {"color": images / f"scene_{cam}_final_hdf5" / f"frame.{frame:04d}.color.hdf5"}
    for key in GEOMETRY_KEYS:
        out[key] = images / f"scene_{cam}_geometry_hdf5" / f"frame.{frame:04d}.{key}.hdf5"
    return out


def camera_positions_path(root: str | Path, scene: str, cam: str = "cam_00") -> Path:
    """The (N,3) keyframe camera positions of one scene's camera (world frame, metres)."""
    return Path(root) / scene / "_detail" / cam / "camera_keyframe_positions.hdf5"


def camera_orientations_path(root: str | Path, scene: str, cam: str = "cam_00") -> Path:
    """The (N,3,3) keyframe camera-to-world rotations of one scene's camera."""
    return Path(root) / scene / "_detail" / cam / "camera_keyframe_orientations.hdf5"
