"""Training samples kept in memory: read once, the same samples and batches, only when they fit."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from datamodules.geometry_datamodule import DataConfig, GeometryDataModule
from datamodules.in_memory import InMemoryDataset, keep_in_memory, sample_nbytes
from datamodules.synthetic.hypersim_writer import write_hypersim


class CountingDataset(Dataset):
    """Deterministic samples of (3, 8, 8) float32 rgb + (1, 8, 8) bool mask; counts reads per index."""

    def __init__(self, n: int) -> None:
        self.n, self.reads = n, [0] * n
        self.num_skipped = 7

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        self.reads[i] += 1
        return {"rgb": torch.full((3, 8, 8), float(i)), "valid_mask": torch.ones(1, 8, 8, dtype=torch.bool),
                "name": f"s{i}"}


def test_samples_are_read_once_and_served_unchanged():
    base = CountingDataset(3)
    mem = InMemoryDataset(base)
    for _ in range(3):
        for i in range(3):
            s = mem[i]
            assert s["name"] == f"s{i}" and torch.equal(s["rgb"], torch.full((3, 8, 8), float(i)))
    assert base.reads == [1, 1, 1]
    s = mem[0]
    s["rgb"] = None  # a consumer replacing a key does not touch what is kept
    assert mem[0]["rgb"] is not None
    assert len(mem) == 3 and mem.num_skipped == 7  # the base dataset's attributes


def test_kept_only_when_the_estimate_fits_the_budget():
    per_sample = 3 * 8 * 8 * 4 + 8 * 8  # float32 rgb + bool mask
    assert sample_nbytes(CountingDataset(1)[0]) == per_sample
    a, b = CountingDataset(10), CountingDataset(6)
    fits = (16 * per_sample) / 2**20
    kept = keep_in_memory([a, b], fits)
    assert all(isinstance(d, InMemoryDataset) for d in kept) and [d.base for d in kept] == [a, b]
    assert keep_in_memory([a, b], fits * 0.99) == [a, b]  # 1% short: read from disk
    assert keep_in_memory([a, b], fits, copies=2) == [a, b]  # two loader workers keep two copies
    assert keep_in_memory([a, b], 0) == [a, b]


def test_datamodule_batches_are_the_same_with_samples_in_memory(tmp_path):
    write_hypersim(tmp_path / "hypersim", num_scenes=1, frames_per_scene=4, height=24, width=32, splits=("train",))

    def batches(cache_mb):
        cfg = DataConfig(hypersim_root=str(tmp_path / "hypersim"), max_invalid_fraction=1.0, height=16, width=24,
                         batch_size=2, num_workers=0, batches_per_epoch=6, seed=1, sample_cache_mb=cache_mb)
        dm = GeometryDataModule(cfg)
        dm.setup("fit")
        loader = dm.train_dataloader()
        out = []
        for epoch in range(2):
            loader.batch_sampler.set_epoch(epoch)
            out += list(loader)
        return out, dm

    disk, dm_disk = batches(0)
    memory, dm_mem = batches(64)
    assert not isinstance(dm_disk._train_sets[0], InMemoryDataset)
    assert isinstance(dm_mem._train_sets[0], InMemoryDataset) and len(dm_mem._train_sets[0].items) == 4
    assert isinstance(dm_mem._train_dataset, InMemoryDataset)  # flipped samples kept too
    assert len(dm_mem._train_dataset.items) > 4 and max(dm_mem._train_dataset.items) >= 4  # some flipped
    assert len(disk) == len(memory) == 12
    for x, y in zip(disk, memory):
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]) if torch.is_tensor(x[key]) else x[key] == y[key], key


def test_validation_benchmarks_are_read_once_across_validations():
    for budget, reads in ((64, [1, 1, 1]), (0, [2, 2, 2])):
        bench = CountingDataset(3)
        dm = GeometryDataModule(DataConfig(sample_cache_mb=budget), val_datasets=[("counting", bench)])
        dm.setup("validate")
        seen = [[batch["name"][0] for batch in dm.val_dataloader()[0]] for _ in range(2)]  # two validations
        assert seen == [["s0", "s1", "s2"]] * 2
        assert bench.reads == reads, budget
