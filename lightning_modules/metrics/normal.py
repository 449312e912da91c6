"""Surface-normal metrics, DSINE protocol (SPEC 7): angular error POOLED over every valid pixel.

The Metric's memory does not grow with the dataset: exact float64 sums (mean, RMSE), exact
integer threshold counts, and a fine integer histogram of the error for the median. All states
reduce with "sum", so DDP gives the single-process numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchmetrics import Metric

from lightning_modules.metrics.alignment import to_bhw
from lightning_modules.metrics.depth import check_names, check_policy, screen_samples

NORMAL_THRESHOLDS_DEG = (5.0, 7.5, 11.25, 22.5, 30.0)
"""Angular thresholds (degrees) of the 'fraction of pixels below' metrics."""
NORMAL_METRIC_NAMES = ("mean", "median", "rmse", "a5", "a7_5", "a11_25", "a22_5", "a30")
"""Keys of `normal_metrics` and `NormalMetrics.compute`: degrees for the first three, fractions after."""
MEDIAN_BIN_DEG = 0.005
"""Default histogram bin width (degrees) of NormalMetrics' median; its error is below one bin."""


def _check_normal_shapes(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, who: str) -> torch.Tensor:
    """Validate (B,3,H,W) pred/gt and a (B,H,W) or (B,1,H,W) mask; return the mask as (B,H,W) bool."""
    if pred.dim() != 4 or pred.shape[1] != 3 or pred.shape != gt.shape:
        raise ValueError(f"{who}: expected pred and gt of equal shape (B,3,H,W), got pred {tuple(pred.shape)}, gt {tuple(gt.shape)}")
    v = to_bhw(valid, f"{who}: valid").to(torch.bool)
    if v.shape != (pred.shape[0],) + tuple(pred.shape[2:]):
        raise ValueError(f"{who}: shape mismatch: pred {tuple(pred.shape)}, valid {tuple(valid.shape)}")
    return v


def angular_error(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-pixel angle between normals, degrees, float64, shape (B,H,W).

    pred, gt: (B,3,H,W) (any length; both are L2-normalised, a zero vector stays zero and gives
    90 deg); valid: bool (B,H,W) or (B,1,H,W). Error = acos(clamp(cos, -1, 1)) in degrees; pixels
    outside `valid` are NaN (no value), so index with the mask before pooling.
    """
    v = _check_normal_shapes(pred, gt, valid, "angular_error")
    p = pred.to(torch.float64)
    g = gt.to(torch.float64)
    p = p / torch.linalg.vector_norm(p, dim=1, keepdim=True).clamp_min(1e-12)
    g = g / torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min(1e-12)
    cos = (p * g).sum(dim=1).clamp(-1.0, 1.0)
    err = torch.rad2deg(torch.acos(cos))
    return torch.where(v, err, math.nan)


def normal_metrics(errors: torch.Tensor) -> dict[str, torch.Tensor]:
    """Pooled DSINE metrics of a 1-D tensor of angular errors (degrees) of all valid pixels.

    Exact (sorting median, mean of the two middle values for an even count). Returns name ->
    scalar float64 tensor: mean, median, rmse in degrees; a5 .. a30 as fractions.
    """
    e = errors.reshape(-1).to(torch.float64)
    if e.numel() == 0:
        raise ValueError("normal_metrics: no error values to pool")
    n = e.numel()  # median: mean of the two middle order statistics (kthvalue has no size limit)
    median = (torch.kthvalue(e, (n - 1) // 2 + 1).values + torch.kthvalue(e, n // 2 + 1).values) / 2
    out = {"mean": e.mean(), "median": median, "rmse": (e * e).mean().sqrt()}
    for name, thr in zip(NORMAL_METRIC_NAMES[3:], NORMAL_THRESHOLDS_DEG):
        out[name] = (e < thr).to(torch.float64).mean()
    return out


class NormalMetrics(Metric):
    """Pooled angular-error metrics over all valid pixels of a dataset (DSINE protocol).

    update(pred, gt, valid, names=None): pred/gt (B,3,H,W), valid (B,H,W) or (B,1,H,W) bool
    (callers decide validity, e.g. ||gt|| > 0.5). Shape mismatch always raises ValueError stating
    the shapes. An image with no valid pixel or a NaN/inf prediction or ground truth over its
    valid pixels is a bad sample: 'raise' raises ValueError naming it, 'skip' logs a warning,
    excludes it and counts it in `num_skipped`.
    compute() -> {mean, median, rmse (degrees), a5, a7_5, a11_25, a22_5, a30 (fractions)} as
    float64 scalars. Mean/RMSE/thresholds are exact; the median is read from a histogram of
    `bin_deg`-wide bins (interpolated inside its bin), within one bin of the exact value.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, on_bad_sample: str = "raise", bin_deg: float = MEDIAN_BIN_DEG, **kwargs) -> None:
        super().__init__(**kwargs)
        self.on_bad_sample = check_policy(on_bad_sample)
        if not 0 < bin_deg <= 1:
            raise ValueError(f"NormalMetrics: bin_deg must be in (0, 1] degrees, got {bin_deg}")
        self.num_bins = math.ceil(180.0 / bin_deg - 1e-9)  # bins no wider than bin_deg
        self.bin_deg = 180.0 / self.num_bins
        self.add_state("sum_err", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sum_sq", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_pixels", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("below", torch.zeros(len(NORMAL_THRESHOLDS_DEG), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("hist", torch.zeros(self.num_bins, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("num_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("num_skipped", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, names: Sequence[str] | None = None
    ) -> None:
        v = _check_normal_shapes(pred, gt, valid, "NormalMetrics")
        check_names(names, pred.shape[0], "NormalMetrics")
        problems = {
            "no valid pixel": ~v.flatten(1).any(dim=1),
            "prediction NaN/inf over valid pixels": (v & ~torch.isfinite(pred).all(dim=1)).flatten(1).any(dim=1),
            "ground truth NaN/inf over valid pixels": (v & ~torch.isfinite(gt).all(dim=1)).flatten(1).any(dim=1),
        }
        keep = screen_samples(problems, names, self.on_bad_sample, "NormalMetrics")
        v = v & keep[:, None, None]
        err = angular_error(pred, gt, v)[v]
        self.sum_err += err.sum()
        self.sum_sq += (err * err).sum()
        self.num_pixels += err.numel()
        self.below += torch.stack([torch.lt(err, thr).sum() for thr in NORMAL_THRESHOLDS_DEG])
        idx = (err / self.bin_deg).floor().to(torch.int64).clamp_(0, self.num_bins - 1)
        self.hist += torch.bincount(idx, minlength=self.num_bins)
        self.num_images += keep.sum()
        self.num_skipped += (~keep).sum()

    def _hist_median(self) -> torch.Tensor:
        """Median from the histogram: mean of the two middle order statistics, each placed
        uniformly inside its bin."""
        n = int(self.num_pixels)
        cum = torch.cumsum(self.hist, dim=0)
        values = []
        for k in ((n - 1) // 2, n // 2):
            b = int(torch.searchsorted(cum, torch.tensor(k, dtype=cum.dtype, device=cum.device), right=True))
            before = int(cum[b] - self.hist[b])
            frac = (k - before + 0.5) / int(self.hist[b])
            values.append((b + frac) * self.bin_deg)
        return torch.tensor(sum(values) / 2.0, dtype=torch.float64, device=self.hist.device)

    def compute(self) -> dict[str, torch.Tensor]:
        if int(self.num_pixels) == 0:
            raise ValueError(f"NormalMetrics: no pixel scored ({int(self.num_skipped)} images skipped as bad samples)")
        n = self.num_pixels.to(torch.float64)
        out = {"mean": self.sum_err / n, "median": self._hist_median(), "rmse": (self.sum_sq / n).sqrt()}
        for i, name in enumerate(NORMAL_METRIC_NAMES[3:]):
            out[name] = self.below[i].to(torch.float64) / n
        return out
