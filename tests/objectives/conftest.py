"""A hand-computable fake backbone for the objective tests.

forward(target, image, sigma):
    target_out = a * target + b * image + c * sigma
    image_out  = d * image + e * target               (None when has_image_tokens=False)
    features['single.9'] = concat of target and image flattened to (B, 2*h*w, 16) tokens
or, with `velocity_to` set, target_out = (target - velocity_to) / sigma: the exact velocity field of
a point mass at `velocity_to` (Euler on it lands exactly on that point).
"""

from __future__ import annotations

import pytest
import torch

from lightning_modules.backbones.base import BackboneOutput, GeometryBackbone


class FakeBackbone(GeometryBackbone):
    def __init__(self, a=0.0, b=0.0, c=0.0, d=0.0, e=0.0, has_image_tokens=True, velocity_to=None):
        super().__init__()
        self.a, self.b, self.c, self.d, self.e = a, b, c, d, e
        self.has_image_tokens = has_image_tokens
        self.velocity_to = velocity_to
        self.calls = []

    def block_names(self):
        return ["double.0", "single.9"]

    def forward(self, target, image, sigma, capture=()):
        self.calls.append({"target": target.clone(), "image": image.clone(), "sigma": sigma.clone(),
                           "capture": tuple(capture)})
        s = sigma.view(-1, 1, 1, 1)
        if self.velocity_to is not None:
            t_out = (target - self.velocity_to) / s
        else:
            t_out = self.a * target + self.b * image + self.c * s
        i_out = self.d * image + self.e * target if self.has_image_tokens else None
        feats = {}
        if "single.9" in capture:
            feats["single.9"] = torch.cat([_tokens(target), _tokens(image)], dim=1)
        return BackboneOutput(target=t_out, image=i_out, features=feats, num_text_tokens=0)


def _tokens(z):
    """(B,16,h,w) -> (B, h*w, 16)."""
    return z.flatten(2).transpose(1, 2)


@pytest.fixture
def fake_backbone():
    """Factory: fake_backbone(a=..., b=..., ...) -> FakeBackbone."""
    return FakeBackbone
