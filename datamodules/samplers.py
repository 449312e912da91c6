"""Samplers: unpadded sharding for exact DDP evaluation, and whole-batch dataset mixing for training."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler


def _dist_world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    if num_replicas is None:
        num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} outside [0, {num_replicas})")
    return num_replicas, rank


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank r of W takes indices r, r+W, r+2W, ... in order: no padding, no duplicates, nothing
    dropped, so per-rank metric sums add up to exactly the single-process sums. Ranks may get
    lengths that differ by one. (A DistributedSampler subclass only so that Lightning does not
    replace it; none of the parent's padding/shuffling is used.)"""

    def __init__(self, dataset_or_length, num_replicas: int | None = None, rank: int | None = None) -> None:
        self.length = dataset_or_length if isinstance(dataset_or_length, int) else len(dataset_or_length)
        self.num_replicas, self.rank = _dist_world(num_replicas, rank)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def set_epoch(self, epoch: int) -> None:  # order does not depend on the epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))


class MixedBatchSampler(Sampler[list[int]]):
    """Batches for a ConcatDataset whose parts have `sizes`; each batch comes WHOLE from one part,
    part k chosen with probability `probabilities[k]` (e.g. Hypersim 0.9, VKITTI 0.1).

    The GLOBAL batch (batch_size x num_replicas samples) is what is drawn: its part, and its indices
    from a fresh permutation per pass (reshuffled when used up), offset into the concatenation; rank
    r takes slice r of it. So every rank of a step trains on the same dataset (at the same
    resolution, which cross-rank losses such as the dispersive loss need), no two ranks share a
    sample within a pass, and W ranks x batch B see exactly the samples of one process with batch
    W*B. The stream is a pure function of (seed, epoch), identical to the former single-process
    stream; call `set_epoch` each epoch. `num_batches` per epoch and rank defaults to
    sum(sizes) // (batch_size * num_replicas).

    `flip_prob` > 0 also decides horizontal flips: a flipped sample's index is shifted by sum(sizes),
    for a `FlippedIndexDataset` over the concatenation. Flips are drawn for the global batch from
    their own stream of (seed, epoch), so augmentation too is reproducible and survives a resume (a
    transform drawing from the global RNG would not).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        probabilities: Sequence[float],
        num_batches: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        flip_prob: float = 0.0,
    ) -> None:
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.flip_prob = flip_prob
        if len(sizes) != len(probabilities):
            raise ValueError(f"{len(sizes)} dataset sizes but {len(probabilities)} probabilities")
        probs = np.asarray(probabilities, dtype=np.float64)
        if (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(f"probabilities must be >= 0 with a positive sum, got {list(probabilities)}")
        self.num_replicas, self.rank = _dist_world(num_replicas, rank)
        global_batch = batch_size * self.num_replicas
        for size, p in zip(sizes, probs):
            if p > 0 and size < global_batch:
                raise ValueError(f"a dataset with probability {p} has {size} samples, fewer than the global batch "
                                 f"data.batch_size x processes = {batch_size} x {self.num_replicas}")
        self.sizes, self.batch_size, self.probs = list(sizes), batch_size, probs / probs.sum()
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int)
        self.num_batches = num_batches if num_batches is not None else max(1, sum(sizes) // (batch_size * self.num_replicas))
        self.seed, self.epoch = seed, 0
        self.start_batch = 0
        """Batches of the next pass to leave out (drawn, not yielded): a mid-epoch resume sets it once."""
        self.sampler = _EpochForwarder(self)  # Lightning calls batch_sampler.sampler.set_epoch each epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch, 0])
        flip_rng = np.random.default_rng([self.seed, self.epoch, 0, 1])
        total, size = sum(self.sizes), self.batch_size * self.num_replicas
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        perms = [np.empty(0, dtype=int) for _ in self.sizes]
        pos = [0] * len(self.sizes)
        start, self.start_batch = self.start_batch, 0
        for i in range(self.num_batches):
            k = int(rng.choice(len(self.sizes), p=self.probs))
            if pos[k] + size > len(perms[k]):
                perms[k] = rng.permutation(self.sizes[k])
                pos[k] = 0
            batch = perms[k][pos[k] : pos[k] + size] + self.offsets[k]
            pos[k] += size
            if self.flip_prob > 0:
                batch = batch + total * (flip_rng.random(len(batch)) < self.flip_prob)
            if i >= start:
                yield batch[mine].tolist()


class _EpochForwarder:
    def __init__(self, owner: MixedBatchSampler) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class FlippedIndexDataset(Dataset):
    """Index i < n gives base[i]; index n + i gives base[i] mirrored by `flip` (see MixedBatchSampler)."""

    def __init__(self, base: Dataset, flip) -> None:
        self.base, self.flip, self.n = base, flip, len(base)

    def __len__(self) -> int:
        return 2 * self.n

    def __getitem__(self, index: int) -> dict:
        if index >= self.n:
            return self.flip(self.base[index - self.n])
        return self.base[index]


class DeferredLoader(DataLoader):
    """A DataLoader whose iterator starts (and starts its workers prefetching) at the first batch drawn.

    Lightning creates the training iterator while it estimates the number of steps, before it
    restores a checkpoint and calls set_epoch; a plain DataLoader with workers would already have
    drawn its first batches from the sampler then. Deferring the start lets a resume set the
    sampler's epoch and `start_batch` first (see GeometryDataModule.load_state_dict).
    """

    def __iter__(self):
        return _DeferredIterator(super().__iter__)


class _DeferredIterator:
    def __init__(self, start) -> None:
        self._start, self._it = start, None

    def __iter__(self):
        return self

    def __next__(self):
        if self._it is None:
            self._it = self._start()
        return next(self._it)
