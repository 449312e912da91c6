"""`train`: fine-tune one run; resumable with resume=last."""

from __future__ import annotations

import argparse
import logging

import lightning as L

from experiments.commands import add_config_arguments
from experiments.config import load_experiment
from experiments.datasets import build_datamodule
from experiments.runner import (
    build_module,
    build_trainer,
    prepare_run_dir,
    resolve_checkpoint,
    update_metrics_meta,
    write_run_metadata,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "YAML config (repeatable; later files override earlier ones)")


def run(args: argparse.Namespace) -> None:
    cfg = load_experiment(args.config, args.overrides)
    L.seed_everything(cfg.seed, workers=True)
    ckpt = resolve_checkpoint(cfg)
    module = build_module(cfg)
    datamodule = build_datamodule(cfg)
    trainer = build_trainer(cfg, train=True)
    if trainer.global_rank == 0:
        prepare_run_dir(cfg)
        write_run_metadata(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    if trainer.global_rank == 0:
        update_metrics_meta(cfg, trainer.global_step)
        module.export_adapter(cfg.run_dir / "checkpoints" / "adapter.safetensors")
        log.info("run folder: %s", cfg.run_dir)
