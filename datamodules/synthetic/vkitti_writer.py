"""Write rendered streets in Virtual KITTI 2's released layout (SPEC section 6; paths, scene and
condition lists and constants in `datamodules/vkitti_layout.py`, which the reader uses too).

RGB is an 8-bit sRGB-like JPEG (linear render * lighting gain / 2.5, gamma 1/2.2). The same
(scene, frame) has the same geometry in every condition; 15-deg-left/right turn the camera by
+-15 deg of yaw, morning/overcast/sunset change the lighting. Camera_1 sits STEREO_BASELINE_M
(0.532 m) to the right of Camera_0 (a stereo pair).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.synthetic.render import render_scene
from datamodules.vkitti_layout import (
    CONDITIONS,
    DEPTH_UNITS_PER_METRE,
    INTRINSIC_HEADER,
    SCENES,
    SKY,
    STEREO_BASELINE_M,
    depth_path,
    intrinsics_path,
    rgb_path,
)

_YAW = {"15-deg-left": 15.0, "15-deg-right": -15.0}
_GAIN = {"morning": (1.1, 0.95, 0.8), "overcast": (0.55, 0.6, 0.65), "sunset": (1.0, 0.6, 0.35)}


def _num(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".")


def encode_depth_cm(depth: np.ndarray) -> np.ndarray:
    """(H,W) metres (nan = sky) -> uint16 centimetres, 65535 for sky and beyond 655.34 m."""
    cm = np.round(np.nan_to_num(depth, nan=np.inf) * DEPTH_UNITS_PER_METRE)
    return np.where(cm < SKY, cm, SKY).astype(np.uint16)


def write_vkitti(
    root: str | Path,
    scenes: tuple[str, ...] = SCENES,
    conditions: tuple[str, ...] = CONDITIONS,
    frames_per_condition: int = 2,
    cameras: tuple[int, ...] = (0, 1),
    height: int = 375,
    width: int = 1242,
    seed: int = 0,
    render_kwargs: dict | None = None,
) -> int:
    """Render and write every (scene, condition, frame, camera); returns the number of frames written.
    `render_kwargs` go to `render_scene` (yaw_deg adds to the condition's turn)."""
    root = Path(root)
    count = 0
    kw = dict(render_kwargs or {})
    base_yaw = kw.pop("yaw_deg", None)
    for s_idx, scene in enumerate(scenes):
        rows = {cond: [INTRINSIC_HEADER] for cond in conditions}
        for frame in range(frames_per_condition):
            for cam in cameras:
                views: dict = {}  # conditions that differ only in lighting share one render
                for cond in conditions:
                    turn = _YAW.get(cond)
                    if turn not in views:
                        yaw = None if turn is None and base_yaw is None else (turn or 0.0) + (base_yaw or 0.0)
                        views[turn] = render_scene(
                            "road", height, width, seed=seed * 100003 + s_idx * 1009 + frame, yaw_deg=yaw,
                            camera_offset=(STEREO_BASELINE_M * cam, 0.0, 0.0), **kw,
                        )
                    view = views[turn]
                    rgb = view.rgb_linear * np.asarray(_GAIN.get(cond, (1.0, 1.0, 1.0)), np.float32) / 2.5
                    srgb = np.round(np.clip(rgb, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
                    for path, img in ((rgb_path(root, scene, cond, cam, frame), Image.fromarray(srgb)),
                                      (depth_path(root, scene, cond, cam, frame), Image.fromarray(encode_depth_cm(view.depth)))):
                        path.parent.mkdir(parents=True, exist_ok=True)
                        img.save(path, quality=95) if path.suffix == ".jpg" else img.save(path)
                    K = view.K
                    rows[cond].append(" ".join([str(frame), str(cam)] + [_num(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])]))
                    count += 1
        for cond in conditions:
            path = intrinsics_path(root, scene, cond)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(rows[cond]) + "\n")
    return count
