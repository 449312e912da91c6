"""Whole-batch mixing ratio and unpadded eval sharding."""

import numpy as np

from datamodules.samplers import MixedBatchSampler, UnpaddedDistributedSampler


def test_mixed_batches_are_whole_and_ratio_is_9_to_1():
    sizes = [100, 30]
    s = MixedBatchSampler(sizes, batch_size=4, probabilities=[0.9, 0.1], num_batches=4000, seed=7)
    first = []
    for batch in s:
        assert len(batch) == 4
        src = {0 if i < 100 else 1 for i in batch}
        assert len(src) == 1, "a batch mixes datasets"
        assert len(set(batch)) == 4
        first.append(src.pop())
    frac = np.mean(np.array(first) == 0)
    # binomial(4000, 0.9): sd = 0.0047; 4 sd
    assert abs(frac - 0.9) < 0.019
    assert list(s) == list(MixedBatchSampler(sizes, 4, [0.9, 0.1], 4000, seed=7))


def test_mixed_sampler_ranks_and_epochs_differ_deterministically():
    mk = lambda rank: MixedBatchSampler([50, 50], 2, [0.5, 0.5], 20, seed=1, num_replicas=2, rank=rank)
    a, b = mk(0), mk(1)
    assert list(a) != list(b) and list(a) == list(mk(0))
    e0 = list(a)
    a.sampler.set_epoch(1)  # how Lightning reaches it
    assert list(a) != e0
    assert len(MixedBatchSampler([50, 50], 2, [0.5, 0.5], seed=0, num_replicas=2, rank=0)) == 25


def test_ranks_slice_one_global_batch_from_one_dataset():
    """W ranks x batch B draw exactly what one process draws with batch W*B (flips included):
    rank r's batch is slice r of it, so all ranks of a step share a dataset and never a sample."""
    sizes = [40, 12]
    kw = dict(probabilities=[0.7, 0.3], num_batches=60, seed=5, flip_prob=0.5)
    single = list(MixedBatchSampler(sizes, 6, num_replicas=1, rank=0, **kw))
    ranks = [list(MixedBatchSampler(sizes, 2, num_replicas=3, rank=r, **kw)) for r in range(3)]
    assert [sum((r[i] for r in ranks), []) for i in range(60)] == single
    total = sum(sizes)
    parts = [{(i % total) >= 40 for r in ranks for i in r[step]} for step in range(60)]
    assert all(len(p) == 1 for p in parts) and {True} in parts and {False} in parts


def test_dataset_smaller_than_the_global_batch_is_refused():
    import pytest

    with pytest.raises(ValueError, match=r"fewer than the global batch data.batch_size x processes = 4 x 2"):
        MixedBatchSampler([100, 6], 4, [0.9, 0.1], num_replicas=2, rank=0)


def test_unpadded_sampler_partitions_exactly():
    n, world = 11, 4
    parts = [list(UnpaddedDistributedSampler(n, world, r)) for r in range(world)]
    assert parts[0] == [0, 4, 8] and parts[3] == [3, 7]
    assert sorted(i for p in parts for i in p) == list(range(n))
    assert [len(UnpaddedDistributedSampler(n, world, r)) for r in range(world)] == [3, 3, 3, 2]


def test_flip_stream_is_seeded_and_leaves_the_order_unchanged():
    from datamodules.samplers import FlippedIndexDataset

    sizes = [30, 10]
    plain = list(MixedBatchSampler(sizes, 2, [0.9, 0.1], num_batches=400, seed=3, num_replicas=1, rank=0))
    sampler = MixedBatchSampler(sizes, 2, [0.9, 0.1], num_batches=400, seed=3, num_replicas=1, rank=0, flip_prob=0.5)
    flipped = list(sampler)
    assert flipped == list(sampler)  # same (seed, epoch, rank) -> same stream
    total = sum(sizes)
    assert [[i % total for i in b] for b in flipped] == plain  # flips do not change which samples
    frac = np.mean([i >= total for b in flipped for i in b])
    assert abs(frac - 0.5) < 0.04  # 800 draws: 4 standard deviations
    sampler.set_epoch(1)
    assert list(sampler) != flipped
    ds = FlippedIndexDataset(list(range(5)), flip=lambda x: -x - 100)
    assert len(ds) == 10 and ds[2] == 2 and ds[7] == -102
