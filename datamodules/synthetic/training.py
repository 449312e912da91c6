"""Procedural training data in the real released layouts (the default when no DATA_ROOT is given)."""

from __future__ import annotations

import math
from pathlib import Path

from datamodules.synthetic.hypersim_writer import write_hypersim
from datamodules.synthetic.vkitti_writer import write_vkitti
from datamodules.vkitti_layout import CONDITIONS, SCENES


def write_training_scenes(
    out_dir: str | Path,
    n_hypersim_frames: int = 24,
    n_vkitti_frames: int = 24,
    hypersim_size: tuple[int, int] = (384, 512),
    vkitti_size: tuple[int, int] = (375, 1242),
    seed: int = 0,
) -> dict[str, Path]:
    """Write about `n_hypersim_frames` Hypersim frames (8 per scene, all in the 'train' split;
    ~1/4 of them have > 1% void pixels and are dropped by the reader's filter, as in the real data)
    and `n_vkitti_frames` Virtual KITTI 2 images (6 conditions x 2 cameras per frame index, over
    as many scenes as needed) at (H, W) sizes (Hypersim at half its released 768x1024 by default,
    4x less disk; the readers resize). Returns {'hypersim': root, 'vkitti': root}.
    Keep vkitti_size >= (352, 1216) to use the KB crop."""
    out = Path(out_dir)
    per_scene = 8
    n_scenes = max(1, math.ceil(n_hypersim_frames / per_scene))
    write_hypersim(out / "hypersim", n_scenes, min(per_scene, max(1, n_hypersim_frames)), *hypersim_size, seed=seed, splits=("train",))
    per_frame = len(CONDITIONS) * 2
    n_frames = max(1, math.ceil(n_vkitti_frames / per_frame))
    scenes = SCENES[: min(len(SCENES), n_frames)]
    write_vkitti(out / "vkitti", scenes, CONDITIONS, math.ceil(n_frames / len(scenes)), (0, 1), *vkitti_size, seed=seed)
    return {"hypersim": out / "hypersim", "vkitti": out / "vkitti"}
