"""Suite-wide fixtures: one small procedural data root (every real on-disk format) per session."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: experiments/thread_policy.py

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A data root written by the 'test' preset: hypersim/, vkitti/ (64x192, no KB crop), eval/."""
    from experiments.synthetic_data import write_synthetic_root

    return write_synthetic_root(tmp_path_factory.mktemp("synthetic"), "test", seed=0)


@pytest.fixture(scope="session")
def data_overrides(synthetic_root):
    """key=value overrides pointing an experiment at the session's synthetic root, at test sizes."""
    r = synthetic_root
    return [
        f"data.hypersim_root={r}/hypersim", f"data.vkitti_root={r}/vkitti", "data.vkitti_crop=null",
        "data.vkitti_scenes=[Scene02]", "data.height=48", "data.width=64", "data.vkitti_height=48",
        "data.vkitti_width=144", "data.batch_size=2", "data.num_workers=0", "data.batches_per_epoch=2",
        f"data.vkitti_normal_cache_dir={r}/cache", f"evaluation.root={r}/eval", "evaluation.input_scale=0.125",
        "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
    ]
