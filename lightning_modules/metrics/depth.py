"""Depth metrics (SPEC 7): per-image values, averaged over images, as functions and a Metric.

All values are fractions (delta1 = 0.97, not 97). The Metric keeps float64 SUMS of per-image
values and an image count (dist_reduce_fx="sum"), so a DDP run reduces to exactly the
single-process means.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import torch
from torchmetrics import Metric

from lightning_modules.choices import check_choice
from lightning_modules.metrics.fused import score_image
from lightning_modules.metrics.pixels import ALIGNMENT_SPACES, DEPTH_METRIC_NAMES, AlignmentSpace, as_numpy

logger = logging.getLogger(__name__)

OnBadSample = Literal["raise", "skip"]
"""Accepted `on_bad_sample` values of the metric classes (and of `evaluation.on_bad_sample`)."""
BAD_SAMPLE_POLICIES = get_args(OnBadSample)


def check_policy(on_bad_sample: str) -> str:
    """Return `on_bad_sample` if it is a known policy, else raise ValueError."""
    return check_choice("on_bad_sample", on_bad_sample, OnBadSample)


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


def bhw(x: np.ndarray, shape: torch.Size, what: str) -> np.ndarray:
    """A (B,H,W) view of a (B,H,W) or (B,1,H,W) array (`alignment.to_bhw` for the NumPy view of a
    tensor of `shape`); raise ValueError naming `what` otherwise."""
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim == 3:
        return x
    raise ValueError(f"{what}: expected shape (B,H,W) or (B,1,H,W), got {tuple(shape)}")


def score_batch(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, space: str | None = None,
    min_depth: float = 1e-5, max_depth: float = math.inf, who: str = "depth_metrics",
) -> tuple[np.ndarray, list[str | None]]:
    """Per-image depth metrics of a batch: ((B, 8) float64 array in DEPTH_METRIC_NAMES order, NaN
    rows for images that cannot be scored; B reasons, None for scored images). Arguments as
    `depth_metrics`; raises ValueError (prefixed with `who`) on a shape mismatch or unknown space."""
    p_np, g_np, v_np = (bhw(as_numpy(x), x.shape, what) for x, what in ((pred, "pred"), (gt, "gt"), (valid, "valid")))
    if not (p_np.shape == g_np.shape == v_np.shape):
        raise ValueError(
            f"{who}: shape mismatch: pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, valid {tuple(valid.shape)}"
        )
    if space is not None and space not in ALIGNMENT_SPACES:
        check_choice(f"{who}: space", space, AlignmentSpace)
    if not min_depth <= max_depth:
        raise ValueError(f"{who}: min_depth {min_depth} > max_depth {max_depth}")
    rows, reasons = [], []
    for i in range(p_np.shape[0]):
        row, why = score_image(p_np[i], g_np[i], v_np[i], space, min_depth, max_depth)
        rows.append(row)
        reasons.append(why)
    return np.stack(rows) if rows else np.zeros((0, len(DEPTH_METRIC_NAMES))), reasons


def depth_metrics(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, space: str | None = None,
    min_depth: float = 1e-5, max_depth: float = math.inf,
) -> dict[str, torch.Tensor]:
    """Per-image depth metrics over valid pixels, computed in float64 on the valid pixels only.

    pred, gt (metres), valid (bool): each (B,H,W) or (B,1,H,W). space None: pred is aligned
    metric depth; else it is aligned first, per image, in that space (see `align_depth`; same
    numbers, without building the aligned map) and clipped to [min_depth, max_depth].
    Returns name -> (B,) float64 tensor on pred's device for abs_rel, sq_rel, rmse, rmse_log,
    log10 and delta1..3 (fractions). Pixels outside `valid` may hold anything. An image without
    valid pixels, or with a NaN/inf or non-positive pred or gt at a valid pixel, gets NaN in every
    metric (`DepthMetrics` turns that into a named bad sample).
    """
    values, _ = score_batch(pred, gt, valid, space, min_depth, max_depth)
    out = torch.from_numpy(values).to(pred.device)
    return {name: out[:, k] for k, name in enumerate(DEPTH_METRIC_NAMES)}


class DepthMetrics(Metric):
    """Mean over images of the per-image depth metrics (SPEC 7), DDP-exact.

    DepthMetrics(on_bad_sample='raise', space=None, min_depth=1e-5, max_depth=inf). With space
    None, update(pred, gt, valid, names=None) takes ALIGNED metric depth; with a space
    ('depth', 'disparity', 'log', 'none') it takes the raw prediction at GT resolution and aligns
    each image in that space on its valid pixels, clipped to [min_depth, max_depth] (as
    `align_depth`, without building the aligned map). Maps (B,H,W) or (B,1,H,W), gt in metres.
    A shape mismatch always raises ValueError stating the shapes. An image with no valid pixel,
    no pixel usable for the fit, or a NaN/inf or non-positive prediction or ground truth at a
    valid pixel is a bad sample: `on_bad_sample='raise'` raises ValueError naming it (from
    `names`, else its batch index) and why; 'skip' logs a warning, excludes it and counts it in
    `num_skipped`. The one state is `totals`, (10,) float64: the sums of the per-image values in
    DEPTH_METRIC_NAMES order, then the numbers of scored and skipped images (`num_images`,
    `num_skipped`; one in-place add per update). After each update, `batch_values` holds name -> (B,) float64 CPU
    tensor of that batch's per-image values (NaN for skipped images).
    compute() -> {name: scalar float64 tensor} for DEPTH_METRIC_NAMES; raises ValueError if no
    image was scored.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, on_bad_sample: str = "raise", space: str | None = None, min_depth: float = 1e-5,
                 max_depth: float = math.inf, **kwargs) -> None:
        super().__init__(**kwargs)
        self.on_bad_sample = check_policy(on_bad_sample)
        if space is not None:
            check_choice("DepthMetrics: space", space, AlignmentSpace)
        if not min_depth <= max_depth:
            raise ValueError(f"DepthMetrics: min_depth {min_depth} > max_depth {max_depth}")
        self.space, self.min_depth, self.max_depth = space, min_depth, max_depth
        self._batch_values = np.zeros((0, len(DEPTH_METRIC_NAMES)))
        self.add_state("totals", torch.zeros(len(DEPTH_METRIC_NAMES) + 2, dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def num_images(self) -> torch.Tensor:
        """Images scored so far (int64 scalar tensor)."""
        return self.totals[-2].to(torch.int64)

    @property
    def num_skipped(self) -> torch.Tensor:
        """Bad samples skipped so far (int64 scalar tensor)."""
        return self.totals[-1].to(torch.int64)

    def update(
        self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, names: Sequence[str] | None = None
    ) -> None:
        values, reasons = score_batch(pred, gt, valid, self.space, self.min_depth, self.max_depth, "DepthMetrics")
        check_names(names, values.shape[0], "DepthMetrics")
        keep_np = np.array([why is None for why in reasons], dtype=bool)
        if not keep_np.all():  # name every bad sample and why
            problems: dict[str, torch.Tensor] = {}
            for i, why in enumerate(reasons):
                for part in (why.split("; ") if why else ()):
                    problems.setdefault(part, torch.zeros(len(reasons), dtype=torch.bool))[i] = True
            keep_np &= screen_samples(problems, names, self.on_bad_sample, "DepthMetrics").numpy()
        values[~keep_np] = math.nan
        self._batch_values = values
        kept = int(keep_np.sum())
        totals = np.empty(len(DEPTH_METRIC_NAMES) + 2)
        totals[:-2] = values[keep_np].sum(axis=0)
        totals[-2:] = kept, len(reasons) - kept
        if self.totals.device.type == "cpu":  # in place, through NumPy: a fraction of a torch op's cost
            self.totals.numpy()[:] += totals
        else:
            self.totals.add_(torch.from_numpy(totals).to(self.totals.device))

    @property
    def batch_values(self) -> dict[str, torch.Tensor]:
        """name -> (B,) float64 CPU tensor of the last update's per-image values (NaN: skipped)."""
        values = torch.from_numpy(self._batch_values)
        return {name: values[:, k] for k, name in enumerate(DEPTH_METRIC_NAMES)}

    def compute(self) -> dict[str, torch.Tensor]:
        if int(self.num_images) == 0:
            raise ValueError(f"DepthMetrics: no image scored ({int(self.num_skipped)} skipped as bad samples)")
        means = self.totals[:-2] / self.totals[-2]
        return {name: means[k] for k, name in enumerate(DEPTH_METRIC_NAMES)}
