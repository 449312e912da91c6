"""`evaluate`: score a trained run, a checkpoint, or a backbone + released adapter, on zero-shot benchmarks.

Writes {run}/metrics.json (meta + one entry per benchmark) and {run}/eval/{dataset}/per_sample.csv.
Without --checkpoint, the run is described by --config files (its folder comes from experiment/run)
and the weights are the backbone's plus an optional --adapter: the released FE2E LoRA (kohya FLUX
format) or one of our adapter.safetensors files (diffusers/peft layout).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from safetensors import safe_open

from experiments.checkpoints import locate_run
from experiments.commands import add_config_arguments
from experiments.config import load_experiment
from experiments.datasets import build_datamodule
from experiments.runner import (
    build_module,
    build_trainer,
    load_trained_weights,
    update_metrics_meta,
    write_run_metadata,
)
from lightning_modules.backbones.lora import load_adapter, load_kohya_lora

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None,
                        help="a run folder (uses its config.yaml and checkpoints/last.ckpt) or a .ckpt file")
    parser.add_argument("--benchmarks", required=True, help="comma-separated, e.g. nyuv2,kitti,eth3d,scannet,diode")
    parser.add_argument("--adapter", default=None, help="LoRA file to apply: kohya (released FE2E) or peft layout")
    add_config_arguments(parser, "YAML merged over the run's config, or the whole config without --checkpoint")


def apply_adapter(module, path: str) -> None:
    """Load a LoRA file into the module's backbone, recognising its layout by its keys."""
    with safe_open(path, "pt") as fh:
        kohya = any(k.startswith("lora_unet_") for k in fh.keys())
    if kohya:
        load_kohya_lora(module.backbone, path)
    else:
        load_adapter(module.backbone, path)


def run(args: argparse.Namespace) -> None:
    benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    overrides = [*args.overrides, f"evaluation.benchmarks=[{','.join(benchmarks)}]"]
    if args.checkpoint is not None:
        run_dir, ckpt = locate_run(args.checkpoint)
        cfg = load_experiment([run_dir / "config.yaml", *args.config], overrides)
    elif args.config:
        cfg, ckpt = load_experiment(args.config, overrides), None
        write_run_metadata(cfg)
    else:
        raise ValueError("evaluate needs --checkpoint (a run or .ckpt) or --config files describing the model")
    cfg = dataclasses.replace(cfg, resume=None)
    module = build_module(cfg)
    steps = load_trained_weights(module, ckpt) if ckpt is not None else 0
    if args.adapter is not None:
        module.configure_model()
        apply_adapter(module, args.adapter)
    trainer = build_trainer(cfg, train=False)
    trainer.test(module, datamodule=build_datamodule(cfg, stage="test"))
    if trainer.global_rank == 0:
        update_metrics_meta(cfg, steps)
        log.info("metrics: %s", cfg.run_dir / "metrics.json")
