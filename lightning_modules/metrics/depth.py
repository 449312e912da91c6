"""Depth metrics (SPEC 7): per-image values, averaged over images, as functions and a Metric.

All values are fractions (delta1 = 0.97, not 97). The Metric keeps float64 SUMS of per-image
values and an image count (dist_reduce_fx="sum"), so a DDP run reduces to exactly the
single-process means.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torchmetrics import Metric

from lightning_modules.metrics.alignment import rowdot, to_bhw, valid_bbox

logger = logging.getLogger(__name__)

DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
"""Keys of `depth_metrics` and `DepthMetrics.compute`, in table order."""
BAD_SAMPLE_POLICIES = ("raise", "skip")
"""Accepted `on_bad_sample` values of the metric classes."""


def check_policy(on_bad_sample: str) -> str:
    """Return `on_bad_sample` if it is a known policy, else raise ValueError."""
    if on_bad_sample not in BAD_SAMPLE_POLICIES:
        raise ValueError(f"on_bad_sample must be one of {BAD_SAMPLE_POLICIES}, got {on_bad_sample!r}")
    return on_bad_sample


def screen_samples(
    problems: dict[str, torch.Tensor], names: Sequence[str] | None, policy: str, who: str
) -> torch.Tensor:
    """Apply the bad-sample policy; return a (B,) bool mask of images to keep.

    problems: reason -> (B,) bool tensor, True where the image has that problem. With policy
    'raise' a ValueError names every bad sample and its reasons; with 'skip' they are logged with
    a warning and masked out (the caller counts them).
    """
    flags = list(problems.values())
    bad = torch.zeros_like(flags[0], dtype=torch.bool)
    for flag in flags:
        bad = bad | flag
    if not bool(bad.any()):
        return ~bad
    lines = []
    for i in torch.nonzero(bad).flatten().tolist():
        name = names[i] if names is not None else f"batch item {i}"
        reasons = [why for why, flag in problems.items() if bool(flag[i])]
        lines.append(f"{name!r}: {', '.join(reasons)}")
    if policy == "raise":
        raise ValueError(f"{who}: bad sample(s): " + "; ".join(lines))
    logger.warning("%s: skipping %d bad sample(s): %s", who, len(lines), "; ".join(lines))
    return ~bad


def check_names(names: Sequence[str] | None, batch: int, who: str) -> None:
    """Raise ValueError if `names` is given with a length other than the batch size."""
    if names is not None and len(names) != batch:
        raise ValueError(f"{who}: got {len(names)} names for a batch of {batch}")


def depth_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image depth metrics over valid pixels, computed in float64.

    pred: aligned metric depth (metres); gt: metric depth; valid: bool; each (B,H,W) or
    (B,1,H,W). Returns name -> (B,) float64 tensor for abs_rel, sq_rel, rmse, rmse_log, log10 and
    delta1..3 (fractions). Pixels outside `valid` may hold anything. An image without valid
    pixels, or with a NaN/inf or non-positive pred or gt at a valid pixel, gets NaN in every
    metric (`DepthMetrics` turns that into a named bad sample).
    """
    p3, g3, v3 = to_bhw(pred, "pred"), to_bhw(gt, "gt"), to_bhw(valid, "valid")
    if not (p3.shape == g3.shape == v3.shape):
        raise ValueError(
            f"depth_metrics: shape mismatch: pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, valid {tuple(valid.shape)}"
        )
    v3 = v3.to(torch.bool)
    rows, cols = valid_bbox(v3)  # invalid borders (e.g. an Eigen crop) contribute nothing: skip them
    p, g, v = p3[:, rows, cols], g3[:, rows, cols], v3[:, rows, cols]
    out, ok = _depth_metric_values(p, g, v, sanitize=False)
    if not bool(ok.all()):  # maybe NaN/inf/zero outside the mask, which 0*value does not remove
        out, ok = _depth_metric_values(p, g, v, sanitize=True)
    nan = torch.full_like(ok, math.nan, dtype=torch.float64)
    return {name: torch.where(ok, val, nan) for name, val in out.items()}


def _depth_metric_values(
    p: torch.Tensor, g: torch.Tensor, v: torch.Tensor, sanitize: bool
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Metrics of (B,h,w) maps (views allowed), every invalid pixel set to pred = gt = 1: it adds
    exactly 0 to the sums and ratio 1 to the delta counts (subtracted again). Fast path
    (sanitize=False) by arithmetic, exact when invalid pixels hold finite values; else torch.where.
    Returns the values and a (B,) bool: all finite, a valid pixel, gt > 0 at valid pixels."""
    b = v.shape[0]
    w = v.to(torch.float64)
    if sanitize:
        p = torch.where(v, p.to(torch.float64), 1.0)
        g = torch.where(v, g.to(torch.float64), 1.0)
        diff = p - g
    else:  # 0 + x*1 = x exactly at valid pixels, 1 + x*0 = 1 at invalid ones (finite x)
        diff = 1.0 - w
        p = torch.addcmul(diff, p, w)
        g = torch.addcmul(diff, g, w)
        diff = torch.sub(p, g, out=diff)
    p, g, diff, w = p.reshape(b, -1), g.reshape(b, -1), diff.reshape(b, -1), w.reshape(b, -1)
    n = w.sum(dim=1)
    num_invalid = w.shape[1] - n
    # in-place steps below reuse dead buffers: the metric suite runs on whole test sets
    adiff = diff.abs_()
    inv_g = g.reciprocal()
    q = p * inv_g  # p / g
    rel = inv_g.mul_(adiff)  # |p - g| / g
    ok = g.amin(dim=1) > 0
    ratio = torch.maximum(q, g.div_(p), out=g)  # max(p/g, g/p)
    dlog = q.log_()  # ln p - ln g
    out = {
        "abs_rel": rel.sum(dim=1) / n,
        "sq_rel": rowdot(rel, adiff) / n,
        "rmse": (rowdot(adiff, adiff) / n).sqrt(),
        "rmse_log": (rowdot(dlog, dlog) / n).sqrt(),
        "log10": dlog.abs_().sum(dim=1) / (n * math.log(10.0)),
    }
    for k in (1, 2, 3):  # invalid pixels have ratio exactly 1: remove them from the count
        below = torch.lt(ratio, 1.25**k).view(torch.uint8).sum(dim=1, dtype=torch.int64)
        out[f"delta{k}"] = (below - num_invalid) / n
    for val in out.values():
        ok &= torch.isfinite(val)
    return out, ok


class DepthMetrics(Metric):
    """Mean over images of the per-image depth metrics (SPEC 7), DDP-exact.

    update(pred_aligned, gt, valid, names=None): maps (B,H,W) or (B,1,H,W) in metres. A shape
    mismatch always raises ValueError stating the shapes. An image with no valid pixel, a
    non-positive or non-finite prediction or ground truth over its valid pixels is a bad sample:
    `on_bad_sample='raise'` raises ValueError naming it (from `names`, else its batch index);
    'skip' logs a warning, excludes it and counts it in the `num_skipped` state.
    compute() -> {name: scalar float64 tensor} for DEPTH_METRIC_NAMES; raises ValueError if no
    image was scored.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, on_bad_sample: str = "raise", **kwargs) -> None:
        super().__init__(**kwargs)
        self.on_bad_sample = check_policy(on_bad_sample)
        for name in DEPTH_METRIC_NAMES:
            self.add_state(f"sum_{name}", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("num_skipped", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, names: Sequence[str] | None = None
    ) -> None:
        p3, g3, v3 = to_bhw(pred, "pred"), to_bhw(gt, "gt"), to_bhw(valid, "valid")
        if not (p3.shape == g3.shape == v3.shape):
            raise ValueError(
                f"DepthMetrics: shape mismatch: pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, "
                f"valid {tuple(valid.shape)}"
            )
        check_names(names, p3.shape[0], "DepthMetrics")
        v = v3.to(torch.bool)
        values = depth_metrics(p3, g3, v)
        keep = torch.isfinite(values["abs_rel"])
        if not bool(keep.all()):  # find out why, only when something is wrong
            pos_p = torch.isfinite(p3) & (p3 > 0)
            pos_g = torch.isfinite(g3) & (g3 > 0)
            problems = {
                "no valid pixel": ~v.flatten(1).any(dim=1),
                "prediction NaN/inf or <= 0 at a valid pixel": (v & ~pos_p).flatten(1).any(dim=1),
                "ground truth NaN/inf or <= 0 at a valid pixel": (v & ~pos_g).flatten(1).any(dim=1),
            }
            known = torch.stack(list(problems.values())).any(dim=0)
            problems["non-finite metric value"] = ~keep & ~known
            keep = screen_samples(problems, names, self.on_bad_sample, "DepthMetrics") & keep
        for name, val in values.items():
            state = getattr(self, f"sum_{name}")
            setattr(self, f"sum_{name}", state + torch.where(keep, val, 0.0).sum())
        self.num_images += keep.sum()
        self.num_skipped += (~keep).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        if int(self.num_images) == 0:
            raise ValueError(f"DepthMetrics: no image scored ({int(self.num_skipped)} skipped as bad samples)")
        return {name: getattr(self, f"sum_{name}") / self.num_images for name in DEPTH_METRIC_NAMES}
