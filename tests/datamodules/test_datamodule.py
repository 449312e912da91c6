"""GeometryDataModule on tiny procedural data: whole-batch mixing, eval loaders, a real Trainer."""

import lightning as L
import pytest
import torch

from datamodules.geometry_datamodule import DataConfig, GeometryDataModule
from datamodules.hypersim import HypersimDataset
from datamodules.synthetic.hypersim_writer import write_hypersim
from datamodules.synthetic.vkitti_writer import write_vkitti


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    write_hypersim(root / "hypersim", num_scenes=2, frames_per_scene=4, height=48, width=64, splits=("train",))
    write_hypersim(root / "hypersim_val", num_scenes=1, frames_per_scene=3, height=48, width=64, splits=("val",), seed=9)
    write_vkitti(root / "vkitti", scenes=("Scene02",), conditions=("clone", "fog"), frames_per_condition=1, height=40, width=100)
    return root


def _config(roots, **kw):
    base = {
        "hypersim_root": str(roots / "hypersim"), "vkitti_root": str(roots / "vkitti"), "max_invalid_fraction": 1.0,
        "vkitti_scenes": ("Scene02",), "vkitti_conditions": ("clone", "fog"), "vkitti_crop": None,
        "vkitti_normal_cache_dir": str(roots / "nc"), "height": 24, "width": 32, "vkitti_height": 20, "vkitti_width": 48,
        "batch_size": 2, "num_workers": 0, "batches_per_epoch": 40, "seed": 3,
    }
    base.update(kw)
    return DataConfig(**base)


def test_train_batches_are_whole_and_mixed(roots):
    dm = GeometryDataModule(_config(roots))
    dm.setup("fit")
    names = []
    for batch in dm.train_dataloader():
        assert len(set(batch["dataset"])) == 1
        names.append(batch["dataset"][0])
        size = (24, 32) if names[-1] == "hypersim" else (20, 48)
        assert batch["rgb"].shape == (2, 3, *size) and batch["normal"].shape == (2, 3, *size)
        assert batch["valid_mask"].dtype == torch.bool and batch["intrinsics"].shape == (2, 3, 3)
    assert len(names) == 40 and {"hypersim", "vkitti"} == set(names)
    assert names.count("hypersim") > names.count("vkitti")


def test_eval_loaders_one_per_benchmark(roots):
    val = HypersimDataset(roots / "hypersim_val", "val", 24, 32, max_invalid_fraction=1.0)
    factory = lambda: HypersimDataset(roots / "hypersim_val", "val", max_invalid_fraction=1.0)
    dm = GeometryDataModule(_config(roots), val_datasets=[("a", val), ("b", factory)], test_datasets=[("c", val)])
    dm.setup("validate")
    assert dm.val_dataset_names == ["a", "b"]
    loaders = dm.val_dataloader()
    assert len(loaders) == 2 and all(dl.batch_size == 1 for dl in loaders)
    assert [len(dl) for dl in loaders] == [3, 3]
    assert next(iter(loaders[1]))["rgb"].shape == (1, 3, 48, 64)
    dm.setup("test")
    assert dm.test_dataset_names == ["c"] and len(dm.test_dataloader()) == 1


def test_missing_sources_and_small_dataset_raise(roots):
    with pytest.raises(ValueError, match="hypersim_root"):
        GeometryDataModule(DataConfig()).setup("fit")
    with pytest.raises(ValueError, match="batch_size"):
        GeometryDataModule(_config(roots, vkitti_root=None, batch_size=100)).setup("fit")


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def training_step(self, batch, _):
        self.seen.append(batch["dataset"][0])
        return ((batch["depth"].mean() - self.w) ** 2)

    def validation_step(self, batch, _, dataloader_idx=0):
        assert batch["rgb"].shape[0] == 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_runs_under_a_lightning_trainer(roots, tmp_path):
    val = HypersimDataset(roots / "hypersim_val", "val", 24, 32, max_invalid_fraction=1.0)
    dm = GeometryDataModule(_config(roots, batches_per_epoch=3), val_datasets=[("v", val)])
    model = _Tiny()
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, use_distributed_sampler=False, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert len(model.seen) == 6
    assert trainer.train_dataloader.batch_sampler.epoch == 1  # Lightning advanced the mixing stream
