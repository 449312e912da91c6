"""Backbones: `build_backbone(BackboneConfig) -> GeometryBackbone` over a small registry of presets."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from .base import BackboneOutput, GeometryBackbone
from .config import NAMES, TINY_NAMES, BackboneConfig

logger = logging.getLogger(__name__)

__all__ = ["PRESETS", "BackboneConfig", "BackboneOutput", "GeometryBackbone", "backbone_class", "build_backbone"]


@dataclass(frozen=True, kw_only=True)
class Preset:
    """One backbone preset (every field by keyword).

    family: "flux" | "qwen" (which adapter class, see `backbone_class`); is_editor: an image-editing
    model (its pretraining maps an image to an edited image) rather than a text-to-image generator;
    image_frame: first id coordinate of image tokens (FLUX); guidance: the DiT has a guidance
    embedding; tiny: built by tiny.py; connector: the text tokens come from cached Qwen2.5-VL states
    through Step1X-Edit's connector (step1x_connector.py); prior: a miniature-prior arm
    (tiny.MINI_FLUX_CONFIG; weights from tiny.mini_prior_file unless 'random')."""

    family: str
    is_editor: bool
    image_frame: float = 0.0
    guidance: bool = False
    tiny: bool = False
    connector: bool = False
    prior: str | None = None


PRESETS = {
    "tiny-editor": Preset(family="flux", is_editor=True, tiny=True, connector=True),
    "tiny-kontext": Preset(family="flux", is_editor=True, image_frame=1.0, guidance=True, tiny=True),
    "tiny-generator": Preset(family="flux", is_editor=False, guidance=True, tiny=True),
    "tiny-qwen-editor": Preset(family="qwen", is_editor=True, tiny=True),
    "tiny-qwen-generator": Preset(family="qwen", is_editor=False, tiny=True),
    "mini-random": Preset(family="flux", is_editor=False, tiny=True, prior="random"),
    "mini-generator": Preset(family="flux", is_editor=False, tiny=True, prior="generator"),
    "mini-editor": Preset(family="flux", is_editor=True, tiny=True, prior="editor"),
    "mini-editor-norelight": Preset(family="flux", is_editor=True, tiny=True, prior="editor-norelight"),
    "flux-dev": Preset(family="flux", is_editor=False, guidance=True),
    "flux-kontext": Preset(family="flux", is_editor=True, image_frame=1.0, guidance=True),
    "step1x-edit": Preset(family="flux", is_editor=True, connector=True),
    "qwen-image": Preset(family="qwen", is_editor=False),
    "qwen-image-edit": Preset(family="qwen", is_editor=True),
}
assert set(PRESETS) == set(NAMES) and all(p.tiny == (n in TINY_NAMES) for n, p in PRESETS.items())


def backbone_class(name: str) -> type[GeometryBackbone]:
    """The adapter class of preset `name`, known without building or loading the model: what FSDP's
    wrap policy reads (`block_classes()`) before `configure_model` builds the backbone."""
    if PRESETS[name].family == "flux":
        from .flux import FluxBackbone

        return FluxBackbone
    from .qwen_image import QwenImageBackbone

    return QwenImageBackbone


def build_backbone(cfg: BackboneConfig) -> GeometryBackbone:
    """Build, load (local files only), set dtypes, trainability, LoRA and checkpointing from `cfg`."""
    cfg.validate()
    preset = PRESETS[cfg.name]
    if cfg.conditioning == "channel" and preset.is_editor:
        raise ValueError(f"backbone.conditioning='channel' is for generators; {cfg.name} is an editor")
    if cfg.weights is not None and not os.path.isdir(cfg.weights):
        raise FileNotFoundError(f"backbone.weights: {cfg.weights} is not a folder")
    dit_dtype = getattr(torch, cfg.dit_dtype)
    load_dtype = torch.float32 if cfg.finetune == "full" else dit_dtype
    transformer, vae, connector = _load_parts(cfg, preset, load_dtype)
    text = _text(cfg, preset, transformer, connector)
    flux_only = dict(image_frame=preset.image_frame, guidance=cfg.guidance if preset.guidance else None)
    backbone = backbone_class(cfg.name)(transformer, vae, text, is_editor=preset.is_editor,
                                        conditioning=cfg.conditioning, dit_dtype=dit_dtype,
                                        **(flux_only if preset.family == "flux" else {}))
    backbone.vae.float().requires_grad_(False).eval()
    torch.nn.Module.to(transformer, load_dtype)  # bypasses ModelMixin.to's float32-modules warning
    if cfg.finetune == "lora":
        from .lora import apply_lora

        apply_lora(backbone, cfg.lora_rank, cfg.lora_alpha)
    elif cfg.finetune == "full":
        transformer.requires_grad_(True)
    else:  # frozen: nothing of the DiT trains
        transformer.requires_grad_(False)
    if cfg.conditioning == "channel":  # the widened input projection is new: train it fully, in float32
        proj = transformer.x_embedder if preset.family == "flux" else transformer.img_in
        proj.float().requires_grad_(True)
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    n_train = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    logger.info("backbone %s: %d trainable parameters (%s), DiT %s", cfg.name, n_train, cfg.finetune, cfg.dit_dtype)
    return backbone


def _load_parts(cfg: BackboneConfig, preset: Preset, dtype: torch.dtype):
    """(transformer, vae, Step1X connector or None) of the preset, loaded or randomly initialised."""
    from . import tiny

    if preset.prior is not None:
        return tiny.mini_prior_transformer(preset.prior, cfg.init_seed, cfg.weights), tiny.tiny_flux_vae(cfg.init_seed), None
    if preset.tiny:
        if cfg.weights is not None:
            raise ValueError(f"backbone.weights must be None for tiny preset {cfg.name}")
        if preset.family == "qwen":
            return tiny.tiny_qwen_transformer(cfg.init_seed), tiny.tiny_qwen_vae(cfg.init_seed), None
        transformer = tiny.tiny_flux_transformer(preset.guidance, cfg.init_seed)
        connector = _random_connector(transformer, TINY_QWEN_STATE_DIM, 16, cfg.init_seed) if preset.connector else None
        return transformer, tiny.tiny_flux_vae(cfg.init_seed), connector
    if cfg.weights is None:  # random_init of a full-size architecture (benchmarks)
        return _random_full(preset, cfg.init_seed)
    if preset.family == "qwen":
        from .qwen_image import load_qwen_image

        return (*load_qwen_image(cfg.weights, dtype), None)
    from .flux import load_flux_transformer, load_flux_vae

    if preset.connector:
        from .step1x import load_step1x

        transformer, connector = load_step1x(cfg.weights, dtype)
        return transformer, load_flux_vae(cfg.weights), connector
    return load_flux_transformer(cfg.weights, dtype, preset.guidance), load_flux_vae(cfg.weights), None


def _random_full(preset: Preset, seed: int):
    from diffusers import (
        AutoencoderKL,
        AutoencoderKLQwenImage,
        FluxTransformer2DModel,
        QwenImageTransformer2DModel,
    )

    from .flux import FLUX_DIT_CONFIG, FLUX_VAE_CONFIG

    torch.manual_seed(seed)
    if preset.family == "qwen":
        return QwenImageTransformer2DModel(), AutoencoderKLQwenImage(), None
    transformer = FluxTransformer2DModel(**FLUX_DIT_CONFIG, guidance_embeds=preset.guidance)
    connector = _random_connector(transformer, STEP1X_QWEN_STATE_DIM, 128, seed) if preset.connector else None
    return transformer, AutoencoderKL(**FLUX_VAE_CONFIG), connector


TINY_QWEN_STATE_DIM = 24
"""Width of the stand-in "Qwen states" of the tiny Step1X-style editor (3584 for the real model)."""
STEP1X_QWEN_STATE_DIM = 3584


def _random_connector(transformer, state_dim: int, head_dim: int, seed: int):
    """A seeded random Step1X connector matching the transformer's text widths (tiny presets, random_init)."""
    from .step1x_connector import ConnectorConfig, Step1XConnector

    c = transformer.config
    cfg = ConnectorConfig(in_channels=state_dim, hidden=c.joint_attention_dim,
                          heads=max(1, c.joint_attention_dim // head_dim), pooled=c.pooled_projection_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 2)
        return Step1XConnector(cfg).requires_grad_(False).eval()


def _text(cfg: BackboneConfig, preset: Preset, transformer, connector):
    """The empty-prompt conditioning module (text.py) from the cached file or, without weights, a seeded buffer."""
    from .prompt import load_prompt_embeds, load_qwen_states, random_prompt_embeds, random_qwen_states
    from .text import ConnectorText, FixedText

    if cfg.prompt_embeds is None and cfg.weights is not None and preset.prior is None:
        raise ValueError(f"backbone.prompt_embeds is required with real weights ({cfg.weights}); see "
                         "lightning_modules/backbones/prompt.py for how to make the file")
    if connector is not None:
        dim = connector.config.in_channels
        states, mask = (load_qwen_states(cfg.prompt_embeds, dim) if cfg.prompt_embeds is not None
                        else random_qwen_states(cfg.num_text_tokens, dim, cfg.init_seed))
        return ConnectorText(connector, states, mask)
    c = transformer.config
    if preset.prior not in (None, "random") and cfg.prompt_embeds is None:
        from .tiny import mini_prior_text

        return FixedText(*mini_prior_text(preset.prior, cfg.weights))
    pooled_dim = c.pooled_projection_dim if preset.family == "flux" else None
    if cfg.prompt_embeds is not None:
        return FixedText(*load_prompt_embeds(cfg.prompt_embeds, c.joint_attention_dim, pooled_dim))
    return FixedText(*random_prompt_embeds(cfg.num_text_tokens, c.joint_attention_dim, pooled_dim, cfg.init_seed))
