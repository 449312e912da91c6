"""Benchmark of the depth metric suite against a per-image NumPy reference and the bandwidth floor.

`python -m experiments.bench.metrics [--images 654] [--kinds full,nyu,kitti,lidar] [--space log]
[--base DIR]` times aligning (log space by default) and scoring synthetic depth maps with the
suite as the evaluation runs it, and with the straightforward NumPy reference below (float64, one
image at a time, boolean-indexed valid pixels), on the same data in the same run, for four mask
kinds:

- full:  480x640, every pixel valid;
- nyu:   480x640, NYUv2 Eigen crop (rows 45:471, cols 41:601) with ~5% holes (GT 0);
- kitti: 352x1216 dense GT, KITTI Garg/Eigen crop (SPEC 7);
- lidar: 352x1216, the same crop, GT at ~5% of the pixels (sparse LiDAR).

For each it prints ms per map of both, the speed-up, the bandwidth floor (reading pred + gt +
mask once, 9 bytes per pixel, at the read bandwidth measured here on a 128 MiB array) and how
far above it the suite is; the compute floor of log-space scoring (one float64 ln and one exp per
valid pixel: ln g for the fit target, exp of the aligned log depth for the relative errors, with
the fastest log/exp here, torch's) and how far above that the suite is; the largest relative difference of the final metric means
(must be <= 1e-9). With --base DIR (default: $BENCH_BASE, e.g. `make bench-metrics
BENCH_BASE=<worktree of main>`) the DepthMetrics of that checkout is timed too, image by image
in the same loop ('before' columns, and now/before: how many times faster this checkout is).
Times are CPU time of this process (`time.process_time`: steadier than wall time on a shared
machine, and it counts every thread a library starts); the caches are evicted before each timed
call, so every side reads its maps from memory (and starts with cold interpreter state: a few
hundred microseconds of fixed cost per call). One torch thread.

The NumPy reference (written from the SPEC formulas) is also what tests/metrics compares against.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from experiments.bench.checkout import import_from_checkout

NYU_EIGEN_CROP = (45, 471, 41, 601)
"""Rows 45:471, cols 41:601 of a 480x640 NYUv2 map (SPEC 7)."""


# ---------------------------------------------------------------- NumPy reference (per image)
def ref_align(pred, gt, valid, space, min_depth=1e-5, max_depth=math.inf):
    """Reference alignment of one (H,W) prediction with np.linalg.lstsq; returns float64 depth."""
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    v = np.asarray(valid, dtype=bool)
    if space == "none":
        out = p.copy()
    else:
        if space == "depth":
            fit = v
            target = g[fit]
        elif space == "disparity":
            fit = v & (g > 0) & (p > 0)
            target = 1.0 / g[fit]
        elif space == "log":
            fit = v & (g > 0) & (p > 0)
            target = np.log(g[fit])
        else:
            raise ValueError(space)
        design = np.stack([p[fit], np.ones(int(fit.sum()))], axis=1)
        (s, t), *_ = np.linalg.lstsq(design, target, rcond=None)
        aligned = s * p + t
        if space == "depth":
            out = aligned
        elif space == "disparity":
            out = 1.0 / np.maximum(aligned, 1e-3)
        else:
            out = np.exp(np.minimum(aligned, 5.0))
    out = np.clip(out, min_depth, max_depth)
    return np.maximum(out, 1e-6)


def ref_depth_metrics(pred, gt, valid):
    """Reference per-image depth metrics (fractions) of one (H,W) map over its valid pixels."""
    v = np.asarray(valid, dtype=bool)
    p = np.asarray(pred, dtype=np.float64)[v]
    g = np.asarray(gt, dtype=np.float64)[v]
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": np.mean(np.abs(p - g) / g),
        "sq_rel": np.mean((p - g) ** 2 / g),
        "rmse": np.sqrt(np.mean((p - g) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)),
        "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
        "delta1": np.mean(ratio < 1.25),
        "delta2": np.mean(ratio < 1.25**2),
        "delta3": np.mean(ratio < 1.25**3),
    }


def ref_angular_errors(pred, gt, valid):
    """Reference angular errors (degrees) at the valid pixels of one (3,H,W) pair, as a 1-D array."""
    v = np.asarray(valid, dtype=bool)
    p = np.asarray(pred, dtype=np.float64)[:, v]
    g = np.asarray(gt, dtype=np.float64)[:, v]
    p = p / np.maximum(np.linalg.norm(p, axis=0), 1e-12)
    g = g / np.maximum(np.linalg.norm(g, axis=0), 1e-12)
    cos = np.clip(np.sum(p * g, axis=0), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def ref_normal_metrics(errors):
    """Reference pooled DSINE metrics of a 1-D array of errors (degrees; fractions for a*)."""
    e = np.asarray(errors, dtype=np.float64)
    out = {"mean": np.mean(e), "median": np.median(e), "rmse": np.sqrt(np.mean(e**2))}
    for name, thr in (("a5", 5.0), ("a7_5", 7.5), ("a11_25", 11.25), ("a22_5", 22.5), ("a30", 30.0)):
        out[name] = np.mean(e < thr)
    return out


# ---------------------------------------------------------------- synthetic data
NYU_SIZE, KITTI_SIZE = (480, 640), (352, 1216)
MASK_KINDS = ("full", "nyu", "kitti", "lidar")
"""Mask kinds of the benchmark (see the module docstring)."""
DEPTH_RANGE = {"full": (1e-3, 10.0), "nyu": (1e-3, 10.0), "kitti": (1e-5, 80.0), "lidar": (1e-5, 80.0)}
"""(min_depth, max_depth) in metres per kind: NYUv2's and KITTI's protocol ranges (SPEC 7)."""


def kitti_eigen_crop(height: int, width: int) -> tuple[int, int, int, int]:
    """Rows r0:r1, cols c0:c1 of the KITTI Garg/Eigen evaluation crop of an (H, W) map (SPEC 7)."""
    return int(0.3324324 * height), int(0.91351351 * height), int(0.0359477 * width), int(0.96405229 * width)


def make_batch(kind: str, n: int, seed: int):
    """Synthetic batch of one mask kind: pred (n,1,H,W) float32 affine-invariant log depth in
    [0, 1] with noise (some pixels clamped to exactly 0, as decoded predictions are), gt (n,1,H,W)
    float32 metres inside the kind's range (0 where the mask has a hole), valid (n,1,H,W) bool."""
    if kind not in MASK_KINDS:
        raise ValueError(f"make_batch: kind must be one of {MASK_KINDS}, got {kind!r}")
    height, width = NYU_SIZE if kind in ("full", "nyu") else KITTI_SIZE
    lo, hi = (0.5, 10.0) if kind in ("full", "nyu") else (1.0, 80.0)
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 8, generator=gen)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    detail = 0.05 * torch.randn(n, 1, height, width, generator=gen)
    gt = (lo + (hi - lo) * (smooth + detail)).clamp(lo * 1.02, hi * 0.999)
    valid = torch.zeros(n, 1, height, width, dtype=torch.bool)
    if kind == "full":
        valid[:] = True
    else:
        r0, r1, c0, c1 = NYU_EIGEN_CROP if kind == "nyu" else kitti_eigen_crop(height, width)
        valid[..., r0:r1, c0:c1] = True
    if kind in ("nyu", "lidar"):
        keep = torch.rand(n, 1, height, width, generator=gen) < (0.95 if kind == "nyu" else 0.05)
        gt = torch.where(keep, gt, 0.0)
    dmin, dmax = DEPTH_RANGE[kind]
    valid &= (gt > dmin) & (gt < dmax)
    scale = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    shift = 0.2 * torch.randn(n, 1, 1, 1, generator=gen)
    noise = 0.03 * torch.randn(n, 1, height, width, generator=gen)
    log_gt = torch.log(gt.clamp_min(lo))
    pred = ((log_gt - math.log(lo)) / math.log(hi / lo) * scale + shift + noise).clamp(0.0, 1.0)
    return pred, gt, valid


# ---------------------------------------------------------------- benchmark
def transcendental_ms(num_pixels: int, repeats: int = 20) -> float:
    """Best-of-`repeats` CPU ms of torch.log then torch.exp over `num_pixels` float64 values (in
    place, in cache, current torch threads): the two transcendentals per valid pixel that any exact
    log-space alignment and scoring computes (ln g, exp of the aligned log depth)."""
    x = torch.rand(max(1, num_pixels), dtype=torch.float64) + 0.5
    best = math.inf
    for _ in range(repeats):
        t0 = time.process_time()
        torch.log(x, out=x)
        torch.exp(x, out=x)
        best = min(best, time.process_time() - t0)
    return 1e3 * best


def read_bandwidth(num_bytes: int = 128 * 2**20, repeats: int = 5) -> float:
    """Best-of-`repeats` streaming read bandwidth in bytes/s: summing a float32 array of num_bytes
    (larger than the caches) with NumPy, one thread."""
    x = np.ones(num_bytes // 4, dtype=np.float32)
    best = math.inf
    for _ in range(repeats):
        t0 = time.process_time()
        np.add.reduce(x)
        best = min(best, time.process_time() - t0)
    return x.nbytes / best


def load_base_depth_metrics(base: str):
    """The DepthMetrics class of another checkout `base` (e.g. a worktree of main), imported from its own
    files next to this checkout's (`checkout.import_from_checkout`). Raises ValueError if `base` has no
    metric suite."""
    return import_from_checkout(base, "lightning_modules.metrics", "DepthMetrics")


def run(kind: str = "nyu", num_images: int = 654, space: str = "log", seed: int = 0,
        base_cls=None) -> dict[str, float]:
    """Time the suite vs the NumPy reference on `num_images` maps of one mask kind (batches of one
    image, as the evaluation scores them), and `base_cls` (another checkout's DepthMetrics) if
    given, interleaved image by image; return ms per map, speed-ups and max relative differences."""
    from lightning_modules.metrics import DEPTH_METRIC_NAMES, DepthMetrics

    min_depth, max_depth = DEPTH_RANGE[kind]
    metrics = {"suite": DepthMetrics(space=space, min_depth=min_depth, max_depth=max_depth)}  # as the evaluation runs it
    if base_cls is not None:
        metrics["base"] = base_cls(space=space, min_depth=min_depth, max_depth=max_depth)
    ref_sums = dict.fromkeys(DEPTH_METRIC_NAMES, 0.0)
    times = dict.fromkeys([*metrics, "numpy"], 0.0)
    pixels = valid_pixels = 0
    evict = np.zeros(48 * 2**20 // 8)  # larger than the L3 cache: every side starts from memory
    for start in range(0, num_images, 8):  # generate 8 maps at a time, score them one by one
        batch = make_batch(kind, min(8, num_images - start), seed + start)
        for i in range(batch[0].shape[0]):
            pred, gt, valid = (x[i : i + 1] for x in batch)
            pixels += pred.numel()
            valid_pixels += int(valid.sum())
            for who, metric in metrics.items():
                evict += 1.0
                t0 = time.process_time()
                metric.update(pred, gt, valid)
                times[who] += time.process_time() - t0
            p_np, g_np, v_np = pred[0, 0].numpy(), gt[0, 0].numpy(), valid[0, 0].numpy()
            evict += 1.0
            t0 = time.process_time()
            a = ref_align(p_np, g_np, v_np, space, min_depth, max_depth)
            for name, val in ref_depth_metrics(a, g_np, v_np).items():
                ref_sums[name] += val
            times["numpy"] += time.process_time() - t0
    ref = {k: v / num_images for k, v in ref_sums.items()}
    out = {"bytes_per_map": 9 * pixels / num_images, "valid_per_map": valid_pixels / num_images}
    for who, metric in metrics.items():
        t0 = time.process_time()
        values = {k: float(v) for k, v in metric.compute().items()}
        times[who] += time.process_time() - t0
        out[f"{who}_rel_diff"] = max(abs(values[k] - ref[k]) / max(abs(ref[k]), 1e-300) for k in DEPTH_METRIC_NAMES)
        if who == "suite":
            out.update(values)
    out.update({f"{who}_ms": 1e3 * t / num_images for who, t in times.items()})
    out["speedup"] = times["numpy"] / times["suite"]
    out["max_rel_diff"] = out["suite_rel_diff"]
    if "base" in metrics:
        out["base_speedup"] = times["numpy"] / times["base"]
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=654, help="maps per mask kind (NYUv2 test: 654)")
    parser.add_argument("--kinds", default=",".join(MASK_KINDS), help=f"comma-separated subset of {MASK_KINDS}")
    parser.add_argument("--space", default="log", choices=("depth", "disparity", "log"))
    parser.add_argument("--base", default=os.environ.get("BENCH_BASE") or None,
                        help="checkout of another commit whose suite is timed alongside ('before'; default $BENCH_BASE)")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in MASK_KINDS]
    if bad or not kinds:
        parser.error(f"--kinds: unknown {bad}; choose from {MASK_KINDS}")
    try:
        base_cls = load_base_depth_metrics(args.base) if args.base else None
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(1)
    bandwidth = read_bandwidth()
    print(f"alignment '{args.space}', {args.images} maps per kind, torch threads {torch.get_num_threads()}, "
          f"read bandwidth {bandwidth / 1e9:.1f} GB/s" + (f", before: {Path(args.base).resolve()}" if args.base else ""))
    before = f"{'before ms':>10s} {'speed-up':>9s} {'x floor':>8s} " if base_cls else ""
    print(f"{'kind':6s} {'size':>8s} {'numpy ms':>9s} {before}{'suite ms':>9s} {'speed-up':>9s} {'floor ms':>9s} "
          f"{'x floor':>8s} {'ln+exp ms':>10s} {'x ln+exp':>9s} {'max rel diff':>13s}"
          + (f" {'now/before':>10s}" if base_cls else ""))
    results, worst = {}, 0.0
    for kind in kinds:
        res = run(kind, args.images, args.space, base_cls=base_cls)
        floor_ms = 1e3 * res["bytes_per_map"] / bandwidth
        res["floor_ms"], res["x_floor"] = floor_ms, res["suite_ms"] / floor_ms
        res["transcendental_ms"] = transcendental_ms(round(res["valid_per_map"]))
        res["x_transcendental"] = res["suite_ms"] / res["transcendental_ms"]
        h, w = NYU_SIZE if kind in ("full", "nyu") else KITTI_SIZE
        line = f"{kind:6s} {f'{h}x{w}':>8s} {res['numpy_ms']:9.3f} "
        if base_cls:
            line += f"{res['base_ms']:10.3f} {res['base_speedup']:8.2f}x {res['base_ms'] / floor_ms:7.1f}x "
        line += (f"{res['suite_ms']:9.3f} {res['speedup']:8.2f}x {floor_ms:9.3f} {res['x_floor']:7.1f}x "
                 f"{res['transcendental_ms']:10.3f} {res['x_transcendental']:8.1f}x {res['max_rel_diff']:13.2e}")
        if base_cls:
            line += f" {res['base_ms'] / res['suite_ms']:9.2f}x"
        print(line)
        results[kind], worst = res, max(worst, res["max_rel_diff"])
    if worst > 1e-9:
        raise SystemExit(f"metric means differ from the NumPy reference by {worst:.2e} > 1e-9")
    return results


if __name__ == "__main__":
    main()
