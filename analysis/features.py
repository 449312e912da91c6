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

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def feature_norm_map(features, num_text_tokens: int, token_hw: tuple[int, int], part: str = "target"):
    """Per-token L2 norm over channels of one token part, as a (B, h2, w2) map.

    features: (B, L, C) torch tensor or NumPy array, L = num_text_tokens + h2*w2 (target only) or
    + 2*h2*w2 (target and image). part: "target" (tokens right after the text) or "image" (after the
    target tokens). Computed in float32; returns a float32 torch tensor on the input's device, or a
    NumPy array for NumPy input.
    """
    is_numpy = isinstance(features, np.ndarray)
    x = torch.from_numpy(features) if is_numpy else features
    if x.ndim != 3:
        raise ValueError(f"feature_norm_map: features must be (B, L, C), got shape {tuple(x.shape)}")
    h2, w2 = token_hw
    n = h2 * w2
    allowed = (num_text_tokens + n, num_text_tokens + 2 * n)
    if x.shape[1] not in allowed:
        raise ValueError(
            f"feature_norm_map: L={x.shape[1]} does not match num_text_tokens={num_text_tokens} + "
            f"{h2}x{w2} target tokens (+ as many image tokens): expected one of {allowed}"
        )
    if part == "target":
        start = num_text_tokens
    elif part == "image":
        if x.shape[1] != allowed[1]:
            raise ValueError(f"feature_norm_map: part='image' needs L={allowed[1]} (text+target+image), got {x.shape[1]}")
        start = num_text_tokens + n
    else:
        raise ValueError(f"feature_norm_map: part must be 'target' or 'image', got {part!r}")
    tokens = x[:, start:start + n].detach().to(torch.float32)
    norm = torch.linalg.vector_norm(tokens, dim=-1).reshape(x.shape[0], h2, w2)
    return norm.cpu().numpy() if is_numpy else norm


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


def load_feature_entries(runs: Mapping[str, str | Path], epochs: str | Sequence[int] = "first_last",
                         blocks: Sequence[str] | None = None) -> list[tuple]:
    """`plot_feature_grid` rows from the FeatureProbe snapshots `{run}/features/epoch_{E:03d}.npz`.

    runs: {model label: run folder}. epochs: "first_last" (the first and the last snapshot) or a list of
    epoch numbers E. Each snapshot's `block:{name}` maps (h2, w2) are upsampled bilinearly to the size
    of its `depth` array; blocks=None keeps every block in the file, in file order.
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
            entries.append((label, f"epoch {epoch}", maps, depth))
    return entries


def normalise_panel(image) -> np.ndarray:
    """Min-max scale one panel to [0, 1] (each panel on its own scale); a constant panel becomes 0."""
    a = np.asarray(image.detach().cpu() if torch.is_tensor(image) else image, dtype=np.float64)
    lo, hi = np.nanmin(a), np.nanmax(a)
    return np.zeros_like(a) if not hi > lo else (a - lo) / (hi - lo)


def plot_feature_grid(entries: Sequence, out_png: str | Path, cmap: str = "rainbow", depth_cmap: str = "Spectral",
                      title: str | None = None, figsize: tuple[float, float] | None = None, dpi: int = 100) -> Path:
    """Grid of feature-norm maps: one row per (model, epoch), one column per block, then the depth.

    entries: rows (model_label, epoch_label, [(block_name, HxW map), ...], predicted depth HxW or None).
    Every panel is min-max normalised on its own (colours compare within a panel, not across panels),
    drawn with `cmap` (rainbow; `depth_cmap` for the depth) and titled "<block>"; each row is labelled
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
    ncols = max(len(e[2]) + (e[3] is not None) for e in entries)
    nrows = len(entries)
    if figsize is None:
        lines = wrap_to_width(title, 2.2 * ncols * 0.95, 9).count("\n") + 1 if title else 0
        figsize = (2.2 * ncols, 2.0 * nrows + 0.2 * lines + (0.2 if title else 0.0))
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, dpi=dpi, squeeze=False)
    for r, (model, epoch, blocks, depth) in enumerate(entries):
        panels = [(str(name), m, cmap) for name, m in blocks]
        if depth is not None:
            panels.append(("predicted depth", depth, depth_cmap))
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(panels):
                ax.axis("off")
                continue
            name, image, colormap = panels[c]
            ax.imshow(normalise_panel(image), cmap=colormap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(name, fontsize=8)
        axes[r, 0].set_ylabel(f"{model}\n{epoch}", fontsize=8)
    if title:
        fig.suptitle(wrap_to_width(title, figsize[0] * 0.95, 9), fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    return out_png
