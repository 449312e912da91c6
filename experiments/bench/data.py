"""Loader throughput of the training readers, one worker (num_workers=0): samples per second.

    python -m experiments.bench.data [--frames 12] [--repeats 3] [--base DIR]

Generates Hypersim (1024x768) and Virtual KITTI 2 (1242x375) frames into a temporary folder and
preprocesses the Hypersim cache (excluded from timing), then times a DataLoader loop over:
Hypersim raw HDF5, Hypersim preprocessed cache, VKITTI with a cold normal cache (plane fits
computed) and a warm one (normals read from .npy). KB crop for VKITTI, native size for Hypersim.
Also a plain h5py read of the same six Hypersim files per frame (no decoding), and the ratio of
the raw reader's time to it (the issue's target: <= 3), through the DataLoader (batch collation
included) and by `dataset[i]` alone. Hypersim figures are the best of `--repeats` interleaved
passes in CPU time of this process (steadier than wall time on a shared machine; both sides run
in this process). Torch runs one thread, as in a DataLoader worker.

With --base DIR (a checkout of another commit, e.g. a git worktree of main), each repeat also
times that checkout's raw Hypersim reader on the same files, in a child process (one warm-up
pass, then a timed one, CPU time of the child), so that before and after come from the same run;
and that checkout's `normals_from_depth` (imported from its own files) against
this one's on the same full-size Virtual KITTI depth map, interleaved in this process, with a
check that both give the same bits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.hypersim import HypersimDataset, preprocess_hypersim
from datamodules.hypersim_layout import frame_paths
from datamodules.synthetic.hypersim_writer import write_hypersim
from datamodules.synthetic.vkitti_writer import write_vkitti
from datamodules.vkitti import VirtualKITTIDataset
from experiments.bench.checkout import import_from_checkout

BASE_TIMER = """
import json, sys, time
import torch
from torch.utils.data import DataLoader
from datamodules.hypersim import HypersimDataset
torch.set_num_threads(1)
ds = HypersimDataset(sys.argv[1], max_invalid_fraction=1.0)
loader = DataLoader(ds, batch_size=1, num_workers=0, shuffle=False)
sum(1 for _ in loader)
start = time.process_time()
n = sum(1 for _ in loader)
seconds = time.process_time() - start
print(json.dumps({"file": sys.modules["datamodules.hypersim"].__file__, "per_second": n / seconds}))
"""
"""Run in the --base checkout: samples per CPU second of its raw reader, second pass of a DataLoader."""


def samples_per_second(ds: Dataset) -> float:
    loader = DataLoader(ds, batch_size=1, num_workers=0, shuffle=False)
    start = time.perf_counter()
    n = sum(1 for _ in loader)
    return n / (time.perf_counter() - start)


def cpu_samples_per_second(ds: Dataset) -> float:
    """Samples per CPU second of this process over one DataLoader pass (batch 1, no workers)."""
    loader = DataLoader(ds, batch_size=1, num_workers=0, shuffle=False)
    start = time.process_time()
    n = sum(1 for _ in loader)
    return n / (time.process_time() - start)


def cpu_getitem_per_second(ds: Dataset) -> float:
    """Samples per CPU second of `ds[i]` over the dataset, without a DataLoader (no collation)."""
    start = time.process_time()
    for i in range(len(ds)):
        ds[i]
    return len(ds) / (time.process_time() - start)


def plain_h5py_per_second(root: Path, ds: HypersimDataset) -> float:
    """Frames per CPU second of reading the six HDF5 files of each frame of `ds` with h5py."""
    start = time.process_time()
    for fid in ds.frames:
        for path in frame_paths(root, fid.scene, fid.frame, fid.cam).values():
            with h5py.File(path, "r") as f:
                f["dataset"][()]
    return len(ds.frames) / (time.process_time() - start)


def base_per_second(base: Path, root: Path) -> float:
    """Samples per CPU second of the raw Hypersim reader of checkout `base` on `root` (child process)."""
    env = {**os.environ, "PYTHONPATH": str(base), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", BASE_TIMER, str(root)], cwd=base, env=env, check=True,
                         capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(result["file"]).resolve().is_relative_to(base):
        raise RuntimeError(f"--base {base}: the child imported {result['file']}, not the base checkout's reader")
    return result["per_second"]


def normals_before_after(base: Path, depth: np.ndarray, K: np.ndarray, repeats: int) -> dict[str, float]:
    """Best-of-`repeats` CPU seconds of `base`'s and this checkout's normals_from_depth on one (H,W)
    depth map (valid: depth > 0), interleaved, and whether they return the same bits (1.0 / 0.0)."""
    from datamodules.normals_from_depth import normals_from_depth

    base_fn = import_from_checkout(base, "datamodules.normals_from_depth", "normals_from_depth")
    valid = depth > 0
    best = {"base": float("inf"), "now": float("inf")}
    out = {}
    for _ in range(max(1, repeats)):
        for who, fn in (("base", base_fn), ("now", normals_from_depth)):
            start = time.process_time()
            out[who] = fn(depth, valid, K)
            best[who] = min(best[who], time.process_time() - start)
    return {"vkitti_normals_base_s": best["base"], "vkitti_normals_now_s": best["now"],
            "vkitti_normals_identical": float(out["base"].tobytes() == out["now"].tobytes())}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12, help="frames per dataset")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved passes for the Hypersim raw/plain ratio")
    parser.add_argument("--base", default=None, help="checkout of another commit whose raw Hypersim reader is timed too ('before')")
    args = parser.parse_args(argv)
    base = Path(args.base).resolve() if args.base else None
    if base is not None and not (base / "datamodules" / "hypersim.py").is_file():
        parser.error(f"--base {base}: not a checkout of this project (no datamodules/hypersim.py)")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_hypersim(root / "hs", num_scenes=max(1, args.frames // 4), frames_per_scene=4, splits=("train",))
        preprocess_hypersim(root / "hs", root / "hs_cache", "train", max_invalid_fraction=1.0)
        write_vkitti(root / "vk", scenes=("Scene02",), conditions=("clone",), frames_per_condition=max(1, args.frames // 2))
        vk = {"scenes": ("Scene02",), "conditions": ("clone",), "crop": "kb", "cache_dir": root / "normals"}
        raw = HypersimDataset(root / "hs", max_invalid_fraction=1.0)
        cpu_samples_per_second(raw)  # warm-up: first-call costs (scratch buffers, caches)
        plain = raw_cpu = getitem = before = 0.0
        for _ in range(max(1, args.repeats)):
            plain = max(plain, plain_h5py_per_second(root / "hs", raw))
            raw_cpu = max(raw_cpu, cpu_samples_per_second(raw))
            getitem = max(getitem, cpu_getitem_per_second(raw))
            if base is not None:
                before = max(before, base_per_second(base, root / "hs"))
        normals = {}
        if base is not None:
            full = VirtualKITTIDataset(root / "vk", scenes=("Scene02",), conditions=("clone",), crop=None)[0]
            normals = normals_before_after(base, full["depth"][0].numpy(), full["intrinsics"].numpy().astype(np.float64),
                                           args.repeats)
        results = {
            "hypersim_plain_h5py_cpu": plain,
            "hypersim_raw_cpu": raw_cpu,
            "hypersim_raw_getitem_cpu": getitem,
            **({"hypersim_raw_base_cpu": before} if base is not None else {}),
            "hypersim_raw_1024x768": samples_per_second(raw),
            "hypersim_cache_1024x768": samples_per_second(HypersimDataset(root / "hs", max_invalid_fraction=1.0, cache_dir=root / "hs_cache")),
            "vkitti_cold_normals_1242x375": samples_per_second(VirtualKITTIDataset(root / "vk", **vk)),
            "vkitti_warm_normals_1242x375": samples_per_second(VirtualKITTIDataset(root / "vk", **vk)),
        }
    for key, value in results.items():
        print(f"{key:32s} {value:7.2f} samples/s (1 worker{', CPU time' if key.endswith('_cpu') else ''})")
    ratio = plain / raw_cpu
    print(f"hypersim raw reader / plain h5py read of the same files: {ratio:.1f}x the time (target <= 3)")
    print(f"  the same without the DataLoader (dataset[i] alone, no batch collation): {plain / getitem:.1f}x")
    results["hypersim_raw_over_plain"] = ratio
    results["hypersim_getitem_over_plain"] = plain / getitem
    if base is not None:
        results["hypersim_base_raw_over_plain"] = plain / before
        print(f"  --base {base}: {plain / before:.1f}x the time; this checkout's reader is {raw_cpu / before:.2f}x faster")
        print(f"vkitti normals from depth, one full-size frame: base {normals['vkitti_normals_base_s']:.3f} s, now "
              f"{normals['vkitti_normals_now_s']:.3f} s ({normals['vkitti_normals_base_s'] / normals['vkitti_normals_now_s']:.2f}x), "
              f"same bits: {bool(normals['vkitti_normals_identical'])}")
        results.update(normals)
    return results


if __name__ == "__main__":
    main()
