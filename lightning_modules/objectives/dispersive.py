"""Dispersive loss (SPEC section 3, DL): an InfoNCE-style repulsion between the samples of a batch."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each rank the SUM over ranks of the gradient of its own slice.

    Every rank computes the same loss of the gathered batch; DDP then AVERAGES parameter gradients
    over the W ranks, so the summed slice gradients (W identical loss copies) make the update equal
    to the single-process gradient of that loss. Uses all_reduce only (works on gloo and NCCL).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, world: int, rank: int) -> torch.Tensor:
        ctx.rank, ctx.batch = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch], None, None


def gather_across_ranks(x: torch.Tensor) -> torch.Tensor:
    """(W*B, ...) the samples of every rank in rank order, differentiable (see `_GatherWithGrad`);
    x itself outside torch.distributed or with one process. All ranks must pass the same shape
    (MixedBatchSampler gives every rank of a step the same dataset and batch size)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    world, rank = dist.get_world_size(), dist.get_rank()
    shape = torch.tensor(x.shape, device=x.device)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(s, shape) for s in shapes):
        raise RuntimeError(f"dispersive loss across ranks: block features differ in shape between ranks "
                           f"{[tuple(s.tolist()) for s in shapes]}; "
                           "every rank of a step must train on the same dataset, batch size and resolution")
    return _GatherWithGrad.apply(x, world, rank)


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
