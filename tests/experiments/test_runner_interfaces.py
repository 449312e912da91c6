"""The runner uses the interfaces that exist: FSDP's wrap policy from the backbone's block classes,
the learning rate logged by Lightning's LearningRateMonitor under `train/lr`."""

from __future__ import annotations

import math

import lightning as L
import pytest

from analysis.curves import load_scalars
from experiments.config import CONFIG_DIR, load_experiment
from experiments.datasets import build_datamodule
from experiments.runner import build_module, build_strategy, build_trainer

FE2E = CONFIG_DIR / "fe2e.yaml"


@pytest.mark.parametrize("name, expected", [
    ("tiny-editor", {"FluxTransformerBlock", "FluxSingleTransformerBlock"}),
    ("tiny-qwen-editor", {"QwenImageTransformerBlock"}),
])
def test_fsdp_wraps_the_backbones_own_blocks(name, expected):
    cfg = load_experiment([FE2E], ["trainer.strategy=fsdp", f"backbone.name={name}",
                                   "backbone.gradient_checkpointing=true"])
    strategy = build_strategy(cfg)
    wrapped = strategy.kwargs["auto_wrap_policy"]._module_classes
    assert {cls.__name__ for cls in wrapped} == expected
    checkpointed = strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes
    assert set(checkpointed) == set(wrapped)


def test_learning_rate_logged_as_train_lr_at_every_logged_step(tmp_path, data_overrides):
    """LearningRateMonitor writes `train/lr` at the steps the losses are written, with the scheduler's
    value: linear warm-up over 2 steps, then cosine to 0 at the last of 4 optimizer steps."""
    lr, warmup = 1e-3, 2
    cfg = load_experiment([FE2E], [*data_overrides, f"runs_dir={tmp_path}", "trainer.max_epochs=2",
                                   "evaluation.benchmarks=[]", "features.blocks=[]", f"optim.lr={lr}",
                                   f"optim.warmup_steps={warmup}", "optim.schedule=cosine",
                                   "trainer.checkpoint_every_n_steps=null"])
    L.seed_everything(0)
    trainer = build_trainer(cfg, train=True)
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    scalars = load_scalars([cfg.run_dir])
    logged = scalars[scalars.tag == "train/lr"]
    total = 4  # 2 epochs x data.batches_per_epoch=2
    # hand formula: step s < warmup: (s+1)/warmup; else 0.5 (1 + cos(pi (s - warmup) / (total - warmup)))
    expected = {s: lr * ((s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))))
                for s in range(total)}
    assert list(logged.step) == list(scalars[scalars.tag == "train/loss"].step) == [0, 1, 2, 3]
    for step, value in zip(logged.step, logged.value):
        assert value == pytest.approx(expected[step], rel=1e-6), step
