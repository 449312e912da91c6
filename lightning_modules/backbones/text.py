"""The empty-prompt text conditioning of a DiT, as a module of the flow-matching time sigma.

FE2E never changes the prompt, so the text encoders are never run during training or evaluation:
- `FixedText`: the same cached tokens at every sigma (FLUX.1's T5 + CLIP pooled, Qwen-Image's Qwen states).
- `ConnectorText`: Step1X-Edit, whose cached Qwen2.5-VL states pass through the (frozen) connector,
  which depends on the timestep; it runs at each forward, a ~0.2 % addition to the DiT's FLOPs.
Both return float32 tensors expanded to the batch and hold no trainable parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from .step1x_connector import Step1XConnector


class FixedText(nn.Module):
    """tokens (T, D) and pooled (P,) or None, the same for every sample and sigma."""

    def __init__(self, tokens: torch.Tensor, pooled: torch.Tensor | None):
        super().__init__()
        self.register_buffer("tokens", tokens.float(), persistent=False)
        self.register_buffer("pooled", None if pooled is None else pooled.float(), persistent=False)

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[0]

    def forward(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """sigma (B,) -> tokens (B, T, D) float32, pooled (B, P) float32 or None."""
        b = sigma.shape[0]
        pooled = None if self.pooled is None else self.pooled.unsqueeze(0).expand(b, -1)
        return self.tokens.unsqueeze(0).expand(b, -1, -1), pooled


class ConnectorText(nn.Module):
    """Step1X-Edit: connector(states, mask, sigma) -> tokens (B, T, D), pooled (B, P).

    states (T, C) and mask (T,) bool are the cached Qwen2.5-VL states of the empty prompt (prompt.py,
    `load_qwen_states`); the connector multiplies sigma by 1000 itself, in training and inference
    alike (SPEC section 1). The DiT receives all T tokens, padding included, unmasked, as Step1X-Edit does.
    """

    def __init__(self, connector: Step1XConnector, states: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        if states.ndim != 2 or mask.shape != states.shape[:1] or states.shape[1] != connector.config.in_channels:
            raise ValueError(f"expected states (T, {connector.config.in_channels}) and mask (T,), got "
                             f"{tuple(states.shape)} and {tuple(mask.shape)}")
        self.connector = connector.requires_grad_(False).eval()
        self.register_buffer("states", states.float(), persistent=False)
        self.register_buffer("mask", mask.bool(), persistent=False)

    @property
    def num_tokens(self) -> int:
        return self.states.shape[0]

    def forward(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = sigma.shape[0]
        with torch.no_grad():
            states = self.states.to(self.connector.scale_factor.dtype).unsqueeze(0).expand(b, -1, -1)
            tokens, pooled = self.connector(states, self.mask.unsqueeze(0).expand(b, -1), sigma.float())
        return tokens.float(), pooled.float()

    def train(self, mode: bool = True):
        """The connector is frozen: it stays in eval mode."""
        super().train(mode)
        self.connector.eval()
        return self
