"""Random draws of the objectives: per-sample sigma and Gaussian noise, reproducible via generators."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None
"""One generator for the whole batch, or one per sample (row i drawn from generator i alone, so a
sample's draw does not depend on how samples are batched or sharded over processes), or None."""

FLUX_BASE_SEQ_LEN, FLUX_MAX_SEQ_LEN = 256, 4096
FLUX_BASE_SHIFT, FLUX_MAX_SHIFT = 0.5, 1.15
"""FLUX's resolution-dependent schedule (SPEC section 3): mu is linear in the number of target
tokens L, from 0.5 at L = 256 to 1.15 at L = 4096."""


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Draw on the generator's device (torch requires it), then move to `device`."""
    return generator.device if generator is not None else device


def randn_like(x: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """Standard normal noise shaped like x, float32 on x's device.

    With a sequence of generators (one per sample along dim 0) row i is drawn from generator i.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        if len(generator) != x.shape[0]:
            raise ValueError(f"randn_like: {len(generator)} generators for a batch of {x.shape[0]}")
        return torch.stack([randn_like(x[i], g) for i, g in enumerate(generator)])
    dev = _draw_device(generator, x.device)
    return torch.randn(x.shape, generator=generator, device=dev, dtype=torch.float32).to(x.device)


def shift_sigma(s: torch.Tensor, shift: float) -> torch.Tensor:
    """The flow-matching time shift shift*s / (1 + (shift - 1)*s); identity for shift = 1, fixes 0 and 1."""
    return shift * s / (1.0 + (shift - 1.0) * s)


def flux_dynamic_shift(num_target_tokens: int) -> float:
    """e^mu of FLUX's resolution-dependent schedule for L target tokens (SPEC section 3):
    mu = 0.5 + (1.15 - 0.5) (L - 256) / (4096 - 256). E.g. 1024x768 (L = 3072) -> 2.656."""
    slope = (FLUX_MAX_SHIFT - FLUX_BASE_SHIFT) / (FLUX_MAX_SEQ_LEN - FLUX_BASE_SEQ_LEN)
    return math.exp(FLUX_BASE_SHIFT + slope * (num_target_tokens - FLUX_BASE_SEQ_LEN))


def sample_sigma(batch: int, scheme: str, device: torch.device, generator: Generators = None,
                 shift: float = 3.1582, logit_mean: float = 0.0, logit_std: float = 1.0) -> torch.Tensor:
    """(batch,) float32 sigmas in [0, 1] (1 = pure noise).

    'uniform': U(0,1); 'logit_normal': sigmoid(N(logit_mean, logit_std)); 'shifted' (Step1X-Edit's
    training recipe): shift_sigma(sigmoid(N(logit_mean, logit_std)), shift).
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        return torch.cat([sample_sigma(1, scheme, device, g, shift, logit_mean, logit_std) for g in generator])
    dev = _draw_device(generator, device)
    if scheme in ("logit_normal", "shifted"):
        n = torch.randn(batch, generator=generator, device=dev, dtype=torch.float32)
        u = torch.sigmoid(logit_mean + logit_std * n).to(device)
        return u if scheme == "logit_normal" else shift_sigma(u, shift)
    if scheme == "uniform":
        return torch.rand(batch, generator=generator, device=dev, dtype=torch.float32).to(device)
    raise ValueError(f"objective.sigma_sampling: unknown scheme {scheme!r}")


def inference_sigmas(num_steps: int, shift: float = 1.0) -> torch.Tensor:
    """(num_steps + 1,) float32 Euler sigmas from 1 down to 0: shift_sigma(linspace(1, 0, N+1), shift).

    FE2E's released sampler (and FLUX's) uses shift = `flux_dynamic_shift(L)`; shift 1 is linear.
    """
    return shift_sigma(torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float32), shift)
