"""Training callbacks: block feature probes (the paper's feature figure) and skipped-sample counts."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch

from datamodules.io_utils import SKIPPED_KEY
from experiments.scoring import sum_over_ranks
from lightning_modules.files import read_json, write_json_atomic

log = logging.getLogger(__name__)


class FeatureProbe(L.Callback):
    """Saves per-token L2 norms of chosen block outputs on one fixed image, plus the predicted depth.

    Written at the end of the first epoch, every `every_n_epochs`-th epoch and the last epoch to
    `{out_dir}/features/epoch_{E:03d}.npz` with arrays `block:{name}` (h/2, w/2) of target-token
    norms, `depth` (H, W) affine-invariant prediction, `rgb` (H, W, 3) in [0, 1] and `gt_depth`
    (H, W) the image's ground-truth depth in metres, NaN where invalid. The image is the first sample
    of the first training batch.
    """

    def __init__(self, blocks: list[str], out_dir: str | Path, every_n_epochs: int = 1) -> None:
        self.blocks = list(blocks)
        self.out_dir = Path(out_dir) / "features"
        self.every_n_epochs = max(1, every_n_epochs)
        self._rgb: torch.Tensor | None = None
        self._gt_depth: np.ndarray | None = None

    def _probe_image(self, trainer: L.Trainer) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1]: the first sample of the first training batch (kept with its ground truth)."""
        if self._rgb is None:
            batch = next(iter(trainer.datamodule.train_dataloader()))
            self._rgb = batch["rgb"][:1]
            depth = batch["depth"][0, 0].float()
            self._gt_depth = torch.where(batch["valid_mask"][0, 0].bool(), depth, torch.nan).numpy()
        return self._rgb

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        epoch = trainer.current_epoch
        last = epoch + 1 >= (trainer.max_epochs or 0) or trainer.should_stop or (
            trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps)
        if not self.blocks or not (epoch == 0 or last or (epoch + 1) % self.every_n_epochs == 0):
            return
        if trainer.global_rank != 0:
            return
        rgb = self._probe_image(trainer).to(module.device)
        was_training = module.training
        module.eval()
        try:
            maps, depth = module.probe_features(rgb, self.blocks)
        finally:
            module.train(was_training)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        arrays = {f"block:{name}": m.float().cpu().numpy() for name, m in maps.items()}
        arrays["depth"] = depth[0, 0].float().cpu().numpy()
        arrays["rgb"] = ((rgb[0].permute(1, 2, 0).float().cpu().numpy() + 1) / 2).clip(0, 1)
        arrays["gt_depth"] = self._gt_depth
        np.savez_compressed(self.out_dir / f"epoch_{epoch + 1:03d}.npz", **arrays)



class ValidateAtEnd(L.Callback):
    """Validation also after the run's last training batch, whatever the cadence.

    Lightning validates every `check_val_every_n_epoch` epochs (or every `val_check_interval`
    batches), so a run whose length is not a multiple of the cadence (12 epochs validated every 5,
    or `max_steps` reached in the middle of an epoch) would end unvalidated. At the last batch of
    the last epoch, or at the batch that reaches `max_steps`, this asks the loop to validate after
    it: the epoch check is set to every epoch and `should_stop` (which makes Lightning validate the
    batch it stops at). A run whose last epoch is on the cadence validates once, as before.
    """

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx: int) -> None:
        if not trainer.enable_validation:
            return
        last_epoch_end = (trainer.max_epochs is not None and trainer.max_epochs > 0
                          and trainer.current_epoch + 1 >= trainer.max_epochs
                          and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
        step_limit = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        if last_epoch_end or step_limit:
            if trainer.check_val_every_n_epoch is not None:
                trainer.check_val_every_n_epoch = 1
            trainer.should_stop = True


class SkipCounts(L.Callback):
    """Counts of bad training samples skipped (policy 'skip'), summed over loader workers and ranks.

    metrics.json gains `skipped`: {"train": {"samples": n}} after training (the benchmarks' counts are
    the scorer's: experiments.scoring). Worker-side skips travel with each batch
    (datamodules.io_utils.SKIPPED_KEY); skips made when a dataset is opened happen identically on
    every rank and are taken once.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._train_batches = 0
        self._train_opened = 0
        self.counts: dict[str, dict[str, int]] = {}

    def on_train_start(self, trainer: L.Trainer, module) -> None:
        sources = getattr(trainer.datamodule, "train_sources", [])
        self._train_opened = sum(int(getattr(ds, "num_skipped", 0)) for _, ds, _ in sources)
        self._train_batches = 0

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx: int) -> None:
        if isinstance(batch, dict) and SKIPPED_KEY in batch:
            self._train_batches += int(torch.as_tensor(batch[SKIPPED_KEY]).sum())

    def on_train_end(self, trainer: L.Trainer, module) -> None:
        total = self._train_opened + sum_over_ranks(trainer, module.device, self._train_batches)
        self.counts = {"train": {"samples": total}}
        if total:
            log.warning("training skipped %d bad samples (data.on_bad_sample=skip)", total)
        self._write(trainer)

    def _write(self, trainer: L.Trainer) -> None:
        if trainer.global_rank != 0 or not self.counts:
            return
        path = self.run_dir / "metrics.json"
        data = read_json(path)
        data.setdefault("skipped", {}).update(self.counts)
        write_json_atomic(path, data)
