"""Block feature-norm maps: the paper's feature figure (blocks 1, 20, 35 at epoch 1 and the last epoch).

A block output is a token sequence (B, L, C). In the single-stream blocks it is
[text ; target ; image]: `num_text_tokens` text tokens first, then the h2*w2 target tokens, then
(for sequence-concatenated inputs) the h2*w2 image tokens. Double-stream blocks return the image
stream without text (pass num_text_tokens=0). Each token is a 2x2 patch of latents, laid out in
raster order (row-major over the h2 x w2 token grid). The map is the per-token L2 norm over channels.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def upsample_to(feature_map, size: tuple[int, int]):
    """Bilinear resize (align_corners=False) of an (h, w) or (B, h, w) map to (H, W); same kind and rank out."""
    is_numpy = isinstance(feature_map, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(feature_map)) if is_numpy else feature_map
    if x.ndim not in (2, 3):
        raise ValueError(f"upsample_to: map must be (h, w) or (B, h, w), got shape {tuple(x.shape)}")
    y = x.to(torch.float32)
    y = y[None, None] if x.ndim == 2 else y[:, None]
    y = F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=False)
    y = y[0, 0] if x.ndim == 2 else y[:, 0]
    return y.numpy() if is_numpy else y


class FeatureRow(NamedTuple):
    """One row of the feature figure: a model at one epoch."""

    model: str
    epoch: str
    maps: list
    """[(block name, (H, W) feature-norm map upsampled to the image size), ...]."""
    depth: Any = None
    """(H, W) predicted depth, affine-invariant in the model's quantization space (larger = farther)."""
    rgb: Any = None
    """(H, W, 3) input image in [0, 1]."""
    gt_depth: Any = None
    """(H, W) ground-truth depth in metres, NaN where invalid (drawn as log depth: larger = farther)."""


def load_feature_entries(runs: Mapping[str, str | Path], epochs: str | Sequence[int] = "first_last",
                         blocks: Sequence[str] | None = None) -> list[tuple]:
    """`plot_feature_grid` rows from the FeatureProbe snapshots `{run}/features/epoch_{E:03d}.npz`.

    runs: {model label: run folder}. epochs: "first_last" (the first and the last snapshot) or a list of
    epoch numbers E. Each snapshot's `block:{name}` maps (h2, w2) are upsampled bilinearly to the size
    of its `depth` array; blocks=None keeps every block in the file, in file order. Returns FeatureRows
    with the snapshot's input image `rgb` and ground truth `gt_depth` where it holds them.
    """
    entries = []
    for label, run_dir in runs.items():
        files = {int(p.stem.split("_")[-1]): p for p in sorted(Path(run_dir, "features").glob("epoch_*.npz"))}
        if not files:
            raise FileNotFoundError(f"{Path(run_dir) / 'features'}: no epoch_*.npz feature snapshots")
        wanted = sorted({min(files), max(files)}) if epochs == "first_last" else list(epochs)
        for epoch in wanted:
            if epoch not in files:
                raise FileNotFoundError(f"{Path(run_dir) / 'features'}: no snapshot for epoch {epoch} (have {sorted(files)})")
            with np.load(files[epoch]) as snap:
                depth = snap["depth"]
                names = [k[len("block:"):] for k in snap.files if k.startswith("block:")]
                missing = [b for b in (blocks or []) if b not in names]
                if missing:
                    raise KeyError(f"{files[epoch]}: blocks {missing} not saved (have {names})")
                maps = [(b, upsample_to(snap[f"block:{b}"], depth.shape)) for b in (blocks or names)]
                rgb = snap["rgb"] if "rgb" in snap.files else None
                gt = snap["gt_depth"] if "gt_depth" in snap.files else None
            entries.append(FeatureRow(label, f"epoch {epoch}", maps, depth, rgb, gt))
    return entries


def normalise_panel(image) -> np.ndarray:
    """Min-max scale one panel to [0, 1] (each panel on its own scale); a constant panel becomes 0."""
    a = np.asarray(image.detach().cpu() if torch.is_tensor(image) else image, dtype=np.float64)
    lo, hi = np.nanmin(a), np.nanmax(a)
    return np.zeros_like(a) if not hi > lo else (a - lo) / (hi - lo)


def row_panels(row: FeatureRow, cmap: str, depth_cmap: str) -> list[tuple[str, Any, str | None]]:
    """(title, image, colormap) per panel of a row: input, ground truth (log depth, NaN where invalid),
    the block maps, the prediction; colormap None = an RGB image drawn as is."""
    panels: list[tuple[str, Any, str | None]] = []
    if row.rgb is not None:
        panels.append(("input", row.rgb, None))
    if row.gt_depth is not None:
        gt = np.asarray(row.gt_depth, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            panels.append(("ground truth (log depth)", np.where(gt > 0, np.log(gt), np.nan), depth_cmap))
    panels += [(str(name), m, cmap) for name, m in row.maps]
    if row.depth is not None:
        panels.append(("predicted depth", row.depth, depth_cmap))
    return panels


def plot_feature_grid(entries: Sequence, out_png: str | Path, cmap: str = "rainbow", depth_cmap: str = "Spectral",
                      title: str | None = None, figsize: tuple[float, float] | None = None, dpi: int = 100) -> Path:
    """Grid of feature-norm maps: one row per (model, epoch): the input image and the ground-truth depth
    (where the row has them), one column per block, then the predicted depth.

    entries: FeatureRows, or tuples (model_label, epoch_label, [(block_name, HxW map), ...], predicted
    depth HxW or None[, rgb HxWx3 in [0, 1], ground-truth depth HxW in metres, NaN = invalid]).
    Every map panel is min-max normalised on its own (colours compare within a panel, not across panels),
    drawn with `cmap` (rainbow; `depth_cmap` for the depths; the ground truth as log depth, its invalid
    pixels blank) and titled "<block>"; each row is labelled
    "<model>\\n<epoch>"; the title is wrapped to the figure width. figsize default: 2.2 in per column,
    2.0 in per row, plus room for the title lines.
    Writes a PNG of exactly figsize * dpi pixels and returns its path.
    """
    import matplotlib  # here, not at import: training imports feature_norm_map and needs no plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.curves import wrap_to_width

    if not entries:
        raise ValueError("plot_feature_grid: no entries")
    entries = [FeatureRow(*e) for e in entries]
    rows = [row_panels(e, cmap, depth_cmap) for e in entries]
    ncols = max(len(p) for p in rows)
    nrows = len(entries)
    if figsize is None:
        lines = wrap_to_width(title, 2.2 * ncols * 0.95, 9).count("\n") + 1 if title else 0
        figsize = (2.2 * ncols, 2.0 * nrows + 0.2 * lines + (0.2 if title else 0.0))
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, dpi=dpi, squeeze=False)
    for r, (entry, panels) in enumerate(zip(entries, rows)):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(panels):
                ax.axis("off")
                continue
            name, image, colormap = panels[c]
            if colormap is None:  # the input image, as is
                ax.imshow(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0), interpolation="nearest")
            else:
                ax.imshow(normalise_panel(image), cmap=colormap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(name, fontsize=8)
        axes[r, 0].set_ylabel(f"{entry.model}\n{entry.epoch}", fontsize=8)
    if title:
        fig.suptitle(wrap_to_width(title, figsize[0] * 0.95, 9), fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    return out_png
