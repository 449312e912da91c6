"""Shared fixtures of the backbone tests: tiny backbones are cheap, build them per test."""

import pytest
import torch

from lightning_modules.backbones import BackboneConfig, build_backbone


@pytest.fixture
def make_backbone():
    """make_backbone(name, **overrides) -> a tiny GeometryBackbone (rank-4 LoRA unless overridden)."""

    def make(name: str = "tiny-editor", **overrides):
        kwargs = dict(name=name, lora_rank=4, lora_alpha=2.0, dit_dtype="float32")
        kwargs.update(overrides)
        return build_backbone(BackboneConfig(**kwargs))

    return make


@pytest.fixture
def latents():
    """(target, image) latents (2, 16, 6, 8), seeded."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 16, 6, 8, generator=g), torch.randn(2, 16, 6, 8, generator=g)


def connector_state_dict(in_ch: int, hidden: int, depth: int, pooled: int, seed: int = 0) -> dict:
    """Random tensors under the key names of Step1X-Edit's `connector.*` (prefix removed), written from
    its architecture: HunyuanVideo's token refiner `S` + `global_proj_out` + `scale_factor`."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"global_proj_out": (pooled, in_ch), "S.input_embedder": (hidden, in_ch),
              "S.t_embedder.mlp.0": (hidden, 256), "S.t_embedder.mlp.2": (hidden, hidden),
              "S.c_embedder.linear_1": (hidden, in_ch), "S.c_embedder.linear_2": (hidden, hidden)}
    for i in range(depth):
        p = f"S.individual_token_refiner.blocks.{i}."
        shapes.update({p + "self_attn_qkv": (3 * hidden, hidden), p + "self_attn_proj": (hidden, hidden),
                       p + "mlp.fc1": (4 * hidden, hidden), p + "mlp.fc2": (hidden, 4 * hidden),
                       p + "adaLN_modulation.1": (2 * hidden, hidden)})
    sd = {}
    for name, (o, i) in shapes.items():
        sd[name + ".weight"] = torch.randn(o, i, generator=g) / i ** 0.5
        sd[name + ".bias"] = torch.randn(o, generator=g) * 0.1
    for i in range(depth):
        for n in ("norm1", "norm2"):
            sd[f"S.individual_token_refiner.blocks.{i}.{n}.weight"] = 1 + 0.1 * torch.randn(hidden, generator=g)
            sd[f"S.individual_token_refiner.blocks.{i}.{n}.bias"] = 0.1 * torch.randn(hidden, generator=g)
    sd["scale_factor"] = torch.tensor([-0.91])
    return sd


@pytest.fixture
def make_connector_sd():
    """make_connector_sd(in_ch, hidden, depth, pooled, seed) -> a random connector state dict (original names)."""
    return connector_state_dict
