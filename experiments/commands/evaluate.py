"""`evaluate`: score a trained run, a checkpoint, or a backbone + released adapter, on zero-shot benchmarks.

Writes {run}/metrics.json (meta, one entry per benchmark, skip counts) and
{run}/eval/{dataset}/per_sample.csv, where {run} is the folder given to --checkpoint (a copied run
writes into the copy). Without --checkpoint, the run is described by --config files (its folder
comes from experiment/run) and the weights are the backbone's plus an optional --adapter: the released FE2E LoRA (kohya FLUX
format) or one of our adapter.safetensors files (diffusers/peft layout); a folder that holds a
trained run, or an evaluation with another config, is refused rather than overwritten.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from safetensors import safe_open

from experiments.checkpoints import first_line, locate_run, read_checkpoint
from experiments.commands import add_config_arguments
from experiments.config import ExperimentConfig, load_experiment
from experiments.datasets import build_datamodule
from experiments.preflight import check_backbone, check_benchmarks_root, check_safetensors
from experiments.run_state import FINISHED_FILE, changed_keys
from experiments.runner import (
    at_run_dir,
    build_module,
    build_trainer,
    load_trained_weights,
    run_meta,
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


def check_adapter(path: str, cfg: ExperimentConfig) -> bool:
    """Check a LoRA file before anything is written; returns True for the kohya layout (released FE2E).

    Raises FileNotFoundError / ValueError naming the file when it is missing or truncated, or when it
    is a peft-layout adapter and the backbone has no LoRA layers to load it into (finetune=full).
    """
    check_safetensors(path, "LoRA adapter file")
    try:
        with safe_open(path, "pt") as fh:
            kohya = any(k.startswith("lora_unet_") for k in fh.keys())
    except Exception as err:  # safetensors' own error type
        raise ValueError(f"--adapter {path}: not a readable safetensors file ({first_line(err)})") from None
    if not kohya and cfg.backbone.finetune != "lora":
        raise ValueError(f"--adapter {path}: a LoRA adapter (peft layout) needs a backbone with LoRA layers, but "
                         f"this model is fully fine-tuned (backbone.finetune={cfg.backbone.finetune}); pass "
                         "backbone.finetune=lora with the adapter's backbone.lora_rank")
    return kohya


def apply_adapter(module, path: str, kohya: bool) -> None:
    """Load a LoRA file (checked by check_adapter) into the module's backbone; ValueError naming it on a misfit."""
    try:
        if kohya:
            load_kohya_lora(module.backbone, path)
        else:
            load_adapter(module.backbone, path)
    except (RuntimeError, KeyError) as err:  # shape mismatches inside peft / diffusers
        raise ValueError(f"--adapter {path}: does not fit the backbone {module.backbone_cfg.name} "
                         f"({first_line(err)})") from None


def config_run(args: argparse.Namespace, overrides: list[str]) -> ExperimentConfig:
    """The config of an evaluation described by --config files; refuses a folder that holds a trained run
    or an evaluation with another config (its config.yaml would be overwritten)."""
    cfg = load_experiment(args.config, overrides)
    run_dir = cfg.run_dir
    if (run_dir / "checkpoints").exists() or (run_dir / FINISHED_FILE).exists():
        raise FileExistsError(f"{run_dir} holds a trained run: evaluate it with --checkpoint {run_dir}, or give this "
                              "evaluation its own folder with experiment=NAME run=NAME")
    changed = changed_keys(cfg)
    changed = [k for k in changed or [] if k != "evaluation.benchmarks"]
    if changed:
        raise FileExistsError(f"{run_dir} holds an evaluation with another config (differs in {', '.join(changed[:6])}): "
                              "choose another run=NAME for this one")
    return cfg


def benchmark_list(text: str) -> list[str]:
    """'kitti, nyuv2' -> ['kitti', 'nyuv2'] (--benchmarks, train's --evaluate); ValueError when it names none."""
    names = [b.strip() for b in text.split(",") if b.strip()]
    if not names:
        raise ValueError(f"{text!r}: expected comma-separated benchmark names, e.g. kitti,nyuv2")
    return names


def run(args: argparse.Namespace) -> None:
    benchmarks = benchmark_list(args.benchmarks)
    overrides = [*args.overrides, f"evaluation.benchmarks=[{','.join(benchmarks)}]"]
    if args.checkpoint is not None:
        run_dir, ckpt = locate_run(args.checkpoint)
        cfg = at_run_dir(load_experiment([run_dir / "config.yaml", *args.config], overrides), run_dir)
    elif args.config:
        cfg, ckpt = config_run(args, overrides), None
    else:
        raise ValueError("evaluate needs --checkpoint (a run or .ckpt) or --config files describing the model")
    cfg = dataclasses.replace(cfg, resume=None)
    check_backbone(cfg)
    check_benchmarks_root(cfg)
    if ckpt is not None:
        read_checkpoint(ckpt, mmap=True)
    kohya = check_adapter(args.adapter, cfg) if args.adapter is not None else False
    if args.checkpoint is None:
        write_run_metadata(cfg)
    module = build_module(cfg)
    steps = load_trained_weights(module, ckpt) if ckpt is not None else 0
    if args.adapter is not None:
        module.configure_model()
        apply_adapter(module, args.adapter, kohya)
    trainer = build_trainer(cfg, train=False, meta=run_meta(cfg, steps))
    trainer.test(module, datamodule=build_datamodule(cfg, stage="test"))  # the scorer writes metrics.json
    if trainer.global_rank == 0:
        log.info("metrics: %s", cfg.run_dir / "metrics.json")
