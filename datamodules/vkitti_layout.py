"""Virtual KITTI 2's released on-disk layout (SPEC section 6): paths, scene and condition lists and
constants shared by the reader (`datamodules/vkitti.py`) and the synthetic writer
(`datamodules/synthetic/vkitti_writer.py`).

    {root}/Scene{XX}/{cond}/frames/rgb/Camera_{0,1}/rgb_NNNNN.jpg      8-bit JPEG
    {root}/Scene{XX}/{cond}/frames/depth/Camera_{0,1}/depth_NNNNN.png  uint16 planar depth in cm, 65535 = sky
    {root}/Scene{XX}/{cond}/intrinsic.txt   header INTRINSIC_HEADER, one row per frame and camera
"""

from __future__ import annotations

from pathlib import Path

SCENES = ("Scene02", "Scene06", "Scene18", "Scene20")
"""Scenes trained on (Marigold's list)."""
CONDITIONS = ("clone", "15-deg-left", "15-deg-right", "morning", "overcast", "sunset")
"""Conditions trained on (Marigold's list): the same geometry per (scene, frame); the 15-deg ones turn
the camera, the others change the lighting."""
SKY = 65535
"""Depth PNG value of sky (no depth)."""
DEPTH_UNITS_PER_METRE = 100.0
"""Depth PNG values are centimetres: value / DEPTH_UNITS_PER_METRE = metres."""
STEREO_BASELINE_M = 0.532
"""Camera_1 sits this many metres to the right of Camera_0 (a stereo pair)."""
INTRINSIC_HEADER = "frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]"
"""First line of intrinsic.txt; each further row is `frame camera fx fy cx cy` (pixels)."""


def rgb_path(root: str | Path, scene: str, cond: str, cam: int, frame: int) -> Path:
    """The JPEG of one frame of Camera_{cam}."""
    return Path(root) / scene / cond / "frames" / "rgb" / f"Camera_{cam}" / f"rgb_{frame:05d}.jpg"


def depth_path(root: str | Path, scene: str, cond: str, cam: int, frame: int) -> Path:
    """The uint16 centimetre depth PNG of one frame of Camera_{cam}."""
    return Path(root) / scene / cond / "frames" / "depth" / f"Camera_{cam}" / f"depth_{frame:05d}.png"


def intrinsics_path(root: str | Path, scene: str, cond: str) -> Path:
    """intrinsic.txt of one (scene, condition): K per frame and camera."""
    return Path(root) / scene / cond / "intrinsic.txt"
