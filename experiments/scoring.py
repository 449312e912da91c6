"""Zero-shot scoring of a model's predictions on the benchmark dataloaders (SPEC section 7).

`BenchmarkScorer` is a Lightning callback and the single owner of evaluation: it receives what the
module's `validation_step` / `test_step` return (predictions at the ground truth's size), aligns
depth in the space that matches the quantization, keeps one metric object per benchmark, logs
`{stage}/{dataset}/{metric}`, and after `test` writes `eval/{dataset}/per_sample.csv` and
`metrics.json` (meta, one entry per benchmark, skip counts, evaluation cost) into the run folder.
The benchmarks' input sizes come with the data (`datamodules.benchmarks.sizing`).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from datamodules.benchmarks.protocol import load_protocols
from datamodules.benchmarks.sizing import check_input_scale
from lightning_modules.choices import check_choices
from lightning_modules.encoding import affine_invariant_to_space
from lightning_modules.files import read_json, write_json_atomic, write_text_atomic
from lightning_modules.geometry_module import ImageLatent
from lightning_modules.metrics import DepthMetrics, NormalMetrics
from lightning_modules.metrics.depth import OnBadSample
from lightning_modules.metrics.pixels import AlignmentSpace

log = logging.getLogger(__name__)

Alignment = Literal["auto", AlignmentSpace]
"""'auto' (the space matching the quantization) or an explicit alignment space."""


@dataclass
class EvalConfig:
    """Which benchmarks to score and how."""

    benchmarks: list[str] = field(default_factory=list)
    """Benchmark names from the protocol file (e.g. [kitti, eth3d, nyuv2_normal])."""
    root: str | None = None
    """Folder holding the benchmarks in their released packaging (Marigold tars, DSINE folders)."""
    protocol_file: str | None = None
    """YAML table of per-benchmark protocols (valid range, crop, input size); None = the table shipped
    with datamodules.benchmarks (benchmarks.yaml). The table's old location, which older run folders'
    config.yaml hold, also reads the shipped table."""
    alignment: Alignment = "auto"
    """Depth alignment: 'auto' = the space matching the quantization (log -> log), or an explicit one."""
    input_scale: float = 1.0
    """Scale of the model's input size: FE2E's bucket per benchmark, and 1024x768 pixels (aspect kept)
    for `predict`, times this (each side rounded to a multiple of 16); 1.0 = the paper's, the CPU demo
    (trained at ~96x128) uses 0.25."""
    image_latent: ImageLatent = "mode"
    """Image latent the model is conditioned on at evaluation: 'mode' of the VAE posterior
    (deterministic, the default) or a 'sample' from it, seeded per sample, as FE2E's released
    evaluation code does (use it to score the released LoRA exactly as its authors did)."""
    on_bad_sample: OnBadSample = "raise"
    """'raise' or 'skip' (counted and logged) for a prediction with NaN or a sample with no valid pixel."""
    log_images: int = 1
    """Predicted depth/normal images per dataset and validation epoch logged to TensorBoard."""

    def __post_init__(self) -> None:
        check_choices(self, "evaluation")
        check_input_scale(self.input_scale)


def sum_over_ranks(trainer: L.Trainer, device: torch.device, value: int) -> int:
    """`value` summed over every process of the run (itself when single-process)."""
    total = trainer.strategy.reduce(torch.tensor(float(value), device=device), reduce_op="sum")
    return int(round(float(total)))


class BenchmarkScorer(L.Callback):
    """Scores predictions per benchmark; metric states are sums, so DDP equals single-process.

    cfg: the benchmarks and their scoring; quantization: the model's depth encoding ('auto' alignment
    follows it); run_dir: where `test` writes its files (None: log only); meta: written as
    metrics.json's 'meta' entry after `test` (what the scores are of).
    """

    def __init__(self, cfg: EvalConfig, quantization: str, run_dir: str | Path | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.meta = meta
        protocols = load_protocols(cfg.protocol_file)
        self.depth_protocols = {n: protocols.depth[n] for n in cfg.benchmarks if n in protocols.depth}
        self.normal_protocols = {n: protocols.normal[n] for n in cfg.benchmarks if n in protocols.normal}
        unknown = [n for n in cfg.benchmarks if n not in self.depth_protocols and n not in self.normal_protocols]
        if unknown:
            raise ValueError(f"evaluation.benchmarks: unknown {unknown}; {protocols.source} defines {protocols.names()}")
        self.space = affine_invariant_to_space(quantization) if cfg.alignment == "auto" else cfg.alignment
        policy = cfg.on_bad_sample
        self.depth_metrics = nn.ModuleDict({  # each aligns in self.space and scores the valid pixels only
            n: DepthMetrics(on_bad_sample=policy, space=self.space, min_depth=p.min_depth, max_depth=p.max_depth)
            for n, p in self.depth_protocols.items()})
        self.normal_metrics = nn.ModuleDict({n: NormalMetrics(on_bad_sample=policy) for n in self.normal_protocols})
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.images_logged: dict[str, int] = {}
        self.unpredicted: dict[str, int] = {}
        self._started = 0.0

    # ------------------------------------------------------------------------ epoch start
    def _start(self, module: L.LightningModule) -> None:
        """Fresh metric states on the module's device. reset() also matters beyond tidiness: a callback
        pickled to spawned workers (ddp_spawn) carries its CPU state tensors in SHARED memory, where
        in-place updates would leak between ranks; reset() replaces them with private copies."""
        for metric in (*self.depth_metrics.values(), *self.normal_metrics.values()):
            metric.to(module.device)
            metric.reset()
        self.rows, self.images_logged, self.unpredicted = {}, {}, {}

    def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start(module)

    def on_test_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start(module)

    def on_test_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    # ------------------------------------------------------------------------ per batch
    def on_validation_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update(trainer, module, "val", outputs, batch, dataloader_idx)

    def on_test_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update(trainer, module, "test", outputs, batch, dataloader_idx)

    def _update(self, trainer: L.Trainer, module: L.LightningModule, stage: str, pred: dict[str, torch.Tensor],
                batch: dict[str, Any], dataloader_idx: int) -> None:
        name = getattr(trainer.datamodule, f"{stage}_dataset_names")[dataloader_idx]
        names = list(batch.get("name") or [f"{name}_{i}" for i in range(batch["rgb"].shape[0])])
        kind = "depth" if name in self.depth_protocols else "normal"
        if kind not in pred:
            self.unpredicted[name] = self.unpredicted.get(name, 0) + len(names)
            return
        valid = batch["valid_mask"].bool()
        if kind == "depth":
            metric = self.depth_metrics[name]
            metric.update(pred["depth"], batch["depth"], valid, names=names)
            if stage == "test":
                per_image = metric.batch_values
                for i, sample in enumerate(names):
                    if math.isfinite(float(per_image["abs_rel"][i])):  # skipped bad samples have no row
                        self.rows.setdefault(name, []).append(
                            {"name": sample, **{k: float(v[i]) for k, v in per_image.items()}})
        else:
            self.normal_metrics[name].update(pred["normal"], batch["normal"], valid, names=names)
        if stage == "val":
            self._log_images(trainer, name, pred, module.global_step)

    def _log_images(self, trainer: L.Trainer, name: str, pred: dict[str, torch.Tensor], step: int) -> None:
        count = self.images_logged.get(name, 0)
        logger = trainer.logger
        if count >= self.cfg.log_images or logger is None or not hasattr(logger.experiment, "add_image"):
            return
        if "depth" in pred:
            depth = pred["depth"][0, 0].float()
            lo, hi = depth.min(), depth.max()
            img = ((depth - lo) / (hi - lo).clamp_min(1e-8)).unsqueeze(0).cpu()
            logger.experiment.add_image(f"pred/{name}/depth_{count}", img, step)
        if "normal" in pred:
            rgb = ((pred["normal"][0].float() + 1) / 2).clamp(0, 1).cpu()
            logger.experiment.add_image(f"pred/{name}/normal_{count}", rgb, step)
        self.images_logged[name] = count + 1

    # ------------------------------------------------------------------------ epoch end
    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._finish(trainer, module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        skipped = self._skip_counts(trainer, module)
        results = self._finish(trainer, module, "test")
        if self.run_dir is not None:
            self._write_outputs(trainer, results, skipped)

    def _finish(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> dict[str, dict]:
        """Compute, log and reset every benchmark's metrics; returns {"depth"|"normal": {name: {metric: value}}}."""
        results: dict[str, dict[str, dict[str, float]]] = {"depth": {}, "normal": {}}
        for kind, metrics in (("depth", self.depth_metrics), ("normal", self.normal_metrics)):
            for name, metric in metrics.items():
                if not metric.update_called:
                    continue
                try:
                    values = {k: float(v) for k, v in metric.compute().items()}
                except ValueError as err:  # nothing scored: every sample was skipped as bad
                    raise ValueError(f"benchmark {name}: {err}") from None
                results[kind][name] = values
                for key, value in values.items():
                    if math.isfinite(value):
                        module.log(f"{stage}/{name}/{key}", value, sync_dist=False, add_dataloader_idx=False)
                metric.reset()
        for name, count in self.unpredicted.items():
            kind = "depth" if name in self.depth_protocols else "normals"
            log.warning("%s: %d samples not scored: this model predicts no %s (FE2E/T2I: normals need "
                        "objective.joint_estimation; GenPercept: one task per model, genpercept.task)",
                        name, count, kind)
        return results

    def _skip_counts(self, trainer: L.Trainer, module: L.LightningModule) -> dict[str, dict[str, int]]:
        """Per benchmark: files dropped when it was opened ('unreadable', identical on every rank) and
        samples the metric rejected ('unscored', summed over ranks); read before compute() resets them."""
        opened = dict(getattr(trainer.datamodule, "test_sets", []))
        counts = {}
        for metrics in (self.depth_metrics, self.normal_metrics):
            for name, metric in metrics.items():
                unscored = sum_over_ranks(trainer, module.device, int(metric.num_skipped))
                counts[name] = {"unreadable": int(getattr(opened.get(name), "num_skipped", 0)), "unscored": unscored}
        return counts

    def _write_outputs(self, trainer: L.Trainer, results: dict, skipped: dict[str, dict[str, int]]) -> None:
        rows = self.rows
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, rows)
            rows = {}
            for part in gathered:
                for name, r in part.items():
                    rows.setdefault(name, []).extend(r)
        if trainer.global_rank != 0:
            return
        for name, name_rows in rows.items():
            name_rows = sorted(name_rows, key=lambda r: r["name"])
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(name_rows[0]))
            writer.writeheader()
            writer.writerows(name_rows)
            write_text_atomic(self.run_dir / "eval" / name / "per_sample.csv", text.getvalue())
        path = self.run_dir / "metrics.json"
        data = read_json(path)
        for kind in ("depth", "normal"):
            data.setdefault(kind, {}).update(results[kind])
        if self.meta is not None:
            data["meta"] = self.meta
        data.setdefault("skipped", {}).update(skipped)
        images = sum(len(loader.dataset) for loader in (trainer.test_dataloaders or []))
        data.setdefault("cost", {}).update(eval_seconds=time.perf_counter() - self._started, eval_images=images)
        write_json_atomic(path, data)
