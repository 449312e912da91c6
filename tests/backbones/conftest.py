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
