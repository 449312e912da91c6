"""TensorBoard event files -> pandas -> convergence plots (the editor-vs-generator loss figure).

Reads what training already logged (no re-running): scalars such as `train/loss`, `train/lr`,
`val/{dataset}/abs_rel` and Lightning's `epoch` scalar (the current epoch, logged with every
logged step). Plots are written with matplotlib's Agg backend at exactly figsize * dpi pixels.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tensorboard.backend.event_processing.event_accumulator import (
    SCALARS,
    EventAccumulator,
)

from analysis.tables import describe_run

logger = logging.getLogger(__name__)

COLUMNS = ["run", "tag", "step", "wall_time", "value"]


def _event_dirs(run_dir: Path) -> list[Path]:
    """Folders at or below run_dir holding event files (Lightning may add a version_N level)."""
    return sorted({p.parent for p in run_dir.rglob("events.out.tfevents.*")})


def load_scalars(run_dirs: Iterable[str | Path] | Mapping[str, str | Path],
                 tags: Sequence[str] | None = None) -> pd.DataFrame:
    """All scalar events of the given runs as a long DataFrame with columns run, tag, step, wall_time, value.

    run_dirs: run folders (the run label is the folder name) or {label: folder}. Every event file at
    or below a folder is read. tags=None reads every scalar tag; a requested tag a run lacks is
    logged as a warning. Where a step appears more than once for a run and tag (a resumed run), the
    latest by wall_time is kept and the number dropped is logged. Sorted by run, tag, step.
    """
    items = run_dirs.items() if isinstance(run_dirs, Mapping) else ((Path(d).name, d) for d in run_dirs)
    frames = []
    for label, run_dir in items:
        run_dir = Path(run_dir)
        dirs = _event_dirs(run_dir)
        if not dirs:
            raise FileNotFoundError(f"{run_dir}: no TensorBoard event files (events.out.tfevents.*) found")
        found = set()
        for d in dirs:
            acc = EventAccumulator(str(d), size_guidance={SCALARS: 0})  # 0 = keep every event
            acc.Reload()
            for tag in acc.Tags()[SCALARS]:
                if tags is not None and tag not in tags:
                    continue
                found.add(tag)
                events = acc.Scalars(tag)
                frames.append(pd.DataFrame({
                    "run": label, "tag": tag,
                    "step": np.array([e.step for e in events], dtype=np.int64),
                    "wall_time": np.array([e.wall_time for e in events], dtype=np.float64),
                    "value": np.array([e.value for e in events], dtype=np.float64),
                }))
        for tag in sorted(set(tags or ()) - found):
            logger.warning("%s: tag '%s' was not logged", run_dir, tag)
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat(frames, ignore_index=True).sort_values(["run", "tag", "step", "wall_time"], kind="stable")
    n = len(df)
    df = df.drop_duplicates(["run", "tag", "step"], keep="last").reset_index(drop=True)
    if len(df) < n:
        logger.warning("load_scalars: dropped %d repeated (run, tag, step) events, kept the latest", n - len(df))
    return df[COLUMNS]


def smooth(series, alpha: float):
    """TensorBoard's debiased exponential moving average with smoothing weight `alpha` in [0, 1).

    TensorBoard: s_0 = 0, s_t = alpha * s_{t-1} + (1 - alpha) * x_t, output s_t / (1 - alpha**t)
    (t = 1, 2, ...). Unrolled, s_t = (1 - alpha) * sum_{i<t} alpha**i x_{t-i} and
    1 - alpha**t = (1 - alpha) * sum_{i<t} alpha**i, so the output is sum alpha**i x_{t-i} / sum alpha**i:
    exactly pandas' `ewm(alpha=1 - alpha, adjust=True).mean()`, which computes it. The first output
    equals x_1 and alpha = 0 returns the input. Returns the same kind (pandas Series with its index,
    or a NumPy array).
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"smooth: alpha must be in [0, 1), got {alpha}")
    frame = series if isinstance(series, pd.Series) else pd.Series(np.asarray(series, dtype=np.float64))
    out = frame.astype(np.float64).ewm(alpha=1.0 - alpha, adjust=True).mean()
    return out if isinstance(series, pd.Series) else out.to_numpy()


def infer_steps_per_epoch(epoch_df: pd.DataFrame) -> float:
    """Steps per epoch from a run's logged `epoch` scalar (columns step, value).

    Assumes a constant number of steps per epoch and global step 0 at the start of epoch 0, as in
    Lightning: a step s logged with epoch e satisfies e * n <= s < (e + 1) * n, so n lies in
    (max s / (e + 1), min over e > 0 of s / e]; the integer nearest the middle of that interval is
    returned. With only epoch 0 logged, n = last logged step + 1 (epoch 0 taken as complete, logged).
    """
    if epoch_df is None or epoch_df.empty:
        raise ValueError("infer_steps_per_epoch: no 'epoch' scalar logged for this run; pass steps_per_epoch")
    s = epoch_df["step"].to_numpy(dtype=np.float64)
    e = np.round(epoch_df["value"].to_numpy(dtype=np.float64))
    lo = float(np.max(s / (e + 1)))
    if not (e > 0).any():
        logger.warning("only epoch 0 was logged: taking steps_per_epoch = last logged step + 1 = %d", s.max() + 1)
        return float(s.max() + 1)
    hi = float(np.min(s[e > 0] / e[e > 0]))
    if not hi > lo:
        raise ValueError(f"the logged 'epoch' scalar is not consistent with a constant number of steps per epoch "
                         f"(bounds {lo:.3f} .. {hi:.3f}); pass steps_per_epoch")
    n = float(np.clip(np.round((lo + hi) / 2), np.floor(lo) + 1, np.floor(hi)))
    return n if lo < n <= hi else (lo + hi) / 2


def steps_to_epochs(steps, epoch_df: pd.DataFrame | None = None, steps_per_epoch: float | None = None) -> np.ndarray:
    """Fractional epoch of each global step: step / steps_per_epoch (so step 0 is epoch 0.0).

    steps_per_epoch defaults to `infer_steps_per_epoch(epoch_df)` from the run's logged `epoch` scalar.
    """
    n = float(steps_per_epoch) if steps_per_epoch is not None else infer_steps_per_epoch(epoch_df)
    return np.asarray(steps, dtype=np.float64) / n


def wrap_to_width(text: str, width_in: float, fontsize: float) -> str:
    """Wrap text into lines that fit `width_in` inches at `fontsize` points (about 0.55 em per char)."""
    chars = max(20, int(width_in * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(part, chars) for part in text.split("\n"))


def _series(df, run, tag, x, steps_per_epoch):
    part = df[(df["run"] == run) & (df["tag"] == tag)].sort_values("step")
    if x == "step":
        return part["step"].to_numpy(dtype=np.float64), part["value"].to_numpy()
    epochs = df[(df["run"] == run) & (df["tag"] == "epoch")]
    return steps_to_epochs(part["step"], epochs, steps_per_epoch), part["value"].to_numpy()


def plot_loss_curves(df: pd.DataFrame, out_png: str | Path, tag: str = "train/loss", x: str = "epoch",
                     inset_epochs: float | None = 2, labels: Mapping[str, str] | None = None,
                     title: str | None = None, footnote: str | None = None, smoothing: float = 0.0,
                     steps_per_epoch: float | None = None, runs: Sequence[str] | None = None,
                     figsize: tuple[float, float] = (8.0, 5.0), dpi: int = 120) -> Path:
    """One line per run of `tag` over epochs (or steps), with an inset zoom on the first epochs.

    df: `load_scalars` output (must hold the `epoch` tag when x="epoch" and no steps_per_epoch).
    inset_epochs: x range [0, inset_epochs] of the inset (None: no inset); in steps when x="step".
    labels: {run: legend label}. footnote: what the runs ran on (backbone, data, steps), printed
    under the axes. smoothing: `smooth` alpha applied to the plotted lines (0 = raw).
    Writes a PNG of exactly figsize * dpi pixels and returns its path.
    """
    if x not in ("epoch", "step"):
        raise ValueError(f"plot_loss_curves: x must be 'epoch' or 'step', got {x!r}")
    runs = list(runs) if runs is not None else sorted(df.loc[df["tag"] == tag, "run"].unique())
    if not runs:
        raise ValueError(f"plot_loss_curves: no run logged tag '{tag}'")
    labels = dict(labels or {})
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    curves = []
    for i, run in enumerate(runs):
        xs, ys = _series(df, run, tag, x, steps_per_epoch)
        if len(xs) == 0:
            logger.warning("plot_loss_curves: run '%s' has no '%s' values, not drawn", run, tag)
            continue
        ys = smooth(ys, smoothing) if smoothing else ys
        color = f"C{i}"
        ax.plot(xs, ys, color=color, lw=1.2, label=labels.get(run, run))
        curves.append((xs, ys, color))
    ax.set_xlabel("epoch" if x == "epoch" else "step")
    ax.set_ylabel(tag)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title)
    if inset_epochs is not None and curves:
        inset = ax.inset_axes([0.52, 0.45, 0.45, 0.45])
        lo, hi = np.inf, -np.inf
        for xs, ys, color in curves:
            keep = xs <= inset_epochs
            inset.plot(xs[keep], ys[keep], color=color, lw=1.0)
            if keep.any():
                lo, hi = min(lo, np.nanmin(ys[keep])), max(hi, np.nanmax(ys[keep]))
        x0 = min(float(np.min(xs)) for xs, _, _ in curves)
        inset.set_xlim(x0, inset_epochs)
        if np.isfinite(lo) and hi > lo:
            pad = 0.05 * (hi - lo)
            inset.set_ylim(lo - pad, hi + pad)
        inset.set_title(f"first {inset_epochs:g} {'epochs' if x == 'epoch' else 'steps'}", fontsize=8)
        inset.tick_params(labelsize=7)
        inset.grid(alpha=0.3)
    if footnote:
        text = wrap_to_width(footnote, figsize[0] * 0.98, 7)
        fig.text(0.01, 0.01, text, fontsize=7, ha="left", va="bottom")
        lines = text.count("\n") + 1
        fig.subplots_adjust(bottom=min(0.5, 0.1 + (lines * 7 * 1.3 + 30) / 72 / figsize[1]))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)  # no bbox_inches="tight": the size stays figsize * dpi
    plt.close(fig)
    return out_png


def run_footnote(metas: Mapping[str, Mapping]) -> str:
    """'label: backbone=..., data=..., steps=...' for each run, from metrics.json meta dicts."""
    return "; ".join(f"{label}: {describe_run(m)}" for label, m in metas.items())
