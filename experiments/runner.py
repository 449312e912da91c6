"""From a validated ExperimentConfig to Lightning objects: module, datamodule, strategy, trainer."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from experiments.callbacks import FeatureProbe, SkipCounts, ValidateAtEnd
from experiments.checkpoints import first_line, read_checkpoint
from experiments.config import ExperimentConfig
from experiments.config_loading import to_yaml
from experiments.scoring import BenchmarkScorer
from lightning_modules.backbones import backbone_class
from lightning_modules.fe2e import FE2EModule
from lightning_modules.files import read_json, write_json_atomic, write_text_atomic
from lightning_modules.genpercept import GenPerceptModule
from lightning_modules.geometry_module import DenseGeometryModule
from lightning_modules.latent_cache import LatentCache
from lightning_modules.merge import MergeModule

log = logging.getLogger(__name__)

METHOD_MODULES: dict[str, type[DenseGeometryModule]] = {
    "fe2e": FE2EModule,
    "t2i": FE2EModule,  # the same recipe on a generator: the prior is the backbone preset's (config.METHOD_PRIOR)
    "genpercept": GenPerceptModule,
    "merge": MergeModule,
}
"""method (ExperimentConfig.method) -> its LightningModule class."""
METHOD_SECTIONS: dict[str, str] = {"genpercept": "genpercept", "merge": "merge"}
"""method -> the ExperimentConfig section of its own settings, passed to its module under that name."""


def method_settings(cfg: ExperimentConfig) -> dict:
    """The settings that define a run's training rule: its method's own section if it has one, else the
    flow-matching objective (what metrics.json's meta records as "objective")."""
    section = METHOD_SECTIONS.get(cfg.method)
    settings = dataclasses.asdict(getattr(cfg, section) if section else cfg.objective)
    return {"method": cfg.method, **settings} if section else settings


def build_module(cfg: ExperimentConfig) -> DenseGeometryModule:
    """The module of `cfg.method` (METHOD_MODULES) from the config; the backbone is built lazily."""
    cls = METHOD_MODULES[cfg.method]
    kwargs = dict(backbone=cfg.backbone, objective=cfg.objective, quantization=cfg.quantization,
                  optim=cfg.optim, image_latent=cfg.evaluation.image_latent, seed=cfg.seed)
    section = METHOD_SECTIONS.get(cfg.method)
    if section:
        kwargs[section] = getattr(cfg, section)
    module = cls(**kwargs)
    if cfg.data.latent_cache_mb > 0:
        module.latent_cache = LatentCache(cfg.data.latent_cache_mb)
        module.val_latent_cache = LatentCache(cfg.data.latent_cache_mb, what="validation images")
    return module


def build_strategy(cfg: ExperimentConfig):
    """The Lightning strategy: FSDP wraps (and optionally checkpoints) each transformer block."""
    if cfg.trainer.strategy != "fsdp":
        return cfg.trainer.strategy
    from lightning.pytorch.strategies import FSDPStrategy

    blocks = backbone_class(cfg.backbone.name).block_classes()
    return FSDPStrategy(
        auto_wrap_policy=blocks,
        activation_checkpointing_policy=blocks if cfg.backbone.gradient_checkpointing else None,
        use_orig_params=True,  # LoRA: frozen and trainable tensors share a flat parameter
        sharding_strategy="FULL_SHARD",
    )


def build_scorer(cfg: ExperimentConfig, meta: dict | None = None) -> BenchmarkScorer:
    """The callback that scores `evaluation.benchmarks` (validation and test) and, after `test`, writes
    the eval files into the run folder; `meta` (run_meta) becomes metrics.json's 'meta'."""
    return BenchmarkScorer(cfg.evaluation, cfg.quantization, cfg.run_dir, meta=meta)


def build_trainer(cfg: ExperimentConfig, *, train: bool = True, callbacks: list | None = None,
                  meta: dict | None = None) -> L.Trainer:
    """A Trainer logging to {runs_dir}/{experiment}/{run}/ (TensorBoard events beside config.yaml).

    Its BenchmarkScorer scores `evaluation.benchmarks` at validation and test; after `test` it writes the
    eval files into the run folder, with `meta` (run_meta) as metrics.json's 'meta'.
    """
    t = cfg.trainer
    logger = TensorBoardLogger(save_dir=cfg.runs_dir, name=cfg.experiment, version=cfg.run,
                               default_hp_metric=False)
    callbacks = [*(callbacks or []), SkipCounts(cfg.run_dir)]
    if cfg.evaluation.benchmarks:
        callbacks.append(build_scorer(cfg, meta=meta))
    if train:
        callbacks.append(LearningRateMonitor(logging_interval="step"))  # `train/lr`: the scheduler's name
        callbacks.append(ValidateAtEnd())
        # Both callbacks rewrite the ONE last.ckpt a resume reads: without enable_version_counter=False,
        # the second to write it would find the other's file and write last-v1.ckpt instead. At an epoch
        # checkpoint last.ckpt becomes a relative symlink to it (save_last="link": one write, not two);
        # the step refresh replaces the link by a file (Lightning saves to a temporary file and renames it
        # over the path, so it never writes through the link into the epoch checkpoint).
        callbacks.append(ModelCheckpoint(dirpath=cfg.run_dir / "checkpoints", filename="epoch{epoch:03d}",
                                         auto_insert_metric_name=False, save_last="link", save_top_k=-1,
                                         every_n_epochs=1, enable_version_counter=False))
        if t.checkpoint_every_n_steps:  # refreshes last.ckpt only, between the epoch checkpoints
            callbacks.append(ModelCheckpoint(dirpath=cfg.run_dir / "checkpoints", save_last=True, save_top_k=0,
                                             every_n_train_steps=t.checkpoint_every_n_steps,
                                             enable_version_counter=False))
        if cfg.features.blocks:
            callbacks.append(FeatureProbe(cfg.features.blocks, cfg.run_dir, cfg.features.every_n_epochs))
    optional = {k: getattr(t, k) for k in ("limit_train_batches", "limit_val_batches", "val_check_interval",
                                           "gradient_clip_val") if getattr(t, k) is not None}
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=build_strategy(cfg),
        precision=t.precision, max_epochs=t.max_epochs, max_steps=t.max_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch, num_sanity_val_steps=t.num_sanity_val_steps,
        log_every_n_steps=t.log_every_n_steps, accumulate_grad_batches=t.accumulate_grad_batches,
        enable_progress_bar=t.enable_progress_bar, deterministic=t.deterministic, logger=logger,
        use_distributed_sampler=False,  # the datamodule shards every loader itself (no padding)
        callbacks=callbacks, default_root_dir=str(cfg.run_dir), **optional,
    )


def git_commit() -> str:
    """The current commit hash (+ '-dirty' with uncommitted changes), or 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def at_run_dir(cfg: ExperimentConfig, run_dir: Path) -> ExperimentConfig:
    """`cfg` relocated to the folder `run_dir` (runs_dir/experiment/run taken from its absolute path),
    so an evaluation of a copied or moved run writes into that folder, not the one config.yaml names."""
    path = Path(run_dir).resolve()
    try:
        return dataclasses.replace(cfg, runs_dir=str(path.parent.parent), experiment=path.parent.name, run=path.name)
    except ValueError as err:
        raise ValueError(f"{run_dir}: cannot be used as a run folder ({err})") from None


def write_run_metadata(cfg: ExperimentConfig) -> None:
    """config.yaml (resolved) and the git commit into the run folder (rank 0 only), each written atomically."""
    write_text_atomic(cfg.run_dir / "config.yaml", to_yaml(cfg))
    write_text_atomic(cfg.run_dir / "git_commit.txt", git_commit() + "\n")


def run_meta(cfg: ExperimentConfig, steps: int) -> dict:
    """What a run ran on, for labelling every table and plot made from it."""
    return {"method": cfg.method, "backbone": cfg.backbone.name,
            "weights": "pretrained" if cfg.backbone.weights else "random-init",
            "data": data_label(cfg), "steps": int(steps),
            "run": f"{cfg.experiment}/{cfg.run}", "quantization": cfg.quantization,
            "objective": method_settings(cfg)}


SYNTHETIC_MARKER = "SYNTHETIC.txt"


def data_label(cfg: ExperimentConfig) -> str:
    """'synthetic' when the data roots hold procedurally rendered scenes (they carry a marker file)."""
    roots = [r for r in (cfg.evaluation.root, cfg.data.hypersim_root, cfg.data.vkitti_root) if r]
    synthetic = any((Path(r) / SYNTHETIC_MARKER).exists() or (Path(r).parent / SYNTHETIC_MARKER).exists()
                    for r in roots)
    return "synthetic" if synthetic else "real"


def update_metrics_meta(cfg: ExperimentConfig, steps: int) -> None:
    """Set the 'meta' entry of {run}/metrics.json (rewritten atomically)."""
    path = cfg.run_dir / "metrics.json"
    data = read_json(path)
    data["meta"] = run_meta(cfg, steps)
    write_json_atomic(path, data)


def record_cost(cfg: ExperimentConfig, **values: float) -> None:
    """Merge `values` (trainable parameters, seconds, samples) into the 'cost' entry of {run}/metrics.json."""
    path = cfg.run_dir / "metrics.json"
    data = read_json(path) if path.is_file() else {}
    data.setdefault("cost", {}).update(values)
    write_json_atomic(path, data)


def resolve_checkpoint(cfg: ExperimentConfig) -> str | None:
    """The checkpoint to resume from, or None; 'last' = this run's checkpoints/last.ckpt."""
    if cfg.resume is None:
        return None
    path = cfg.run_dir / "checkpoints" / "last.ckpt" if cfg.resume == "last" else Path(cfg.resume)
    if not path.is_file():
        raise FileNotFoundError(f"resume={cfg.resume!r}: no checkpoint at {path}")
    return str(path)


def load_trained_weights(module: DenseGeometryModule, ckpt: str | Path) -> int:
    """Load the trainable tensors of a Lightning checkpoint into `module`; returns its global step.

    Raises ValueError naming the file when it is not a tensors-only checkpoint or its tensors do not
    fit the model its config builds (e.g. another backbone.lora_rank or backbone.finetune).
    """
    state = read_checkpoint(ckpt)
    module.configure_model()
    module.on_load_checkpoint(state)
    try:
        result = module.load_state_dict(state["state_dict"], strict=False)
    except RuntimeError as err:  # size mismatches
        raise ValueError(f"{ckpt}: its tensors do not fit the model built from the run's config (another "
                         f"backbone.lora_rank or backbone.finetune?): {first_line(err, skip_header=True)}") from None
    if result.unexpected_keys:
        raise KeyError(f"{ckpt}: tensors the model does not have, e.g. {result.unexpected_keys[:3]}")
    return int(state.get("global_step", 0))
