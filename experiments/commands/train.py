"""`train`: fine-tune one run; resumable with resume=last; existing_run=keep|retrain for re-runs (Make).

`--evaluate kitti,nyuv2` then scores the finished run (also a kept one) in the same process, exactly as
`evaluate --checkpoint RUN --benchmarks kitti,nyuv2` would (one interpreter start and import instead of two).

Order: the config, the backbone/method pairing, the weights files, the data roots and any resume
checkpoint are all checked first; only then is the run folder created, or an old run moved aside
(never deleted, see experiments/run_state.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time

from experiments.commands import add_config_arguments

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--evaluate", default=None, metavar="BENCHMARKS",
                        help="comma-separated benchmarks to score the finished run on, as `evaluate` does")
    add_config_arguments(parser, "YAML config (repeatable; later files override earlier ones)")


def check_evaluation(cfg, text: str) -> None:
    """The --evaluate benchmarks exist in the protocol table and their root is a folder (before training)."""
    from experiments.commands.evaluate import benchmark_list
    from experiments.datasets import benchmark_factories

    ev = dataclasses.replace(cfg.evaluation, benchmarks=benchmark_list(text))
    benchmark_factories(dataclasses.replace(cfg, evaluation=ev))


def evaluate_run(cfg, text: str) -> None:
    """Score the run in cfg.run_dir on the --evaluate benchmarks (the `evaluate` command's own code)."""
    from experiments.commands import evaluate

    evaluate.run(argparse.Namespace(checkpoint=str(cfg.run_dir), benchmarks=text, adapter=None, config=[],
                                    overrides=[]))


def run(args: argparse.Namespace) -> None:
    # Imported here, not with the module: `train --help` then starts without torch and Lightning.
    import lightning as L
    from lightning.fabric.utilities.rank_zero import _get_rank

    from experiments.config import load_experiment
    from experiments.datasets import build_datamodule
    from experiments.preflight import check_for_training
    from experiments.run_state import RunPlan, apply_plan, mark_finished, plan_run
    from experiments.runner import (
        build_module,
        build_trainer,
        record_cost,
        resolve_checkpoint,
        update_metrics_meta,
        write_run_metadata,
    )

    cfg = load_experiment(args.config, args.overrides)
    # Launched ranks (torchrun, SLURM, Lightning's subprocess launcher) may start while rank 0 already
    # writes the folder: only rank 0 refuses or moves an old run aside; under 'keep' the others reach
    # the same decision from the same folder state.
    rank_zero = (_get_rank() or 0) == 0
    explicit = resolve_checkpoint(cfg)
    plan = None
    if explicit is None:
        plan = plan_run(cfg) if rank_zero or cfg.existing_run == "keep" else RunPlan("fresh", reason="rank > 0")
    ckpt = explicit if plan is None else plan.checkpoint
    check_for_training(cfg, ckpt)
    if args.evaluate is not None:
        check_evaluation(cfg, args.evaluate)
    if plan is not None and plan.action == "keep":
        log.info("%s: nothing to do (existing_run=keep; FORCE=1 / existing_run=retrain trains it again)", plan.reason)
        if args.evaluate is not None:
            evaluate_run(cfg, args.evaluate)
        return
    if plan is not None and rank_zero:
        plan = apply_plan(cfg, plan)
        log.info("%s: %s", cfg.run_dir, "fresh start" if plan.action == "fresh" else plan.reason)
    L.seed_everything(cfg.seed, workers=True)
    module = build_module(cfg)
    datamodule = build_datamodule(cfg)
    trainer = build_trainer(cfg, train=True)
    if trainer.global_rank == 0:
        write_run_metadata(cfg)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=None if ckpt is None else str(ckpt))
    seconds = time.perf_counter() - start
    for cache in (module.latent_cache, module.val_latent_cache):
        if cache is not None:
            log.info(cache.summary())
    if trainer.interrupted:
        log.warning("training was interrupted: %s is unfinished; re-run to resume from its last checkpoint",
                    cfg.run_dir)
        return
    if trainer.global_rank == 0:
        update_metrics_meta(cfg, trainer.global_step)
        # seconds of THIS call: a resumed run's per-sample time would be wrong, so it is flagged
        record_cost(cfg, trainable_parameters=sum(p.numel() for p in module.parameters() if p.requires_grad),
                    train_seconds=seconds, train_resumed=ckpt is not None,
                    train_samples=trainer.global_step * cfg.data.batch_size * trainer.world_size
                    * cfg.trainer.accumulate_grad_batches)
        module.export_adapter(cfg.run_dir / "checkpoints" / "adapter.safetensors")
        mark_finished(cfg, trainer.global_step)
        log.info("run folder: %s", cfg.run_dir)
    if args.evaluate is not None:
        evaluate_run(cfg, args.evaluate)
