"""LoRA on every Linear of every transformer block (peft), adapter files, and the released kohya LoRA.

Targets (SPEC section 6): all nn.Linear inside the double- and single-stream blocks (FLUX) or the
blocks (Qwen-Image): attention q/k/v/out, added q/k/v/out, MLPs, modulation linears, single-block
proj_mlp/proj_out; never x/context embedders, time/guidance/text embedders, norm_out or the model's
proj_out. Adapter files are safetensors in the diffusers/peft layout (keys
`transformer.<module>.lora_A.weight` / `.lora_B.weight`, peft config in the header under diffusers'
`LORA_ADAPTER_METADATA_KEY`, as diffusers writes it), so `pipe.load_lora_weights(file)` can read them.
"""

from __future__ import annotations

import json
import logging

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

logger = logging.getLogger(__name__)

PREFIX = "transformer."
_KOHYA_HIDDEN = 3072  # width hard-coded in diffusers' kohya FLUX converter for single-block linear1


def block_linear_names(backbone) -> list[str]:
    """Names (within backbone.transformer) of every nn.Linear inside the transformer blocks."""
    names = {id(module): name for name, module in backbone.transformer.named_modules()}
    out = []
    for _, block in backbone._blocks():
        prefix = names[id(block)]
        for n, m in block.named_modules():
            if not isinstance(m, nn.Linear) or ".lora_" in f".{n}":  # peft's own lora_A/lora_B
                continue
            out.append(f"{prefix}.{n.removesuffix('.base_layer')}")  # base_layer: already adapted
    return out


def apply_lora(backbone, rank: int = 64, alpha: float = 32.0, adapter_name: str = "default") -> list[str]:
    """Inject LoRA (peft) into every block Linear; freezes the rest of the DiT; returns the targets.

    Adapter weights are float32 (whatever the base dtype) and the only trainable DiT parameters.
    """
    from peft import LoraConfig

    targets = backbone.lora_target_modules()
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=True)
    backbone.transformer.requires_grad_(False)
    backbone.transformer.add_adapter(config, adapter_name=adapter_name)
    for name, param in backbone.transformer.named_parameters():
        if f".{adapter_name}." in name and "lora_" in name:
            param.data = param.data.float()
            param.requires_grad_(True)
    return targets


def adapted_module_names(transformer: nn.Module) -> set[str]:
    """Names of the modules that carry a LoRA adapter (peft LoraLayer)."""
    from peft.tuners.lora import LoraLayer

    return {name for name, m in transformer.named_modules() if isinstance(m, LoraLayer)}


def save_adapter(backbone, path: str, adapter_name: str = "default") -> None:
    """Write the adapter as a diffusers-readable LoRA safetensors file."""
    from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
    from peft.utils import get_peft_model_state_dict

    transformer = backbone.transformer
    state = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    state = {PREFIX + k: v.detach().float().contiguous().cpu() for k, v in state.items()}
    config = transformer.peft_config[adapter_name].to_dict()
    config = {PREFIX + k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
    metadata = {"format": "pt", LORA_ADAPTER_METADATA_KEY: json.dumps(config, indent=2, sort_keys=True, default=str)}
    save_file(state, path, metadata=metadata)


def load_adapter(backbone, path: str, adapter_name: str = "default") -> None:
    """Load a file written by `save_adapter` into the backbone's existing adapter (same targets, rank).

    Raises ValueError naming the file if keys are missing/unexpected or rank/alpha differ.
    """
    from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    transformer = backbone.transformer
    with safe_open(path, framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get(LORA_ADAPTER_METADATA_KEY, "{}"))
    config = transformer.peft_config[adapter_name]
    for key in ("r", "lora_alpha"):
        if PREFIX + key in meta and meta[PREFIX + key] != getattr(config, key):
            raise ValueError(f"{path}: adapter {key}={meta[PREFIX + key]}, backbone has {getattr(config, key)}")
    state = {k.removeprefix(PREFIX): v for k, v in load_file(path).items()}
    expected = set(get_peft_model_state_dict(transformer, adapter_name=adapter_name))
    if set(state) != expected:
        raise ValueError(f"{path}: adapter keys differ from the model's: missing "
                         f"{sorted(expected - set(state))[:5]}, unexpected {sorted(set(state) - expected)[:5]}")
    set_peft_model_state_dict(transformer, state, adapter_name=adapter_name)


def convert_kohya_lora(state: dict[str, torch.Tensor], hidden: int) -> dict[str, torch.Tensor]:
    """kohya/sd-scripts FLUX LoRA -> diffusers keys (`transformer.<module>.lora_A/B.weight`), alpha folded in.

    Uses diffusers' `_convert_kohya_flux_lora_to_diffusers`; it splits single-block `linear1` with the
    width 3072 hard-coded, so for other widths (tiny models) those entries are split here the same way
    (down copied to q/k/v/mlp scaled by alpha/rank, up split by rows).
    """
    from diffusers.loaders.lora_conversion_utils import (
        _convert_kohya_flux_lora_to_diffusers,
    )

    state = dict(state)
    out = {}
    if hidden != _KOHYA_HIDDEN:
        for key in [k for k in state if k.endswith("_linear1.lora_down.weight")]:
            base = key.removesuffix(".lora_down.weight")
            i = int(base.split("_")[-2])
            down, up = state.pop(key), state.pop(base + ".lora_up.weight")
            alpha = float(state.pop(base + ".alpha", torch.tensor(down.shape[0])))
            parts = torch.split(up, [hidden, hidden, hidden, up.shape[0] - 3 * hidden], dim=0)
            for name, part in zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), parts):
                out[f"{PREFIX}single_transformer_blocks.{i}.{name}.lora_A.weight"] = down * (alpha / down.shape[0])
                out[f"{PREFIX}single_transformer_blocks.{i}.{name}.lora_B.weight"] = part.clone()
    out.update(_convert_kohya_flux_lora_to_diffusers(state))
    return out


def load_kohya_lora(backbone, path: str, adapter_name: str = "fe2e") -> int:
    """Load a kohya-format FLUX LoRA file (e.g. the released FE2E LoRA) as a new active adapter.

    Goes through diffusers' conversion and `load_lora_adapter`; returns the number of tensors loaded.
    """
    state = load_file(path)
    if not any(k.startswith("lora_unet_") for k in state):
        raise ValueError(f"{path}: no lora_unet_* keys; expected a kohya/sd-scripts FLUX LoRA")
    converted = convert_kohya_lora(state, backbone.transformer.inner_dim)
    backbone.transformer.load_lora_adapter(converted, prefix="transformer", adapter_name=adapter_name)
    backbone.transformer.set_adapter(adapter_name)
    logger.info("loaded %d LoRA tensors from %s as adapter %r", len(converted), path, adapter_name)
    return len(converted)
