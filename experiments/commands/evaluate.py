"""`evaluate`: score a trained run (or a checkpoint) on zero-shot benchmarks.

Writes {run}/metrics.json (meta + one entry per benchmark) and {run}/eval/{dataset}/per_sample.csv.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from experiments.checkpoints import locate_run
from experiments.config import load_experiment
from experiments.datasets import build_datamodule
from experiments.runner import (
    build_module,
    build_trainer,
    load_trained_weights,
    update_metrics_meta,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="a run folder (uses its config.yaml and checkpoints/last.ckpt) or a .ckpt file")
    parser.add_argument("--benchmarks", required=True, help="comma-separated, e.g. nyuv2,kitti,eth3d,scannet,diode")
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="extra YAML merged over the run's config (e.g. real data roots)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")


def run(args: argparse.Namespace) -> None:
    run_dir, ckpt = locate_run(args.checkpoint)
    benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    overrides = [*args.overrides, f"evaluation.benchmarks=[{','.join(benchmarks)}]"]
    cfg = load_experiment([run_dir / "config.yaml", *args.config], overrides)
    cfg = dataclasses.replace(cfg, resume=None)
    module = build_module(cfg)
    steps = load_trained_weights(module, ckpt) if ckpt is not None else 0
    trainer = build_trainer(cfg, train=False)
    trainer.test(module, datamodule=build_datamodule(cfg, stage="test"))
    if trainer.global_rank == 0:
        update_metrics_meta(cfg, steps)
        log.info("metrics: %s", cfg.run_dir / "metrics.json")
