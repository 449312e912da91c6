"""The metric suite (SPEC 7): depth alignment, depth metrics, DSINE normal metrics.

Functional code (`align_depth`, `depth_metrics`, `angular_error`, `normal_metrics`) holds the
logic; `DepthMetrics` and `NormalMetrics` are torchmetrics `Metric`s whose states are sums, so
DDP reduces to exactly the single-process values. Values are fractions; tables multiply by 100.
The per-pixel depth work (the valid pixels read once, fit, align, score) is `fused.score_image`,
two passes in NumPy float64; `DepthMetrics(space=...)` aligns and scores without building the
aligned map.
"""

from __future__ import annotations

from lightning_modules.metrics.alignment import (
    ALIGNMENT_SPACES,
    DEPTH_FLOOR,
    DISPARITY_MIN,
    LOG_DEPTH_CAP,
    align_depth,
    fit_scale_shift,
    resize_to,
)
from lightning_modules.metrics.depth import (
    BAD_SAMPLE_POLICIES,
    DEPTH_METRIC_NAMES,
    DepthMetrics,
    depth_metrics,
)
from lightning_modules.metrics.normal import (
    MEDIAN_BIN_DEG,
    NORMAL_METRIC_NAMES,
    NORMAL_THRESHOLDS_DEG,
    NormalMetrics,
    angular_error,
    normal_metrics,
)

__all__ = [
    "ALIGNMENT_SPACES",
    "BAD_SAMPLE_POLICIES",
    "DEPTH_FLOOR",
    "DEPTH_METRIC_NAMES",
    "DISPARITY_MIN",
    "LOG_DEPTH_CAP",
    "MEDIAN_BIN_DEG",
    "NORMAL_METRIC_NAMES",
    "NORMAL_THRESHOLDS_DEG",
    "DepthMetrics",
    "NormalMetrics",
    "align_depth",
    "angular_error",
    "depth_metrics",
    "fit_scale_shift",
    "normal_metrics",
    "resize_to",
]
