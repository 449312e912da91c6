"""GeometryDataModule: Hypersim + Virtual KITTI training with whole-batch 9:1 mixing (SPEC 6), and
one batch-size-1 val/test loader per benchmark, sharded without padding for exact DDP metrics.

Use with `Trainer(use_distributed_sampler=False)`: this module shards every loader itself (rank and
world size come from the attached trainer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import lightning as L
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from datamodules.hypersim import HypersimDataset
from datamodules.in_memory import InMemoryDataset, keep_in_memory
from datamodules.io_utils import OnBadSample
from datamodules.samplers import (
    DeferredLoader,
    FlippedIndexDataset,
    MixedBatchSampler,
    UnpaddedDistributedSampler,
)
from datamodules.transforms import hflip
from datamodules.vkitti import VirtualKITTIDataset, VKittiCrop
from datamodules.vkitti_layout import CONDITIONS, SCENES

logger = logging.getLogger(__name__)

DatasetOrFactory = Dataset | Callable[[], Dataset]


@dataclass
class DataConfig:
    """Training data and loader settings (the eval benchmarks are passed to the module as datasets)."""

    hypersim_root: str | None = None
    """Folder of the raw Hypersim release (holds metadata_images_split_scene_v1.csv); None = unused."""
    hypersim_cache_dir: str | None = None
    """Output folder of `preprocess_hypersim` (faster, identical samples); None reads raw HDF5."""
    hypersim_split: Literal["train", "val", "test"] = "train"
    """Official split partition to train on."""
    hypersim_probability: float = 0.9
    """Probability that a training batch comes (whole) from Hypersim."""
    max_invalid_fraction: float = 0.01
    """Hypersim frames with more invalid pixels than this fraction are dropped."""
    vkitti_root: str | None = None
    """Folder holding Scene02/, Scene06/, ... of Virtual KITTI 2; None = unused."""
    vkitti_probability: float = 0.1
    """Probability that a training batch comes (whole) from Virtual KITTI 2."""
    vkitti_scenes: tuple[str, ...] = SCENES
    """Virtual KITTI 2 scenes to train on (Marigold's list)."""
    vkitti_conditions: tuple[str, ...] = CONDITIONS
    """Virtual KITTI 2 conditions to train on (Marigold's list)."""
    vkitti_cameras: tuple[int, ...] = (0, 1)
    """Camera_k folders to use."""
    vkitti_crop: VKittiCrop | None = "kb"
    """'kb' (352x1216 KITTI benchmark crop) or None."""
    vkitti_max_depth: float = 80.0
    """Virtual KITTI depth at or above this (m) is invalid (valid: below it, as Marigold)."""
    vkitti_normal_cache_dir: str | None = None
    """Where normals derived from VKITTI depth are cached (.npy per frame); None recomputes each time."""
    height: int | None = 768
    """Hypersim training height in pixels (None = native)."""
    width: int | None = 1024
    """Hypersim training width in pixels (None = native)."""
    vkitti_height: int | None = None
    """Virtual KITTI training height after the crop (None = keep the crop's)."""
    vkitti_width: int | None = None
    """Virtual KITTI training width after the crop (None = keep the crop's)."""
    batch_size: int = 2
    """Training samples per batch per device."""
    num_workers: int = 2
    """DataLoader worker processes per device (0 = load in the main process)."""
    hflip_prob: float = 0.5
    """Probability of a horizontal flip of a training sample (normal x negated, cx mirrored), drawn
    by the batch sampler from (seed, epoch, rank), so augmentation is reproducible across resumes."""
    batches_per_epoch: int | None = None
    """Training batches per epoch and device; None = total train samples // (batch_size * world size)."""
    seed: int | None = None
    """Seed of the batch-mixing stream, flips included (each rank derives its own). None = the
    experiment's top-level `seed` (filled in when the ExperimentConfig is built, so a run's
    config.yaml holds the number); a DataConfig used on its own takes None as 0."""
    on_bad_sample: OnBadSample = "raise"
    """'raise' (stop, naming the file) or 'skip' (log, count, use the next sample)."""
    pin_memory: bool = False
    """Pin loader memory (useful on GPU)."""
    eval_num_workers: int = 0
    """Worker processes for each val/test loader."""
    sample_cache_mb: float = 1024.0
    """Keep decoded training samples, both flips, in memory after their first read when the whole
    training set fits in this many MiB: its size is estimated from each source's first sample x its
    length, x 2 with flips, x max(1, num_workers) (each loader worker keeps its own copy). Else, or with 0, every sample is read
    from disk each time. The validation benchmarks, read again at every validation, are kept the same
    way under their own budget of this size (x eval_num_workers). The samples are the same either way
    (reading is deterministic)."""
    latent_cache_mb: float = 1024.0
    """Host memory (MiB) for the frozen VAE's posterior of every training input, encoded once and
    sampled at every step with the same draws (bit-identical latents; lightning_modules/latent_cache.py).
    ~2 bytes per input pixel per target (image, depth, normal) and flip: ~8 MB for the embedded
    default, 9.4 MB per sample at 768x1024; a training set that needs more is encoded at every step
    (the cache turns itself off). 0 = off."""


class GeometryDataModule(L.LightningDataModule):
    """Train: a ConcatDataset of the configured sources fed by a MixedBatchSampler.
    Val/test: `val_datasets` / `test_datasets` as (name, dataset or zero-argument factory) pairs;
    one loader each, batch size 1, UnpaddedDistributedSampler. Loader i has name `val_dataset_names[i]`."""

    def __init__(
        self,
        config: DataConfig,
        val_datasets: Sequence[tuple[str, DatasetOrFactory]] = (),
        test_datasets: Sequence[tuple[str, DatasetOrFactory]] = (),
    ) -> None:
        super().__init__()
        self.config = config
        self._val_specs, self._test_specs = list(val_datasets), list(test_datasets)
        self.train_sources: list[tuple[str, Dataset, float]] = []
        self._train_sets: list[Dataset] | None = None
        self._train_dataset: Dataset | None = None
        self._val_kept: list[tuple[str, Dataset]] | None = None
        self._train_sampler: MixedBatchSampler | None = None
        self._resume_batches = 0
        self.val_sets: list[tuple[str, Dataset]] = []
        self.test_sets: list[tuple[str, Dataset]] = []

    @property
    def val_dataset_names(self) -> list[str]:
        return [name for name, _ in self._val_specs]

    @property
    def test_dataset_names(self) -> list[str]:
        return [name for name, _ in self._test_specs]

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def build_train_sources(self) -> list[tuple[str, Dataset, float]]:
        c = self.config
        sources = []
        if c.hypersim_root is not None and c.hypersim_probability > 0:
            ds = HypersimDataset(c.hypersim_root, c.hypersim_split, c.height, c.width, c.max_invalid_fraction, c.on_bad_sample, c.hypersim_cache_dir)
            sources.append(("hypersim", ds, c.hypersim_probability))
        if c.vkitti_root is not None and c.vkitti_probability > 0:
            ds = VirtualKITTIDataset(
                c.vkitti_root, c.vkitti_scenes, c.vkitti_conditions, c.vkitti_cameras, c.vkitti_crop, c.vkitti_max_depth,
                height=c.vkitti_height, width=c.vkitti_width, cache_dir=c.vkitti_normal_cache_dir,
                on_bad_sample=c.on_bad_sample,
            )
            sources.append(("vkitti", ds, c.vkitti_probability))
        if not sources:
            raise ValueError("data config: set hypersim_root and/or vkitti_root (with a probability > 0) to train")
        for name, ds, _ in sources:
            if len(ds) < c.batch_size:
                raise ValueError(f"data config: {name} has {len(ds)} usable samples, fewer than batch_size={c.batch_size}")
        return sources

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and not self.train_sources:
            self.train_sources = self.build_train_sources()
        if stage in ("fit", "validate", None) and not self.val_sets:
            self.val_sets = [(n, d() if callable(d) and not isinstance(d, Dataset) else d) for n, d in self._val_specs]
        if stage in ("test", None) and not self.test_sets:
            self.test_sets = [(n, d() if callable(d) and not isinstance(d, Dataset) else d) for n, d in self._test_specs]

    def train_dataloader(self) -> DataLoader:
        c = self.config
        rank, world = self._rank_world()
        if self._train_dataset is None:
            # From memory after a first read when the sources fit (both flips kept: twice the size).
            flips = 2 if c.hflip_prob > 0 else 1
            self._train_sets = keep_in_memory([ds for _, ds, _ in self.train_sources], c.sample_cache_mb,
                                              copies=max(1, c.num_workers) * flips)
            concat = ConcatDataset(self._train_sets)
            dataset = FlippedIndexDataset(concat, hflip) if flips == 2 else concat
            in_memory = isinstance(self._train_sets[0], InMemoryDataset)
            self._train_dataset = InMemoryDataset(dataset) if in_memory and flips == 2 else dataset
        dataset = self._train_dataset
        sampler = MixedBatchSampler(
            [len(ds) for _, ds, _ in self.train_sources], c.batch_size, [p for _, _, p in self.train_sources],
            num_batches=c.batches_per_epoch, seed=0 if c.seed is None else c.seed, num_replicas=world, rank=rank, flip_prob=c.hflip_prob,
        )
        sampler.start_batch, self._resume_batches = self._resume_batches, 0
        self._train_sampler = sampler
        return DeferredLoader(dataset, batch_sampler=sampler, num_workers=c.num_workers, pin_memory=c.pin_memory,
                              persistent_workers=c.num_workers > 0)

    def state_dict(self) -> dict:
        """Saved in every checkpoint: training batches of the current epoch already processed, and the
        epoch's length, so a resume from a mid-epoch checkpoint continues with the next batch."""
        trainer = self.trainer
        if trainer is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"train_batches_done": int(done), "train_epoch_batches": int(trainer.num_training_batches)}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next training pass leaves out the batches of its epoch already trained on
        (the batch stream is a pure function of seed, epoch and rank, so the rest is identical)."""
        done, total = int(state.get("train_batches_done", 0)), int(state.get("train_epoch_batches", 0))
        self._resume_batches = done if 0 < done < total else 0
        if self._train_sampler is not None:  # the loader exists already (Lightning sized the run with it)
            self._train_sampler.start_batch, self._resume_batches = self._resume_batches, 0

    def _eval_loaders(self, sets: list[tuple[str, Dataset]]) -> list[DataLoader]:
        rank, world = self._rank_world()
        return [
            DataLoader(ds, batch_size=1, sampler=UnpaddedDistributedSampler(ds, world, rank), num_workers=self.config.eval_num_workers, pin_memory=self.config.pin_memory)
            for _, ds in sets
        ]

    def val_dataloader(self) -> list[DataLoader]:
        if self._val_kept is None:  # validation re-reads its benchmarks every time: kept when they fit
            names = [name for name, _ in self.val_sets]
            kept = keep_in_memory([ds for _, ds in self.val_sets], self.config.sample_cache_mb,
                                  copies=self.config.eval_num_workers, what="validation benchmarks")
            self._val_kept = list(zip(names, kept))
        return self._eval_loaders(self._val_kept)

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.test_sets)
