"""Tiny, seeded, randomly initialised instances of the real diffusers classes (tests, CPU default).

Same classes and code paths as the full models, only narrower and shallower:
FLUX: 2 double + 4 single blocks, 2 heads x 16 dims (hidden 32), rope axes (4, 6, 6), text dim 32,
pooled 32; Qwen-Image: 3 blocks, same widths, text dim 32. VAEs: 16 latent channels, x8 downsampling,
a few channels per level. Each builds in well under a second.

The tiny FLUX VAE is PRETRAINED by default (assets/tiny_flux_vae.safetensors, made by
`python -m experiments.pretrain_tiny_vae`, provenance in assets/tiny_flux_vae.json) so that
geometry predicted in latent space decodes back; everything else (and the Qwen VAE) is random.
"""

from __future__ import annotations

import json
import os

import torch

TINY_FLUX_CONFIG = dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=16,
                        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                        axes_dims_rope=(4, 6, 6))
MINI_FLUX_CONFIG = dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=32,
                        num_attention_heads=4, joint_attention_dim=64, pooled_projection_dim=64,
                        axes_dims_rope=(8, 12, 12), guidance_embeds=False)
"""The ONE architecture of every miniature-prior arm (hidden 128, 2 double + 4 single blocks, ~2.3M
parameters; no guidance embedding, plain text tokens): arms differ only in pretraining."""
TINY_QWEN_CONFIG = dict(patch_size=2, in_channels=64, out_channels=16, num_layers=3, attention_head_dim=16,
                        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 6, 6))
TINY_VAE_CONFIG = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                       up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 16, 16),
                       layers_per_block=1, act_fn="silu", latent_channels=16, norm_num_groups=4, sample_size=64,
                       scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                       use_post_quant_conv=False)
TINY_QWEN_VAE_CONFIG = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


def tiny_flux_transformer(guidance_embeds: bool, seed: int = 0):
    """FluxTransformer2DModel(**TINY_FLUX_CONFIG); deterministic given the seed."""
    from diffusers import FluxTransformer2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FluxTransformer2DModel(**TINY_FLUX_CONFIG, guidance_embeds=guidance_embeds)


TINY_VAE_ASSET = os.path.join(os.path.dirname(__file__), "assets", "tiny_flux_vae")
"""Path stem of the pretrained tiny FLUX VAE: .safetensors (float16 weights) and .json (provenance,
shift_factor / scaling_factor measured on the training scenes)."""


def tiny_flux_vae(seed: int = 0, pretrained: bool = True):
    """AutoencoderKL(**TINY_VAE_CONFIG): 16 latent channels, x8, float32.

    pretrained=True (default): the shipped weights (TINY_VAE_ASSET, independent of `seed`) with the
    shift_factor / scaling_factor recorded next to them, which make the normalised latents
    (E(x) - shift) * scale of procedural scenes zero-mean, unit-std. pretrained=False: random init
    from `seed` with the real FLUX constants of TINY_VAE_CONFIG.
    """
    from diffusers import AutoencoderKL

    if not pretrained:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            return AutoencoderKL(**TINY_VAE_CONFIG)
    from safetensors.torch import load_file

    weights, meta = TINY_VAE_ASSET + ".safetensors", TINY_VAE_ASSET + ".json"
    for path in (weights, meta):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: the pretrained tiny VAE is missing (reinstall the package or run "
                                    "python -m experiments.pretrain_tiny_vae --out lightning_modules/backbones/assets)")
    with open(meta) as f:
        info = json.load(f)
    with torch.random.fork_rng(devices=[]):
        vae = AutoencoderKL(**{**TINY_VAE_CONFIG, "shift_factor": info["shift_factor"],
                               "scaling_factor": info["scaling_factor"]})
    vae.load_state_dict({k: v.float() for k, v in load_file(weights).items()}, strict=True)
    return vae


MINI_PRIOR_DIR = os.path.join(os.path.dirname(__file__), "assets")
"""Default folder of the shipped miniature priors (mini_prior_{arm}.safetensors + .json provenance)."""


def mini_prior_file(arm: str, folder: str | None = None) -> str:
    """Path of arm's prior weights in `folder` (default MINI_PRIOR_DIR); FileNotFoundError if missing."""
    path = os.path.join(folder or MINI_PRIOR_DIR, f"mini_prior_{arm}.safetensors")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: miniature prior '{arm}' not found; create it with `make priors` "
                                "(python -m experiments.priors --out <folder>) and give that folder as backbone.weights")
    return path


def _mini_prior_tensors(arm: str, folder: str | None, prefix: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k[len(prefix):]: v.float() for k, v in load_file(mini_prior_file(arm, folder)).items()
            if k.startswith(prefix)}


def mini_prior_transformer(arm: str, seed: int = 0, folder: str | None = None):
    """FluxTransformer2DModel(**MINI_FLUX_CONFIG), float32: seeded random init for arm 'random', else
    the pretrained weights of `arm` (strict load) from `folder` (default: the shipped assets)."""
    from diffusers import FluxTransformer2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FluxTransformer2DModel(**MINI_FLUX_CONFIG)
    if arm != "random":
        path = mini_prior_file(arm, folder)
        try:
            model.load_state_dict(_mini_prior_tensors(arm, folder, "transformer."), strict=True)
        except RuntimeError as err:
            raise ValueError(f"{path}: does not match MINI_FLUX_CONFIG: {str(err).splitlines()[0]}") from None
    return model


def mini_prior_text(arm: str, folder: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The arm's "empty prompt": tokens (T, D) and pooled (P,) of its all-null condition, float32."""
    text = _mini_prior_tensors(arm, folder, "text.")
    if set(text) != {"tokens", "pooled"}:
        raise ValueError(f"{mini_prior_file(arm, folder)}: expected text.tokens and text.pooled, got {sorted(text)}")
    return text["tokens"], text["pooled"]


def tiny_qwen_transformer(seed: int = 0):
    """QwenImageTransformer2DModel(**TINY_QWEN_CONFIG)."""
    from diffusers import QwenImageTransformer2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return QwenImageTransformer2DModel(**TINY_QWEN_CONFIG)


def tiny_qwen_vae(seed: int = 0):
    """AutoencoderKLQwenImage(**TINY_QWEN_VAE_CONFIG) with the real per-channel latents_mean/std defaults."""
    from diffusers import AutoencoderKLQwenImage

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        return AutoencoderKLQwenImage(**TINY_QWEN_VAE_CONFIG)
