"""Step1X-Edit v1.0: its released DiT file -> diffusers FluxTransformer2DModel(guidance_embeds=False).

The released `step1x-edit-i1258.safetensors` holds the DiT in the original FLUX/BFL key layout
(`double_blocks.N.img_attn.qkv.weight`, `single_blocks.N.linear1.weight`, `final_layer...`, qkv with
bias) plus the text `connector.*` (Qwen2.5-VL states -> 4096-d tokens + 768-d pooled). We keep the
connector keys apart and convert the rest with diffusers' own
`convert_flux_transformer_checkpoint_to_diffusers`. That converter hard-codes the hidden width 3072
when splitting the fused single-block `linear1` (q, k, v, mlp); for other widths (our tiny test
checkpoints) we hand it a zero-stride placeholder of the shape it expects and split `linear1` ourselves
with the model's width; at width 3072 (the real model) it runs untouched.

Empty-prompt conditioning: the connector is ported (step1x_connector.py) and runs inside the adapter
(text.ConnectorText) on cached Qwen2.5-VL states of the empty prompt (prompt.py `load_qwen_states`:
FE2E's released `latent/no_info.npz`, or `python -m experiments cache-prompt --family step1x`). Why not
cache the connector's output instead: it depends on the timestep, so one cached output is right only at
one sigma (FE2E's fixed sigma = 1) and wrong for the DirectAdapt rows of the ablation, which sample sigma.
The connector weights come from the single DiT file, or, next to an already-converted diffusers
`transformer/` folder, from `connector.safetensors` (written by `save_connector`).
"""

from __future__ import annotations

import glob
import logging
import os

import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

CONNECTOR_PREFIX = "connector."
_DIFFUSERS_HIDDEN = 3072  # width hard-coded in diffusers' converter


def split_connector(state_dict: dict[str, torch.Tensor]
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(DiT keys, connector keys) of a Step1X-Edit checkpoint; `model.diffusion_model.` prefixes dropped."""
    dit, connector = {}, {}
    for key, value in state_dict.items():
        key = key.removeprefix("model.diffusion_model.")
        (connector if key.startswith(CONNECTOR_PREFIX) else dit)[key] = value
    return dit, connector


def convert_step1x_dit(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original-layout DiT state dict (no connector keys) -> diffusers FluxTransformer2DModel keys."""
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
    )

    sd = dict(state_dict)
    hidden = sd["img_in.weight"].shape[0]
    fused = {}
    if hidden != _DIFFUSERS_HIDDEN:
        for key in [k for k in sd if k.startswith("single_blocks.") and ".linear1." in k]:
            fused[key] = sd[key]
            shape = (7 * _DIFFUSERS_HIDDEN,) + tuple(sd[key].shape[1:])
            sd[key] = torch.zeros((1,) * len(shape), dtype=sd[key].dtype).expand(shape)
    out = convert_flux_transformer_checkpoint_to_diffusers(sd)
    for key, value in fused.items():
        i = int(key.split(".")[1])
        kind = key.rsplit(".", 1)[1]
        q, k, v, mlp = torch.split(value, [hidden, hidden, hidden, value.shape[0] - 3 * hidden], dim=0)
        prefix = f"single_transformer_blocks.{i}."
        for name, part in (("attn.to_q", q), ("attn.to_k", k), ("attn.to_v", v), ("proj_mlp", mlp)):
            out[f"{prefix}{name}.{kind}"] = part.clone()
    return out


def step1x_config(state_dict: dict[str, torch.Tensor],
                  axes_dims_rope: tuple[int, int, int] = (16, 56, 56)) -> dict:
    """FluxTransformer2DModel arguments read off an original-layout DiT state dict (no guidance).

    The head width is read from the qk-norm scale; the rope axes (not in the file) must sum to it.
    """
    hidden, in_ch = state_dict["img_in.weight"].shape
    head_dim = state_dict["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0]
    if sum(axes_dims_rope) != head_dim:
        raise ValueError(f"axes_dims_rope={tuple(axes_dims_rope)} must sum to the head width {head_dim}")
    doubles = {int(k.split(".")[1]) for k in state_dict if k.startswith("double_blocks.")}
    singles = {int(k.split(".")[1]) for k in state_dict if k.startswith("single_blocks.")}
    return dict(patch_size=1, in_channels=in_ch, num_layers=len(doubles), num_single_layers=len(singles),
                attention_head_dim=head_dim, num_attention_heads=hidden // head_dim,
                joint_attention_dim=state_dict["txt_in.weight"].shape[1],
                pooled_projection_dim=state_dict["vector_in.in_layer.weight"].shape[1],
                guidance_embeds=False, axes_dims_rope=tuple(axes_dims_rope))


def transformer_from_state_dict(state_dict: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32,
                                axes_dims_rope=(16, 56, 56)):
    """Build FluxTransformer2DModel from a Step1X-Edit DiT state dict; raises on any key mismatch."""
    from diffusers import FluxTransformer2DModel

    dit, connector = split_connector(state_dict)
    if any("guidance_in" in k for k in dit):
        raise ValueError("Step1X-Edit checkpoint unexpectedly has guidance_in.* keys")
    config = step1x_config(dit, axes_dims_rope)
    converted = convert_step1x_dit(dit)
    with torch.device("meta"):
        model = FluxTransformer2DModel(**config)
    result = model.load_state_dict(converted, strict=True, assign=True)
    logger.info("Step1X-Edit DiT converted: %d tensors, %d connector tensors kept apart (%s)",
                len(converted), len(connector), result)
    return model.to(dtype)


def find_dit_file(folder: str) -> str:
    """The released single DiT file in `folder` (step1x-edit*.safetensors); raises naming the folder."""
    files = sorted(glob.glob(os.path.join(folder, "step1x-edit*.safetensors")))
    if not files:
        raise FileNotFoundError(f"backbone.weights: no step1x-edit*.safetensors in {folder}; expected the "
                                "released Step1X-Edit DiT file (e.g. step1x-edit-i1258.safetensors)")
    return files[0]


CONNECTOR_FILE = "connector.safetensors"


def load_step1x(folder: str, dtype: torch.dtype, axes_dims_rope=(16, 56, 56)):
    """(FluxTransformer2DModel, Step1XConnector) of Step1X-Edit, both in `dtype`, from a local folder.

    Either `<folder>/transformer` (diffusers, already converted) plus `<folder>/connector.safetensors`,
    or the released single file `<folder>/step1x-edit*.safetensors` holding both.
    """
    from .flux import load_flux_transformer
    from .step1x_connector import connector_from_state_dict

    if os.path.isfile(os.path.join(folder, "transformer", "config.json")):
        transformer = load_flux_transformer(folder, dtype, guidance_embeds=False)
        path = os.path.join(folder, CONNECTOR_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"backbone.weights: {path} not found; next to a converted transformer/ folder "
                                    "Step1X-Edit needs its connector weights (lightning_modules/backbones/"
                                    "step1x.py save_connector writes them from the released DiT file)")
        return transformer, connector_from_state_dict(load_file(path), path).to(dtype)
    path = find_dit_file(folder)
    state_dict = load_file(path)
    connector = connector_from_state_dict(connector_weights(state_dict, path), path).to(dtype)
    return transformer_from_state_dict(state_dict, dtype, axes_dims_rope), connector


def connector_weights(state_dict: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The `connector.*` tensors of a released DiT state dict, prefix removed; raises naming `source` if none."""
    _, connector = split_connector(state_dict)
    if not connector:
        raise ValueError(f"{source}: no connector.* keys (is this the released Step1X-Edit DiT file?)")
    return {k.removeprefix(CONNECTOR_PREFIX): v for k, v in connector.items()}


def save_connector(dit_file: str, out_path: str) -> int:
    """Write the `connector.*` tensors of a released DiT file, prefix removed, to `out_path`; returns how many."""
    connector = connector_weights(load_file(dit_file), dit_file)
    save_file(connector, out_path)
    return len(connector)
