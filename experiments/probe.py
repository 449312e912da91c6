"""Linear probe of a backbone BEFORE fine-tuning: how much per-token log depth each block already encodes.

The backbone sees the fine-tuning input (FE2E's fixed start: zero target tokens, the image's tokens,
sigma = 1, the empty prompt); each block's output at the TARGET tokens is regressed onto the mean log
depth of the token's 16x16-pixel patch by a ridge probe scored on held-out images (analysis.stats).
Scenes are rendered fresh (seeds disjoint from every training set), so every arm sees the same images.
"""

from __future__ import annotations

import numpy as np
import torch

from analysis.stats import ridge_probe_r2
from datamodules.synthetic.render import render_scene

PROBE_SEED_OFFSET = 9_000_000
TOKEN_PX = 16
"""Pixels per token side: x8 VAE downsampling, 2x2 latent patches per token."""


def probe_scenes(n: int = 48, hw: tuple[int, int] = (96, 128), seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """(rgb (n,3,H,W) in [-1, 1], depth (n,H,W) metres with NaN where no geometry): half rooms, half roads."""
    from datamodules.hypersim import tone_map

    rgbs, depths = [], []
    for i in range(n):
        view = render_scene("room" if i % 2 == 0 else "road", *hw, seed=PROBE_SEED_OFFSET + seed * 10_007 + i)
        valid = np.isfinite(view.depth)
        rgbs.append(tone_map(view.rgb_linear, valid if valid.any() else np.ones_like(valid)) * 2 - 1)
        depths.append(view.depth)
    return torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2).contiguous(), np.stack(depths)


def token_log_depth(depth: np.ndarray) -> np.ndarray:
    """(n, H/16 * W/16) mean log depth per token patch (row-major, as token packing), NaN where no valid pixel."""
    n, h, w = depth.shape
    logd = np.log(np.where(np.isfinite(depth) & (depth > 0), depth, np.nan))
    patches = logd.reshape(n, h // TOKEN_PX, TOKEN_PX, w // TOKEN_PX, TOKEN_PX).transpose(0, 1, 3, 2, 4)
    patches = patches.reshape(n, -1, TOKEN_PX * TOKEN_PX)
    count = np.isfinite(patches).sum(-1)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, np.nansum(patches, -1) / np.maximum(count, 1), np.nan)


@torch.no_grad()
def block_target_features(backbone, rgb: torch.Tensor, blocks: list[str], batch: int = 8) -> dict[str, np.ndarray]:
    """{block: (n, tokens, C)} block outputs at the target tokens under FE2E's fixed-start input."""
    out: dict[str, list[np.ndarray]] = {b: [] for b in blocks}
    for i in range(0, rgb.shape[0], batch):
        z = backbone.encode(rgb[i : i + batch], sample=False)
        res = backbone(torch.zeros_like(z), z, torch.ones(z.shape[0]), capture=blocks)
        n_tok = (z.shape[-2] // 2) * (z.shape[-1] // 2)
        for b in blocks:
            out[b].append(res.features[b][:, res.num_text_tokens : res.num_text_tokens + n_tok].numpy())
    return {b: np.concatenate(v) for b, v in out.items()}


def probe_backbone(backbone, rgb: torch.Tensor, depth: np.ndarray, seed: int = 0) -> dict[str, float]:
    """{block name: held-out R^2} of the ridge probe for every block of the backbone."""
    blocks = backbone.block_names()
    feats = block_target_features(backbone, rgb, blocks)
    target = token_log_depth(depth)
    keep = np.isfinite(target).reshape(-1)
    groups = np.repeat(np.arange(target.shape[0]), target.shape[1])[keep]
    return {b: ridge_probe_r2(f.reshape(-1, f.shape[-1])[keep], target.reshape(-1)[keep], groups, seed=seed)
            for b, f in feats.items()}
