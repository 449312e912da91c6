"""Pictures of what a miniature prior learned: class-conditioned samples and edits, as a PNG grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from experiments.priors.model import ConditionEmbedder, dit_velocity
from lightning_modules.objectives.sampling import flux_dynamic_shift, inference_sigmas


@torch.no_grad()
def sample_latents(transformer, embed: ConditionEmbedder, ids: torch.Tensor, hw: tuple[int, int],
                   source: torch.Tensor | None = None, steps: int = 20, seed: int = 0) -> torch.Tensor:
    """Euler flow-matching samples (B, 16, h, w) from noise under condition ids (B, F), with FLUX's
    dynamic schedule; `source` (B, 16, h, w) makes them edits of those latents."""
    transformer.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(ids.shape[0], 16, *hw, generator=gen)
    text, pooled = embed(ids)
    sigmas = inference_sigmas(steps, flux_dynamic_shift(hw[0] * hw[1] // 4)).tolist()
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        v = dit_velocity(transformer, x, source, torch.full((x.shape[0],), s), text, pooled)
        x = x + (s_next - s) * v
    return x


def write_grid(rows: list[torch.Tensor], path: Path) -> Path:
    """Save rows of RGB images (each (N, 3, H, W) in [-1, 1]) as one PNG grid, 2 px gaps."""
    from PIL import Image

    tiles = [[((img.permute(1, 2, 0).clamp(-1, 1).numpy() + 1) * 127.5).round().astype(np.uint8) for img in row]
             for row in rows]
    h, w = tiles[0][0].shape[:2]
    cols = max(len(r) for r in tiles)
    canvas = np.full((len(tiles) * (h + 2), cols * (w + 2), 3), 255, np.uint8)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            canvas[i * (h + 2) : i * (h + 2) + h, j * (w + 2) : j * (w + 2) + w] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path
