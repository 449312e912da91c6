"""Loader throughput of the training readers, one worker (num_workers=0): samples per second.

    python -m experiments.bench.data [--frames 12]

Generates Hypersim (1024x768) and Virtual KITTI 2 (1242x375) frames into a temporary folder and
preprocesses the Hypersim cache (excluded from timing), then times a DataLoader loop over:
Hypersim raw HDF5, Hypersim preprocessed cache, VKITTI with a cold normal cache (plane fits
computed) and a warm one (normals read from .npy). KB crop for VKITTI, native size for Hypersim.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

from datamodules.hypersim import HypersimDataset, preprocess_hypersim
from datamodules.synthetic.hypersim_writer import write_hypersim
from datamodules.synthetic.vkitti_writer import write_vkitti
from datamodules.vkitti import VirtualKITTIDataset


def samples_per_second(ds: Dataset) -> float:
    loader = DataLoader(ds, batch_size=1, num_workers=0, shuffle=False)
    start = time.perf_counter()
    n = sum(1 for _ in loader)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12, help="frames per dataset")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_hypersim(root / "hs", num_scenes=max(1, args.frames // 4), frames_per_scene=4, splits=("train",))
        preprocess_hypersim(root / "hs", root / "hs_cache", "train", max_invalid_fraction=1.0)
        write_vkitti(root / "vk", scenes=("Scene02",), conditions=("clone",), frames_per_condition=max(1, args.frames // 2))
        vk = {"scenes": ("Scene02",), "conditions": ("clone",), "crop": "kb", "cache_dir": root / "normals"}
        results = {
            "hypersim_raw_1024x768": samples_per_second(HypersimDataset(root / "hs", max_invalid_fraction=1.0)),
            "hypersim_cache_1024x768": samples_per_second(HypersimDataset(root / "hs", max_invalid_fraction=1.0, cache_dir=root / "hs_cache")),
            "vkitti_cold_normals_1242x375": samples_per_second(VirtualKITTIDataset(root / "vk", **vk)),
            "vkitti_warm_normals_1242x375": samples_per_second(VirtualKITTIDataset(root / "vk", **vk)),
        }
    for key, value in results.items():
        print(f"{key:32s} {value:7.2f} samples/s (1 worker)")
    return results


if __name__ == "__main__":
    main()
