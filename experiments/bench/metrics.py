"""Benchmark of the depth metric suite against a per-image NumPy reference (SPEC 7).

`python -m experiments.bench.metrics [--images 654] [--chunk 1] [--threads 1]` times aligning (log
space) and scoring NYUv2-sized depth maps (480x640, GT in (0.5, 10) m, Eigen crop, ~78% valid)
with the batched torch code (`align_depth` + `DepthMetrics`) and with the straightforward NumPy
reference below, on the same synthetic data in the same run, and prints both times, their ratio
and the largest relative difference of the final metric means.

On CPU, batches of one 480x640 map are fastest: the float64 temporaries of larger batches
spill the L3 cache. On an oversubscribed machine keep one thread (OMP spin-waits dominate).

The NumPy reference (float64, one image at a time, written from the SPEC formulas) is also what
tests/metrics compares the torch code against.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

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
            fit = v & (g > 0)
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
def make_nyu_like_batch(n: int, seed: int, height: int = 480, width: int = 640):
    """Synthetic NYU-like batch: gt (n,1,H,W) float32 in (0.5, 10) m (smooth field plus detail),
    valid (n,1,H,W) bool = Eigen crop & gt range (~78%), pred (n,1,H,W) float32 an affine-invariant
    log-depth in [0, 1] with noise (some pixels clamped to exactly 0, as decoded predictions are)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 8, generator=gen)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    detail = 0.05 * torch.randn(n, 1, height, width, generator=gen)
    gt = (0.5 + 9.5 * (smooth + detail)).clamp(0.51, 9.99)
    valid = torch.zeros(n, 1, height, width, dtype=torch.bool)
    r0, r1, c0, c1 = NYU_EIGEN_CROP
    valid[..., r0:r1, c0:c1] = True
    valid &= (gt > 1e-3) & (gt < 10.0)
    scale = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    shift = 0.2 * torch.randn(n, 1, 1, 1, generator=gen)
    noise = 0.03 * torch.randn(n, 1, height, width, generator=gen)
    pred = ((torch.log(gt) - math.log(0.5)) / math.log(20.0) * scale + shift + noise).clamp(0.0, 1.0)
    return pred, gt, valid


# ---------------------------------------------------------------- benchmark
def run(num_images: int = 654, chunk: int = 1, space: str = "log", seed: int = 0) -> dict[str, float]:
    """Time torch vs NumPy on the same data; return seconds, ratio and max relative difference."""
    from lightning_modules.metrics import DEPTH_METRIC_NAMES, DepthMetrics, align_depth

    metric = DepthMetrics()
    ref_sums = dict.fromkeys(DEPTH_METRIC_NAMES, 0.0)
    t_torch = t_numpy = 0.0
    for start in range(0, num_images, chunk):
        pred, gt, valid = make_nyu_like_batch(min(chunk, num_images - start), seed + start)
        t0 = time.perf_counter()
        aligned = align_depth(pred, gt, valid, space, min_depth=1e-3, max_depth=10.0)
        metric.update(aligned, gt, valid)
        t_torch += time.perf_counter() - t0
        p_np, g_np, v_np = pred[:, 0].numpy(), gt[:, 0].numpy(), valid[:, 0].numpy()
        t0 = time.perf_counter()
        for i in range(p_np.shape[0]):
            a = ref_align(p_np[i], g_np[i], v_np[i], space, min_depth=1e-3, max_depth=10.0)
            for name, val in ref_depth_metrics(a, g_np[i], v_np[i]).items():
                ref_sums[name] += val
        t_numpy += time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = {k: float(v) for k, v in metric.compute().items()}
    t_torch += time.perf_counter() - t0
    ref = {k: v / num_images for k, v in ref_sums.items()}
    rel = max(abs(ours[k] - ref[k]) / max(abs(ref[k]), 1e-300) for k in DEPTH_METRIC_NAMES)
    return {"torch_s": t_torch, "numpy_s": t_numpy, "speedup": t_numpy / t_torch, "max_rel_diff": rel, **ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=654, help="number of 480x640 depth maps (NYUv2 test: 654)")
    parser.add_argument("--chunk", type=int, default=1, help="images per torch batch (CPU: 1 keeps the temporaries in cache)")
    parser.add_argument("--space", default="log", choices=("depth", "disparity", "log"))
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads; 1 (default) matches the single-threaded NumPy side; 0 = torch's default",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    res = run(args.images, args.chunk, args.space)
    print(f"{args.images} maps 480x640, alignment '{args.space}', torch threads {torch.get_num_threads()}, chunk {args.chunk}")
    print(f"batched torch : {res['torch_s']:.3f} s")
    print(f"numpy per-img : {res['numpy_s']:.3f} s")
    print(f"speedup       : {res['speedup']:.2f}x")
    print(f"max rel diff of metric means: {res['max_rel_diff']:.3e} (must be <= 1e-6)")
    print("means: " + ", ".join(f"{k}={res[k]:.6f}" for k in ("abs_rel", "delta1", "rmse")))
    if res["max_rel_diff"] > 1e-6:
        raise SystemExit("metric means differ from the NumPy reference by more than 1e-6")


if __name__ == "__main__":
    main()
