"""Random draws of the objectives: per-sample sigma and Gaussian noise, reproducible via generators."""

from __future__ import annotations

import torch


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Draw on the generator's device (torch requires it), then move to `device`."""
    return generator.device if generator is not None else device


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like x, float32 on x's device."""
    dev = _draw_device(generator, x.device)
    return torch.randn(x.shape, generator=generator, device=dev, dtype=torch.float32).to(x.device)


def shift_sigma(s: torch.Tensor, shift: float) -> torch.Tensor:
    """The flow-matching time shift shift*s / (1 + (shift - 1)*s); identity for shift = 1, fixes 0 and 1."""
    return shift * s / (1.0 + (shift - 1.0) * s)


def sample_sigma(batch: int, scheme: str, device: torch.device, generator: torch.Generator | None = None,
                 shift: float = 3.1582, logit_mean: float = 0.0, logit_std: float = 1.0) -> torch.Tensor:
    """(batch,) float32 sigmas in [0, 1] (1 = pure noise).

    'uniform': U(0,1); 'logit_normal': sigmoid(N(logit_mean, logit_std)); 'shifted':
    shift_sigma(U(0,1), shift).
    """
    dev = _draw_device(generator, device)
    if scheme == "logit_normal":
        u = torch.randn(batch, generator=generator, device=dev, dtype=torch.float32)
        return torch.sigmoid(logit_mean + logit_std * u).to(device)
    u = torch.rand(batch, generator=generator, device=dev, dtype=torch.float32).to(device)
    if scheme == "uniform":
        return u
    if scheme == "shifted":
        return shift_sigma(u, shift)
    raise ValueError(f"objective.sigma_sampling: unknown scheme {scheme!r}")


def inference_sigmas(num_steps: int, shift: float = 1.0) -> torch.Tensor:
    """(num_steps + 1,) float32 Euler sigmas from 1 down to 0: shift_sigma(linspace(1, 0, N+1), shift)."""
    return shift_sigma(torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float32), shift)
