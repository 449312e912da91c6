"""Helpers of test_ddp.py (not a test module): score a fixed 7-image set, whole or one shard per rank.

The shard of each rank is scored in the suite's 2-process launch (tests/ddp_checks.py, kind `metrics`,
which puts this folder on sys.path); test_ddp.py scores the whole set in the test process.
"""

import numpy as np
import torch
import torch.distributed as dist

from lightning_modules.metrics import DepthMetrics, NormalMetrics, align_depth

NUM_IMAGES = 7
SHARDS = (range(4), range(4, 7))  # by hand, no padding: rank 0 gets 4 images, rank 1 gets 3


def make_items(seed: int = 0):
    """7 (name, aligned depth, gt, valid, pred normal, gt normal, normal valid) items, ragged masks."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(NUM_IMAGES):
        h, w = 12, 16
        gt = rng.uniform(0.5, 10.0, size=(1, 1, h, w))
        valid = rng.uniform(size=gt.shape) < rng.uniform(0.2, 0.95)
        valid[..., 0, 0] = True
        pred = (np.log(gt) + 1.0) / 2.0 + rng.normal(0, 0.1, size=gt.shape)
        t = [torch.from_numpy(x) for x in (pred, gt, valid)]
        aligned = align_depth(*t, "log", 1e-3, 10.0)
        n_gt = rng.normal(size=(1, 3, h, w))
        n_pred = n_gt + rng.normal(0, 0.4, size=n_gt.shape)
        n_valid = rng.uniform(size=(1, h, w)) < rng.uniform(0.2, 0.95)
        n_valid[..., 0, 0] = True
        items.append((f"img{i}", aligned, t[1], t[2], torch.from_numpy(n_pred), torch.from_numpy(n_gt),
                      torch.from_numpy(n_valid)))
    return items


def score(items, batch: int = 2) -> dict:
    """Update both metrics in batches of `batch` and return compute() as floats (synced under DDP)."""
    depth, normal = DepthMetrics(), NormalMetrics()
    for s in range(0, len(items), batch):
        chunk = items[s : s + batch]
        names = [c[0] for c in chunk]
        cat = [torch.cat([c[k] for c in chunk]) for k in range(1, 7)]
        depth.update(cat[0], cat[1], cat[2], names=names)
        normal.update(cat[3], cat[4], cat[5], names=names)
    out = {f"depth/{k}": float(v) for k, v in depth.compute().items()}
    out.update({f"normal/{k}": float(v) for k, v in normal.compute().items()})
    with depth.sync_context(), normal.sync_context():  # states are per-rank outside compute()
        out["depth/num_images"] = int(depth.num_images)
        out["normal/num_pixels"] = int(normal.num_pixels)
    return out


def rank_result(rank: int) -> dict:
    """This rank's shard scored with metrics synced over the initialised 2-process group."""
    assert dist.get_world_size() == len(SHARDS), "one shard per rank"
    items = make_items()
    return score([items[i] for i in SHARDS[rank]])
