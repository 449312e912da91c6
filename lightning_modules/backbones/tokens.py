"""Latents <-> tokens for FLUX-family DiTs: 2x2 patch packing and (N, 3) position ids.

Layout (same as diffusers' FLUX pipelines): a latent (B, C, h, w) becomes (B, h/2 * w/2, 4C) tokens in
row-major patch order; each token's channels are ordered (c, dy, dx). Position ids are float32 (N, 3)
rows [frame, row, col] with row, col the patch coordinates (bfloat16 is exact only up to 256).
`feature_norm_map` reads a block's output tokens back as a per-patch map (the feature figure, probes).
"""

from __future__ import annotations

import torch


def pack(latent: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h/2 * w/2, 4C); h and w must be even."""
    b, c, h, w = latent.shape
    if h % 2 or w % 2:
        raise ValueError(f"latent height/width must be even to pack 2x2 patches, got {h}x{w}")
    x = latent.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, h/2 * w/2, 4C) -> (B, C, h, w); inverse of `pack`."""
    b, n, d = tokens.shape
    if n != (h // 2) * (w // 2):
        raise ValueError(f"{n} tokens do not tile a {h}x{w} latent")
    x = tokens.reshape(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, h, w)


def position_ids(h: int, w: int, frame: float = 0.0, device: torch.device | None = None) -> torch.Tensor:
    """float32 (h/2 * w/2, 3) ids [frame, row, col] of the packed tokens of an (h, w) latent."""
    rows = torch.arange(h // 2, device=device, dtype=torch.float32)
    cols = torch.arange(w // 2, device=device, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)
    first = torch.full((grid.shape[0], 1), float(frame), device=device, dtype=torch.float32)
    return torch.cat([first, grid], dim=1)


def feature_norm_map(features, num_text_tokens: int, token_hw: tuple[int, int], part: str = "target"):
    """Per-token L2 norm over channels of one token part, as a (B, h2, w2) map.

    features: (B, L, C) torch tensor or NumPy array of one block's output tokens,
    L = num_text_tokens + h2*w2 (target only) or + 2*h2*w2 (target and image). part: "target" (tokens right after the text) or "image" (after the
    target tokens). Computed in float32; returns a float32 torch tensor on the input's device, or a
    NumPy array for NumPy input.
    """
    is_numpy = not isinstance(features, torch.Tensor)
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
