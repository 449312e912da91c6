"""Dispersive loss (SPEC section 3, DL): an InfoNCE-style repulsion between the samples of a batch."""

from __future__ import annotations

import math

import torch


def dispersive_loss(features: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """L_disp = log( mean_{i,j} exp(-D_ij / tau) ), D_ij = ||eta_i - eta_j||^2 / dim. Scalar float32.

    features: (B, ...) one block's output; each sample is flattened to eta_i of length dim. The
    mean runs over ALL B*B pairs including i = j (D_ii = 0), so L_disp <= 0, equals 0 for B = 1 and
    for identical samples, and decreases as samples spread apart.

    Computed in float32 as logsumexp(-D/tau) - 2 log B. D comes from the Gram matrix of the
    batch-centred features (distances are translation invariant; centring limits cancellation),
    which keeps memory at O(B*dim) for the large DiT feature maps; D is clamped at 0 and its
    diagonal set exactly to 0.
    """
    b = features.shape[0]
    eta = features.reshape(b, -1).float()
    if b == 1:
        return eta.sum() * 0.0  # zero, still connected to the graph
    dim = eta.shape[1]
    eta = eta - eta.mean(dim=0, keepdim=True)
    sq = (eta * eta).sum(dim=1)
    gram = eta @ eta.T
    dist = (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min(0.0) / dim
    dist = dist * (1.0 - torch.eye(b, device=dist.device, dtype=dist.dtype))
    return torch.logsumexp((-dist / tau).reshape(-1), dim=0) - 2.0 * math.log(b)
