"""Decoded training samples kept in memory after their first read (small training sets only)."""

from __future__ import annotations

import logging

import torch
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)


def sample_nbytes(sample: dict) -> int:
    """Bytes of the tensors of one sample dict (strings and numbers not counted)."""
    return sum(v.numel() * v.element_size() for v in sample.values() if torch.is_tensor(v))


class InMemoryDataset(Dataset):
    """`base[i]` read once, then served from memory as a shallow copy of the stored dict.

    Exact only for a deterministic `base` (every dataset of `datamodules` is: no random transform in
    `__getitem__`; flips are applied on top by FlippedIndexDataset). Consumers must not modify the
    returned tensors in place (hflip and the collate function make new ones). Other attributes
    (`num_skipped`, ...) are the base dataset's.
    """

    def __init__(self, base: Dataset) -> None:
        self.base = base
        self.items: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        item = self.items.get(index)
        if item is None:
            item = self.items[index] = self.base[index]
        return dict(item)

    def __getattr__(self, name: str):
        if name in ("base", "items"):  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.base, name)


def keep_in_memory(datasets: list[Dataset], budget_mb: float, copies: int = 1,
                   what: str = "training samples") -> list[Dataset]:
    """`datasets` wrapped in InMemoryDataset when they fit together in `budget_mb` MiB, else unchanged.

    The size is estimated as bytes of each dataset's first sample x its length x `copies` (how many
    copies will be held: one per loader worker, x 2 when both flips are kept); the first samples read
    here are kept. budget_mb <= 0: unchanged.
    `what` names the datasets in the log line.
    """
    if budget_mb <= 0 or not datasets:
        return datasets
    wrapped = [InMemoryDataset(ds) for ds in datasets]
    total = sum(sample_nbytes(w[0]) * len(w) for w in wrapped if len(w)) * max(1, copies)
    if total > budget_mb * 2**20:
        logger.info("%s read from disk: ~%.0f MiB would exceed data.sample_cache_mb=%g",
                    what, total / 2**20, budget_mb)
        return datasets
    logger.info("%s kept in memory after their first read (~%.1f MiB)", what, total / 2**20)
    return wrapped
