"""The (always empty) text conditioning: a cached file for real weights, a seeded buffer for tiny models.

File format (safetensors): `prompt_embeds` float32 (T, D) and, for the FLUX family,
`pooled_prompt_embeds` float32 (P,). How the file is made, once, on a machine with the text encoders:
- flux-dev / flux-kontext: `FluxPipeline.from_pretrained(folder, transformer=None, vae=None,
  local_files_only=True).encode_prompt("", prompt_2="", max_sequence_length=512)` gives T5 states
  (1, 512, 4096) and CLIP pooled (1, 768); `save_prompt_embeds(path, embeds[0], pooled[0])`.
- step1x-edit: a different file (`save_qwen_states` / `load_qwen_states` below): the Qwen2.5-VL-7B
  states of the empty prompt under Step1X-Edit's chat template, from `python -m experiments cache-prompt
  --family step1x` or FE2E's released `latent/no_info.npz`. Step1X's connector, which depends on the
  timestep, turns them into DiT text tokens inside the adapter (step1x_connector.py).
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


def random_qwen_states(num_tokens: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stand-in Step1X text file for random models: states (T, dim) N(0, 1), mask (T,) bool with
    the last quarter of the tokens marked as padding (so the connector's masking is exercised)."""
    g = torch.Generator().manual_seed(seed + 23456)
    mask = torch.arange(num_tokens) < max(1, num_tokens - num_tokens // 4)
    return torch.randn(num_tokens, dim, generator=g) * mask[:, None], mask


# --- Step1X-Edit: Qwen2.5-VL states of the empty prompt (the connector runs in the adapter) -----------------

QWEN_STATES_KEYS = ("embeds", "masks")
"""Keys of a Step1X-Edit text file, the same as FE2E's released `latent/no_info.npz`: `embeds` (T, C) the
last hidden states of Qwen2.5-VL-7B (C = 3584) after Step1X's 217 template tokens, zero-padded to T = 640,
and `masks` (T,) 1 for real tokens, 0 for padding."""


def save_qwen_states(path: str, embeds: torch.Tensor, masks: torch.Tensor) -> None:
    """Write a Step1X-Edit text file (.safetensors, or .npz as FE2E ships it): embeds (T, C), masks (T,)."""
    if embeds.ndim != 2 or masks.shape != embeds.shape[:1]:
        raise ValueError(f"expected embeds (T, C) and masks (T,), got {tuple(embeds.shape)} and {tuple(masks.shape)}")
    tensors = {"embeds": embeds.detach().float().contiguous().cpu(),
               "masks": masks.detach().to(torch.int64).contiguous().cpu()}
    if str(path).endswith(".npz"):
        import numpy as np

        np.savez(path, **{k: v.numpy() for k, v in tensors.items()})
    else:
        save_file(tensors, path)


def load_qwen_states(path: str, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a Step1X-Edit text file (.npz as FE2E's `no_info.npz`, or .safetensors with the same keys).

    Returns embeds (T, dim) float32 and masks (T,) bool. A leading batch axis of 1 is accepted.
    Raises FileNotFoundError / ValueError naming `path` and what was expected.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone.prompt_embeds: no file at {path} (expected Step1X-Edit's cached "
                                "Qwen2.5-VL states: keys 'embeds' (T, C) and 'masks' (T,); made by "
                                "`python -m experiments cache-prompt --family step1x` or FE2E's latent/no_info.npz)")
    if str(path).endswith(".npz"):
        import numpy as np

        with np.load(path) as data:
            tensors = {k: torch.from_numpy(np.asarray(data[k], dtype=np.float32)) for k in data.files}
    else:
        tensors = load_file(path)
    missing = [k for k in QWEN_STATES_KEYS if k not in tensors]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; expected {list(QWEN_STATES_KEYS)}, found {sorted(tensors)}")
    embeds, masks = tensors["embeds"], tensors["masks"]
    if embeds.ndim == 3 and embeds.shape[0] == 1:
        embeds = embeds[0]
    if masks.ndim == 2 and masks.shape[0] == 1:
        masks = masks[0]
    if embeds.ndim != 2 or embeds.shape[1] != dim or masks.shape != embeds.shape[:1]:
        raise ValueError(f"{path}: expected 'embeds' (T, {dim}) and 'masks' (T,), got {tuple(embeds.shape)} "
                         f"and {tuple(masks.shape)}")
    masks = masks != 0
    if not bool(masks.any()):
        raise ValueError(f"{path}: 'masks' marks no token as valid")
    return embeds.float(), masks
