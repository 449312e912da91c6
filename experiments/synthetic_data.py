"""The embedded default data: procedural scenes in every real on-disk format, under one root.

    {root}/hypersim/   raw Hypersim layout (HDF5, split CSV)
    {root}/vkitti/     Virtual KITTI 2 layout (jpg, uint16 cm png, intrinsic.txt)
    {root}/eval/       Marigold-packaged depth benchmarks and DSINE-packaged normal benchmarks
    {root}/SYNTHETIC.txt  marker: every table made from this data is labelled smoke scale
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from datamodules.synthetic.benchmark_writers import (
    write_depth_benchmarks,
    write_normal_benchmarks,
)
from datamodules.synthetic.training import write_training_scenes

log = logging.getLogger(__name__)
MARKER = "SYNTHETIC.txt"


@dataclass(frozen=True)
class SynthPreset:
    """How much procedural data to write, and at which sizes (H, W)."""

    hypersim_frames: int
    vkitti_frames: int
    hypersim_size: tuple[int, int]
    vkitti_size: tuple[int, int]
    benchmark_images: int
    benchmark_sizes: dict | None
    """{benchmark: (H, W)}; None = the released sizes (ETH3D at 1/8)."""


SMALL = {"nyuv2": (480, 640), "kitti": (375, 1242), "eth3d": (252, 378), "scannet": (240, 320),
         "diode": (192, 256), "nyuv2_normal": (240, 320), "scannet_normal": (240, 320),
         "ibims_normal": (240, 320), "sintel_normal": (218, 512)}
PRESETS = {
    # the CPU default of the Make targets: tens of frames, reduced sizes where the real ones are large
    "demo": SynthPreset(32, 24, (192, 256), (375, 1242), 12, SMALL),
    # the test suite's fixture: a handful of frames, small (VKITTI below the KB crop: use vkitti_crop=null)
    "test": SynthPreset(8, 12, (48, 64), (64, 192), 3, {**SMALL, "nyuv2": (120, 160), "eth3d": (63, 95),
                                                         "scannet": (60, 80), "diode": (48, 64),
                                                         "nyuv2_normal": (48, 64), "scannet_normal": (48, 64),
                                                         "ibims_normal": (48, 64), "sintel_normal": (44, 128)}),
    # the released resolutions (ETH3D at 1/8), for trying the readers at full size
    "full": SynthPreset(64, 48, (768, 1024), (375, 1242), 24, None),
}


PARTIAL_MARKER = "SYNTHETIC.partial"
"""Marks a copy being written (Make's target is MARKER, so a crashed write is redone, not trusted)."""
WRITTEN = ("hypersim", "vkitti", "eval")
"""The folders write_synthetic_root writes under its root: with the markers, all it ever removes."""


def clear_synthetic_root(root: Path) -> None:
    """Remove an earlier synthetic copy from `root` before rewriting it; never anything else.

    A missing or empty folder is fine. A non-empty folder without either marker file was not
    written by `synth`: FileExistsError. With a marker, only the folders in WRITTEN are removed.
    """
    if not root.exists():
        return
    if not root.is_dir():
        raise FileExistsError(f"--out {root}: exists and is not a folder")
    if not any(root.iterdir()):
        return
    if not (root / MARKER).is_file() and not (root / PARTIAL_MARKER).is_file():
        raise FileExistsError(f"--out {root}: the folder is not empty and has no {MARKER}, so synth did not write "
                              "it; refusing to replace it. Choose an empty or new folder")
    for name in WRITTEN:
        if (root / name).exists():
            shutil.rmtree(root / name)


def write_synthetic_root(root: Path, preset: str = "demo", seed: int = 0, force: bool = False) -> Path:
    """Write the preset's data under `root` unless a complete copy with the same preset and seed is there.

    An older copy (other preset or seed, or --force) is replaced; a folder synth did not write
    (non-empty, no marker file) is refused with FileExistsError. Returns `root`.
    """
    if preset not in PRESETS:
        raise ValueError(f"synth preset '{preset}': expected one of {sorted(PRESETS)}")
    spec = PRESETS[preset]
    stamp = {"preset": preset, "seed": seed, **asdict(spec)}
    marker = root / MARKER
    if not force and marker.is_file() and json.loads(marker.read_text()).get("stamp") == json.loads(json.dumps(stamp)):
        log.info("%s is complete (preset %s, seed %d): nothing to do", root, preset, seed)
        return root
    clear_synthetic_root(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / PARTIAL_MARKER).write_text("synth is writing (or crashed while writing) this folder\n")
    marker.unlink(missing_ok=True)
    write_training_scenes(root, spec.hypersim_frames, spec.vkitti_frames, spec.hypersim_size, spec.vkitti_size, seed)
    write_depth_benchmarks(root / "eval", n_images=spec.benchmark_images, seed=seed, size=spec.benchmark_sizes)
    write_normal_benchmarks(root / "eval", n_images=spec.benchmark_images, seed=seed, size=spec.benchmark_sizes)
    marker.write_text(json.dumps({"what": "procedurally rendered scenes, NOT real data", "stamp": stamp}, indent=2))
    (root / PARTIAL_MARKER).unlink()
    return root
