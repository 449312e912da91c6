"""DDP on CPU (2 processes, gloo): training runs, and validation metrics equal the single-process ones
on benchmarks with an ODD number of images (the unpadded sampler neither drops nor duplicates).

The 2-process side runs in the suite's one DDP launch (tests/conftest.py `ddp_results`, worker
tests/ddp_checks.py): two processes started externally, as torchrun or a multi-node scheduler starts them
(MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK/LOCAL_RANK/NODE_RANK), with strategy "ddp" and devices=2, so
each rank builds its own module and data from the config as on a real multi-node job. The
single-process reference is computed here, in the test process.
"""

from __future__ import annotations

import math

import lightning as L
import pytest

from experiments.datasets import build_datamodule
from experiments.runner import build_module, build_scorer


def _validate(cfg) -> dict[str, float]:
    """One process: Trainer.validate's logged metrics as floats."""
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        use_distributed_sampler=False, enable_model_summary=False, callbacks=[build_scorer(cfg)])
    results = trainer.validate(build_module(cfg), datamodule=build_datamodule(cfg), verbose=False)
    return {k: float(v) for r in results for k, v in r.items()}


def _assert_every_rank_equals(single: dict, ranks: list[dict]) -> None:
    for rank, double in enumerate(ranks):
        assert single.keys() == double.keys(), rank
        for key in single:
            assert double[key] == pytest.approx(single[key], rel=1e-6, abs=1e-9), (rank, key)


@pytest.mark.parametrize("method, expected", [
    ("fe2e", {"val/kitti/abs_rel", "val/kitti/delta1", "val/nyuv2_normal/mean", "val/nyuv2_normal/a11_25"}),
    ("genpercept", {"val/kitti/abs_rel", "val/kitti/delta1"}),
], ids=["fe2e", "genpercept"])
def test_ddp_training_and_validation_equal_single_process(tmp_path, ddp_results, method, expected):
    """{method}.yaml with evaluation.benchmarks=[kitti,nyuv2_normal] (tests/conftest.py DDP_CHECKS)."""
    single = _validate(ddp_results.config(f"{method}_validate", tmp_path))
    assert expected <= set(single)
    _assert_every_rank_equals(single, ddp_results.get(f"{method}_validate"))
    # Trainer.fit, max_steps=2, on 2 processes: every rank finishes both steps with a finite loss
    for fit in ddp_results.get(f"{method}_fit"):
        assert fit["finished"] and fit["global_step"] == 2 and math.isfinite(fit["train/loss"]), fit


def test_noise_start_and_sampled_latent_evaluation_independent_of_process_count(tmp_path, ddp_results):
    """DirectAdapt starts from noise and `image_latent: sample` draws the VAE posterior: both are
    seeded per SAMPLE (by name), so 1 and 2 processes score the same, and a re-run repeats itself."""
    single = _validate(ddp_results.config("noise_start_validate", tmp_path))
    assert "val/kitti/abs_rel" in single
    _assert_every_rank_equals(single, ddp_results.get("noise_start_validate"))
