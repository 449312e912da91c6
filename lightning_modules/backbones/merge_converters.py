"""MERGE's converters around a FROZEN diffusers FluxTransformer2DModel, and the forward that runs both.

MERGE (SPEC section 10, released code H-EmbodVis/MERGE) keeps a text-to-image FLUX transformer
untouched and adds trainable "converters": diffusers `FluxSingleTransformerBlock`s, K per section.
The N blocks of a section are cut into groups of ceil(N/K) consecutive blocks (`group_blocks`); the
group's one converter runs before EVERY block of its group:
- double-stream section: on the image-stream tokens only (no text), randomly initialised;
- single-stream section: on [text ; image], initialised as a copy of the base single block at the
  group's first index.
The converters own an input projection taking [noisy depth ; image] latent channels (2x the base's
in_channels; depth half copied from the base x_embedder, image half ZERO) and copies of the base's
norm_out / proj_out. The base's embedders (time/guidance/pooled text, context) and RoPE are reused.

`flux_forward` reproduces diffusers' `FluxTransformer2DModel.forward` (diffusers 0.42) block by
block, with or without converters, without modifying diffusers: with `converters=None` it is the
plain generator (tests compare it with calling the diffusers model directly).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn


def group_blocks(num_blocks: int, num_converters: int) -> list[list[int]]:
    """Block indices of each converter's group: consecutive runs of ceil(N/K) blocks, empty groups dropped.

    E.g. (19, 5) -> [0-3], [4-7], [8-11], [12-15], [16-18]; (38, 5) -> [0-7], ..., [32-37]; (2, 5) -> [0], [1].
    The released code also builds converters for empty groups when K > N (they never run); we build
    none for them, so every converter trains (and DDP needs no unused-parameter search).
    """
    if num_blocks < 0 or num_converters < 1:
        raise ValueError(f"group_blocks: expected num_blocks >= 0 and num_converters >= 1, got "
                         f"{num_blocks} and {num_converters}")
    if num_blocks == 0:
        return []
    size = math.ceil(num_blocks / num_converters)
    return [list(range(start, min(start + size, num_blocks))) for start in range(0, num_blocks, size)]


class MergeConverters(nn.Module):
    """The trainable part of MERGE, built from (and never registering) a base FluxTransformer2DModel.

    Attributes:
        double_blocks, single_blocks: ModuleLists of FluxSingleTransformerBlock, one per non-empty group.
        double_groups, single_groups: the base block indices each converter precedes.
        x_embedder: Linear(2 * in_channels, inner_dim), input [noisy target ; image] token channels.
        norm_out, proj_out: copies of the base's output norm and projection.
    Parameters are float32 on the base's device; `seed` seeds the randomly initialised (double) converters.
    """

    def __init__(self, base: nn.Module, converters_per_section: int = 5, seed: int = 0):
        super().__init__()
        from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock

        cfg = base.config
        inner = cfg.num_attention_heads * cfg.attention_head_dim
        self.double_groups = group_blocks(len(base.transformer_blocks), converters_per_section)
        self.single_groups = group_blocks(len(base.single_transformer_blocks), converters_per_section)
        device = base.x_embedder.weight.device

        def new_block() -> nn.Module:
            return FluxSingleTransformerBlock(dim=inner, num_attention_heads=cfg.num_attention_heads,
                                              attention_head_dim=cfg.attention_head_dim).to(device)

        with torch.random.fork_rng(devices=[]):  # seeded, and the caller's RNG stream is untouched
            torch.manual_seed(seed)
            self.double_blocks = nn.ModuleList(new_block() for _ in self.double_groups)
        self.single_blocks = nn.ModuleList(copy.deepcopy(base.single_transformer_blocks[g[0]]) for g in self.single_groups)
        old = base.x_embedder
        self.x_embedder = nn.Linear(2 * old.in_features, old.out_features, bias=old.bias is not None, device=device)
        with torch.no_grad():
            self.x_embedder.weight.zero_()
            self.x_embedder.weight[:, :old.in_features].copy_(old.weight)
            if old.bias is not None:
                self.x_embedder.bias.copy_(old.bias)
        self.norm_out = copy.deepcopy(base.norm_out)
        self.proj_out = copy.deepcopy(base.proj_out)
        self.float().requires_grad_(True)

    def converter_before(self, section: str, index: int) -> nn.Module:
        """The converter that runs before base block `index` of `section` ("double" or "single")."""
        groups, blocks = ((self.double_groups, self.double_blocks) if section == "double"
                          else (self.single_groups, self.single_blocks))
        for group, block in zip(groups, blocks):
            if index in group:
                return block
        raise IndexError(f"no {section}-stream converter group holds block {index}")


def _run(block: nn.Module, checkpointing: bool, checkpoint_fn: Callable | None, *args):
    """block(*args), recomputed in the backward pass when gradient checkpointing is on."""
    if checkpointing and torch.is_grad_enabled():
        return checkpoint_fn(block, *args) if checkpoint_fn is not None else torch.utils.checkpoint.checkpoint(
            block, *args, use_reentrant=False)
    return block(*args)


def flux_forward(base: nn.Module, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 pooled_projections: torch.Tensor | None, timestep: torch.Tensor, img_ids: torch.Tensor,
                 txt_ids: torch.Tensor, guidance: torch.Tensor | None = None,
                 converters: MergeConverters | None = None) -> torch.Tensor:
    """The FLUX transformer pass, as diffusers' forward, optionally with MERGE's converters.

    hidden_states: (B, N, C) packed tokens; C = base in_channels (converters None) or 2x that
    ([noisy target ; image] channels, converters given). encoder_hidden_states (B, T, joint dim),
    pooled_projections (B, P), timestep (B,) sigma in [0, 1] (x1000 inside, as diffusers), img_ids
    (N, 3), txt_ids (T, 3), guidance (B,) or None. Returns (B, N, out_channels) token predictions.
    Gradient checkpointing follows `base.gradient_checkpointing` for base blocks and converters.
    """
    conv = converters
    x_embedder = base.x_embedder if conv is None else conv.x_embedder
    hidden_states = x_embedder(hidden_states)
    timestep = timestep.to(hidden_states.dtype) * 1000
    if guidance is not None:
        guidance = guidance.to(hidden_states.dtype) * 1000
    temb = (base.time_text_embed(timestep, pooled_projections) if guidance is None
            else base.time_text_embed(timestep, guidance, pooled_projections))
    encoder_hidden_states = base.context_embedder(encoder_hidden_states)
    rope = base.pos_embed(torch.cat((txt_ids, img_ids), dim=0))
    ckpt = bool(getattr(base, "gradient_checkpointing", False))
    ckpt_fn = getattr(base, "_gradient_checkpointing_func", None)
    image_rope = base.pos_embed(img_ids) if conv is not None else None
    for section, blocks in (("double", base.transformer_blocks), ("single", base.single_transformer_blocks)):
        for index, block in enumerate(blocks):
            if conv is not None:  # double-stream converters see the image-stream tokens only
                double = section == "double"
                text = encoder_hidden_states[:, :0] if double else encoder_hidden_states
                text_out, hidden_states = _run(conv.converter_before(section, index), ckpt, ckpt_fn, hidden_states,
                                               text, temb, image_rope if double else rope)
                encoder_hidden_states = encoder_hidden_states if double else text_out
            encoder_hidden_states, hidden_states = _run(block, ckpt, ckpt_fn, hidden_states, encoder_hidden_states,
                                                        temb, rope)
    norm_out, proj_out = (base.norm_out, base.proj_out) if conv is None else (conv.norm_out, conv.proj_out)
    return proj_out(norm_out(hidden_states, temb))


def trainable_count(converters: MergeConverters) -> int:
    """Number of trainable parameters of the converters (SPEC: 1,435,391,552 on full-size FLUX, K = 5)."""
    return sum(p.numel() for p in converters.parameters() if p.requires_grad)
