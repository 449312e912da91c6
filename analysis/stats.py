"""The study's statistics: paired bootstrap CIs and the verdict, convergence numbers, linear probes.

Everything here is plain NumPy on arrays the runs already wrote (per-image metrics, logged loss
curves, block features), so the verdict of an experiment is computed from its data, never written
by hand. Conventions: arm A minus arm B; for a lower-is-better metric (AbsRel) a negative
difference means A is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z_975 = 1.959963984540054
"""Standard normal quantile at 0.975 (two-sided 95%)."""
Z_80 = 0.8416212335729143
"""Standard normal quantile at 0.80 (80% power)."""


@dataclass(frozen=True)
class PairedDifference:
    """Mean of A - B over seeds x images with its paired bootstrap percentile interval."""

    mean: float
    """Observed mean difference A - B (metric units, e.g. AbsRel as a fraction)."""
    low: float
    """Lower end of the (1 - alpha) percentile interval."""
    high: float
    """Upper end of the interval."""
    std_error: float
    """Standard deviation of the bootstrap replicates (the difference's standard error)."""
    n_seeds: int
    n_images: int

    @property
    def minimal_detectable_effect(self) -> float:
        """|difference| this design detects with 80% power at the 5% level: (z_.975 + z_.80) x SE."""
        return (Z_975 + Z_80) * self.std_error


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 10_000, alpha: float = 0.05,
                     seed: int = 0) -> PairedDifference:
    """Two-level paired bootstrap of mean(A - B).

    a, b: (seeds, images) per-image metric of the two arms, paired: row s of both was fine-tuned
    with seed s (same data order and noise), column i is the same test image. Each replicate
    resamples seeds and images independently with replacement (both are sources of variation)
    and averages the paired differences. Returns the observed mean, the percentile interval and
    the replicates' standard deviation.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"paired_bootstrap: expected two (seeds, images) arrays of one shape, got {a.shape}, {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired_bootstrap: non-finite per-image values")
    if not 0 < alpha < 1:
        raise ValueError(f"paired_bootstrap: alpha must be in (0, 1), got {alpha}")
    d = a - b
    n_seeds, n_images = d.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    images = rng.integers(0, n_images, size=(n_boot, n_images))
    # mean over (resampled seeds x resampled images) = mean_s mean_i d[s_k, i_l]; via per-seed counts
    image_counts = np.zeros((n_boot, n_images))
    np.add.at(image_counts, (np.arange(n_boot)[:, None], images), 1.0)
    per_seed = image_counts @ d.T / n_images  # (n_boot, n_seeds): each seed's mean over the resampled images
    reps = np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return PairedDifference(float(d.mean()), float(low), float(high), float(reps.std(ddof=1)), n_seeds, n_images)


def verdict(diff: PairedDifference, name_a: str, name_b: str, metric: str = "AbsRel") -> str:
    """One line: which arm is better on a lower-is-better metric, or none detectably, from the CI.

    'A better' when the whole interval of A - B is below 0, 'B better' when above, otherwise
    'no detectable difference' with the minimal detectable effect.
    """
    ci = f"{metric} difference {name_a} - {name_b} = {diff.mean:+.4f}, 95% CI [{diff.low:+.4f}, {diff.high:+.4f}]"
    design = f"{diff.n_seeds} seeds x {diff.n_images} images"
    if diff.high < 0:
        return f"{name_a} better: {ci} ({design})"
    if diff.low > 0:
        return f"{name_b} better: {ci} ({design})"
    return (f"no detectable difference: {ci}; minimal detectable effect {diff.minimal_detectable_effect:.4f} "
            f"({design})")


def steps_to_threshold(steps: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """First step at which a lower-is-better curve is <= threshold; NaN if it never gets there."""
    steps, values = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    hit = np.flatnonzero(values <= threshold)
    return float(steps[hit[0]]) if hit.size else float("nan")


def curve_area(steps: np.ndarray, values: np.ndarray) -> float:
    """Mean height of a curve over its step range: trapezoid area / (last step - first step).

    Lower means a lower loss on average over training (faster convergence at equal end point).
    """
    steps, values = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if steps.size < 2 or steps[-1] <= steps[0]:
        raise ValueError("curve_area: need at least two increasing steps")
    area = np.sum((values[1:] + values[:-1]) / 2 * np.diff(steps))
    return float(area / (steps[-1] - steps[0]))


def oscillation(values: np.ndarray) -> float:
    """Standard deviation (ddof 1) of step-to-step differences: 'smooth vs oscillating' as a number."""
    diffs = np.diff(np.asarray(values, dtype=np.float64))
    if diffs.size < 2:
        raise ValueError("oscillation: need at least three values")
    return float(diffs.std(ddof=1))


def ridge_probe_r2(features: np.ndarray, target: np.ndarray, groups: np.ndarray, test_fraction: float = 0.3,
                   ridge: float = 1e-2, seed: int = 0) -> float:
    """Held-out R^2 of a linear (ridge) probe from token features to a per-token target.

    features (N, D) token features, target (N,) e.g. per-token mean log depth, groups (N,) the image
    each token comes from: whole images are held out (a fraction `test_fraction`, chosen with
    `seed`), so the probe is scored on images it never saw. Features are standardised with the
    training split's mean and std; the ridge penalty is `ridge` x (number of training tokens), the
    same for every arm and block. R^2 = 1 - SSE / sum((y - mean_train(y))^2) on the test split
    (can be negative: worse than predicting the training mean).
    """
    x, y, g = np.asarray(features, np.float64), np.asarray(target, np.float64), np.asarray(groups)
    if x.ndim != 2 or y.shape != (x.shape[0],) or g.shape != y.shape:
        raise ValueError(f"ridge_probe_r2: expected features (N, D), target (N,), groups (N,); got "
                         f"{x.shape}, {y.shape}, {g.shape}")
    ids = np.unique(g)
    if ids.size < 2:
        raise ValueError("ridge_probe_r2: need tokens from at least two images to hold some out")
    rng = np.random.default_rng(seed)
    n_test = min(ids.size - 1, max(1, int(round(test_fraction * ids.size))))
    test = np.isin(g, rng.permutation(ids)[:n_test])
    mu, sd = x[~test].mean(0), x[~test].std(0)
    sd[sd == 0] = 1.0
    xtr, xte = (x[~test] - mu) / sd, (x[test] - mu) / sd
    ytr_mean = y[~test].mean()
    gram = xtr.T @ xtr + ridge * xtr.shape[0] * np.eye(x.shape[1])
    w = np.linalg.solve(gram, xtr.T @ (y[~test] - ytr_mean))
    pred = xte @ w + ytr_mean
    total = np.sum((y[test] - ytr_mean) ** 2)
    return float(1.0 - np.sum((y[test] - pred) ** 2) / total) if total > 0 else float("nan")
