"""The (always empty) text conditioning: a cached file for real weights, a seeded buffer for tiny models.

File format (safetensors): `prompt_embeds` float32 (T, D) and, for the FLUX family,
`pooled_prompt_embeds` float32 (P,). How the file is made, once, on a machine with the text encoders:
- flux-dev / flux-kontext: `FluxPipeline.from_pretrained(folder, transformer=None, vae=None,
  local_files_only=True).encode_prompt("", prompt_2="", max_sequence_length=512)` gives T5 states
  (1, 512, 4096) and CLIP pooled (1, 768); `save_prompt_embeds(path, embeds[0], pooled[0])`.
- step1x-edit: Qwen2.5-VL hidden states of the empty prompt -> Step1X's connector; see
  step1x.py (`cache_prompt`).
- qwen-image / qwen-image-edit: `QwenImagePipeline.encode_prompt("")` -> (1, T, 3584);
  save with pooled=None (Qwen-Image has no pooled vector).
"""

from __future__ import annotations

import os

import torch
from safetensors.torch import load_file, save_file


def save_prompt_embeds(path: str, prompt_embeds: torch.Tensor, pooled: torch.Tensor | None = None) -> None:
    """Write the cache file: prompt_embeds (T, D), pooled (P,) or None."""
    if prompt_embeds.ndim != 2:
        raise ValueError(f"prompt_embeds must be (T, D), got {tuple(prompt_embeds.shape)}")
    tensors = {"prompt_embeds": prompt_embeds.detach().float().contiguous().cpu()}
    if pooled is not None:
        tensors["pooled_prompt_embeds"] = pooled.detach().float().reshape(-1).contiguous().cpu()
    save_file(tensors, path)


def load_prompt_embeds(path: str, dim: int, pooled_dim: int | None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read the cache file; returns (T, dim) float32 and (pooled_dim,) float32 or None.

    Raises FileNotFoundError / ValueError naming `path` when the file is missing or has wrong shapes.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone.prompt_embeds: no file at {path} (expected a safetensors file "
                                "with 'prompt_embeds'; see lightning_modules/backbones/prompt.py)")
    tensors = load_file(path)
    emb = tensors.get("prompt_embeds")
    if emb is None or emb.ndim != 2 or emb.shape[1] != dim:
        got = None if emb is None else tuple(emb.shape)
        raise ValueError(f"{path}: expected 'prompt_embeds' of shape (T, {dim}), got {got}")
    pooled = None
    if pooled_dim is not None:
        pooled = tensors.get("pooled_prompt_embeds")
        if pooled is None or pooled.numel() != pooled_dim:
            got = None if pooled is None else tuple(pooled.shape)
            raise ValueError(f"{path}: expected 'pooled_prompt_embeds' of {pooled_dim} values, got {got}")
        pooled = pooled.reshape(pooled_dim).float()
    return emb.float(), pooled


def random_prompt_embeds(num_tokens: int, dim: int, pooled_dim: int | None, seed: int
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Seeded N(0, 1) stand-in for the empty-prompt conditioning of randomly initialised models."""
    g = torch.Generator().manual_seed(seed + 12345)
    emb = torch.randn(num_tokens, dim, generator=g)
    pooled = torch.randn(pooled_dim, generator=g) if pooled_dim is not None else None
    return emb, pooled
