"""Helpers of test_dispersive.py's DDP test (not a test module): one rank of a 2-process gloo group.

`rank_result` runs in the suite's 2-process launch (tests/ddp_checks.py, kind `dispersive`, which puts this
folder on sys.path); the test computes the single-process reference with `make_problem` and `loss_of`.

Each rank holds a slice of a fixed global batch, computes local MSE + 0.5 * dispersive loss of the
gathered block features, back-propagates, and AVERAGES parameter gradients over ranks as DDP does.
"""

import torch
import torch.distributed as dist

from lightning_modules.objectives.dispersive import dispersive_loss, gather_across_ranks


def make_problem(seed: int = 0, batch: int = 2):
    """A Linear 'block' (6 -> 8) and a global batch of `batch` samples of 3 tokens x 6 channels."""
    gen = torch.Generator().manual_seed(seed)
    block = torch.nn.Linear(6, 8)
    with torch.no_grad():
        block.weight.copy_(torch.randn(8, 6, generator=gen) * 0.5)
        block.bias.copy_(torch.randn(8, generator=gen) * 0.1)
    x = torch.randn(batch, 3, 6, generator=gen)
    target = torch.randn(batch, 3, 8, generator=gen)
    return block, x, target


def loss_of(block, x, target, gather: bool):
    """(total, dispersive) for the samples in x: MSE to target + 0.5 * dispersive loss."""
    feats = block(x)
    disp = dispersive_loss(gather_across_ranks(feats) if gather else feats)
    return ((feats - target) ** 2).mean() + 0.5 * disp, disp


def rank_result(rank: int, world: int) -> dict:
    """On the initialised group: this rank's gathered dispersive loss and DDP-averaged gradients."""
    block, x, target = make_problem(batch=world)  # one sample per process, the usual 12B-DiT case
    total, disp = loss_of(block, x[rank : rank + 1], target[rank : rank + 1], gather=True)
    total.backward()
    grads = []
    for p in block.parameters():
        dist.all_reduce(p.grad)
        grads.append((p.grad / world).flatten().tolist())  # DDP's gradient average
    return {"disp": float(disp), "grads": grads}
