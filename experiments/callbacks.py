"""Training callbacks: block feature probes (the paper's feature figure) and the adapter export."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch

log = logging.getLogger(__name__)


class FeatureProbe(L.Callback):
    """Saves per-token L2 norms of chosen block outputs on one fixed image, plus the predicted depth.

    Written at the end of the first epoch, every `every_n_epochs`-th epoch and the last epoch to
    `{out_dir}/features/epoch_{E:03d}.npz` with arrays `block:{name}` (h/2, w/2) of target-token
    norms, `depth` (H, W) affine-invariant prediction, `rgb` (H, W, 3) in [0, 1].
    """

    def __init__(self, blocks: list[str], out_dir: str | Path, every_n_epochs: int = 1) -> None:
        self.blocks = list(blocks)
        self.out_dir = Path(out_dir) / "features"
        self.every_n_epochs = max(1, every_n_epochs)
        self._rgb: torch.Tensor | None = None

    def _probe_image(self, trainer: L.Trainer) -> torch.Tensor:
        if self._rgb is None:
            dm = trainer.datamodule
            sample = dm.probe_sample() if hasattr(dm, "probe_sample") else next(iter(dm.train_dataloader()))
            rgb = sample["rgb"]
            self._rgb = (rgb if rgb.dim() == 4 else rgb.unsqueeze(0))[:1]
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
        np.savez_compressed(self.out_dir / f"epoch_{epoch + 1:03d}.npz", **arrays)

