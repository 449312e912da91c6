"""Zero-shot scoring of predictions on the benchmark dataloaders (SPEC section 7).

`BenchmarkEvaluator` holds one metric object per configured benchmark, aligns depth in the space
that matches the quantization, logs `{stage}/{dataset}/{metric}`, and at test time writes
`eval/{dataset}/per_sample.csv` and `metrics.json` into the run folder.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.choices import check_choices
from lightning_modules.encoding import affine_invariant_to_space
from lightning_modules.files import read_json, write_json_atomic, write_text_atomic
from lightning_modules.metrics import (
    DepthMetrics,
    NormalMetrics,
    load_protocols,
)
from lightning_modules.metrics.depth import OnBadSample
from lightning_modules.metrics.pixels import AlignmentSpace
from lightning_modules.metrics.protocol import DEFAULT_PROTOCOL_FILE

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
    protocol_file: str = str(DEFAULT_PROTOCOL_FILE)
    """YAML table of per-benchmark protocols (valid range, crop, input size, alignment)."""
    alignment: Alignment = "auto"
    """Depth alignment: 'auto' = the space matching the quantization (log -> log), or an explicit one."""
    input_scale: float = 1.0
    """Scale of FE2E's model input size per benchmark (each side rounded to a multiple of 16);
    1.0 = the paper's buckets, the CPU demo uses 0.25."""
    image_latent: Literal["mode", "sample"] = "mode"
    """Image latent the model is conditioned on at evaluation: 'mode' of the VAE posterior
    (deterministic, the default) or a 'sample' from it, seeded per sample, as FE2E's released
    evaluation code does (use it to score the released LoRA exactly as its authors did)."""
    on_bad_sample: OnBadSample = "raise"
    """'raise' or 'skip' (counted and logged) for a prediction with NaN or a sample with no valid pixel."""
    output_dir: str | None = None
    """Run folder for per-sample CSVs and metrics.json (set by the command line)."""
    log_images: int = 1
    """Predicted depth/normal images per dataset and validation epoch logged to TensorBoard."""

    def __post_init__(self) -> None:
        check_choices(self, "evaluation")
        if not 0 < self.input_scale <= 4:
            raise ValueError(f"input_scale must be in (0, 4], got {self.input_scale}")


def bucket_size(height: int, width: int) -> tuple[int, int]:
    """FE2E's resize bucket, as (H, W), for an input of this size (SPEC section 7).

    Buckets compare width and height separately: W<=1024 and H<=768 -> 1024x768 (e.g. NYUv2 640x480);
    W<=1280 and H<=960 -> 1216x352 (KITTI 1242x375); anything larger -> 864x576 (ETH3D 6048x4032).
    """
    if width <= 1024 and height <= 768:
        return (768, 1024)
    if width <= 1280 and height <= 960:
        return (352, 1216)
    return (576, 864)


class BenchmarkEvaluator(nn.Module):
    """Scores predictions per benchmark; metric states are sums, so DDP equals single-process."""

    def __init__(self, cfg: EvalConfig, quantization: str) -> None:
        super().__init__()
        self.cfg = cfg
        protocols = load_protocols(cfg.protocol_file)
        self.depth_protocols = {n: protocols.depth[n] for n in cfg.benchmarks if n in protocols.depth}
        self.normal_protocols = {n: protocols.normal[n] for n in cfg.benchmarks if n in protocols.normal}
        unknown = [n for n in cfg.benchmarks if n not in self.depth_protocols and n not in self.normal_protocols]
        if unknown:
            raise ValueError(f"evaluation.benchmarks: unknown {unknown}; {cfg.protocol_file} defines "
                             f"{sorted(protocols.depth) + sorted(protocols.normal)}")
        self.space = affine_invariant_to_space(quantization) if cfg.alignment == "auto" else cfg.alignment
        policy = cfg.on_bad_sample
        self.depth_metrics = nn.ModuleDict({  # each aligns in self.space and scores the valid pixels only
            n: DepthMetrics(on_bad_sample=policy, space=self.space, min_depth=p.min_depth, max_depth=p.max_depth)
            for n, p in self.depth_protocols.items()})
        self.normal_metrics = nn.ModuleDict({n: NormalMetrics(on_bad_sample=policy) for n in self.normal_protocols})
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.images_logged: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    # ------------------------------------------------------------------------ per batch
    @staticmethod
    def dataset_name(stage: str, dataloader_idx: int, trainer) -> str:
        names = getattr(trainer.datamodule, f"{stage}_dataset_names")
        return names[dataloader_idx]

    def model_input(self, name: str | None, rgb: torch.Tensor) -> torch.Tensor:
        """RGB resized (bilinear) to the model's input size for this benchmark (times input_scale)."""
        if name in self.depth_protocols:
            size = tuple(self.depth_protocols[name].input_size)
        elif name in self.normal_protocols:
            size = tuple(self.normal_protocols[name].input_size)
        else:
            size = bucket_size(*rgb.shape[-2:])
        size = tuple(max(16, int(round(s * self.cfg.input_scale / 16)) * 16) for s in size)
        if tuple(rgb.shape[-2:]) == size:
            return rgb
        return F.interpolate(rgb, size=size, mode="bilinear", align_corners=False).clamp(-1, 1)

    def update(self, name: str, pred: dict[str, torch.Tensor], batch: dict[str, Any], module,
               keep_rows: bool = False) -> None:
        """Score one batch; keep_rows also collects per-image depth rows for per_sample.csv (test only)."""
        names = list(batch.get("name") or [f"{name}_{i}" for i in range(batch["rgb"].shape[0])])
        kind = "depth" if name in self.depth_protocols else "normal"
        if kind not in pred:
            self.skipped[name] = self.skipped.get(name, 0) + len(names)
            return
        if kind == "depth":
            self._update_depth(name, pred["depth"], batch, names, keep_rows)
        else:
            self.normal_metrics[name].update(pred["normal"], batch["normal"], batch["valid_mask"].bool(), names=names)
        self._log_images(name, pred, module)

    def _update_depth(self, name: str, pred: torch.Tensor, batch: dict[str, Any], names: list[str],
                      keep_rows: bool) -> None:
        metric = self.depth_metrics[name]
        metric.update(pred, batch["depth"], batch["valid_mask"].bool(), names=names)
        if keep_rows and self.cfg.output_dir is not None:
            per_image = metric.batch_values
            for i, sample in enumerate(names):
                if math.isfinite(float(per_image["abs_rel"][i])):  # skipped bad samples have no row
                    row = {"name": sample}
                    row.update({k: float(v[i]) for k, v in per_image.items()})
                    self.rows.setdefault(name, []).append(row)

    def _log_images(self, name: str, pred: dict[str, torch.Tensor], module) -> None:
        count = self.images_logged.get(name, 0)
        logger = getattr(module, "logger", None)
        if count >= self.cfg.log_images or logger is None or not hasattr(logger.experiment, "add_image"):
            return
        if "depth" in pred:
            depth = pred["depth"][0, 0].float()
            lo, hi = depth.min(), depth.max()
            img = ((depth - lo) / (hi - lo).clamp_min(1e-8)).unsqueeze(0).cpu()
            logger.experiment.add_image(f"pred/{name}/depth_{count}", img, module.global_step)
        if "normal" in pred:
            rgb = ((pred["normal"][0].float() + 1) / 2).clamp(0, 1).cpu()
            logger.experiment.add_image(f"pred/{name}/normal_{count}", rgb, module.global_step)
        self.images_logged[name] = count + 1

    # ------------------------------------------------------------------------ per epoch
    def start(self) -> None:
        """Fresh metric states for this process. Needed beyond tidiness: a module pickled to spawned
        workers (ddp_spawn) carries its CPU state tensors in SHARED memory, where in-place updates
        would leak between ranks; reset() replaces them with private copies."""
        for metric in (*self.depth_metrics.values(), *self.normal_metrics.values()):
            metric.reset()
        self.rows, self.images_logged, self.skipped = {}, {}, {}

    def finish(self, stage: str, module) -> dict[str, dict[str, dict[str, float]]]:
        """Compute, log and reset every benchmark's metrics; at test time also write the files."""
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
        for name, count in self.skipped.items():
            kind = "depth" if name in self.depth_protocols else "normals"
            log.warning("%s: %d samples not scored: this model predicts no %s (FE2E/T2I: normals need "
                        "objective.joint_estimation; GenPercept: one task per model, genpercept.task)",
                        name, count, kind)
        if stage == "test" and self.cfg.output_dir is not None:
            self._write_outputs(results, module)
        self.rows, self.images_logged, self.skipped = {}, {}, {}
        return results

    def _write_outputs(self, results: dict, module) -> None:
        rows = self.rows
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, rows)
            rows = {}
            for part in gathered:
                for name, r in part.items():
                    rows.setdefault(name, []).extend(r)
        if module.global_rank != 0:
            return
        out = Path(self.cfg.output_dir)
        for name, name_rows in rows.items():
            name_rows = sorted(name_rows, key=lambda r: r["name"])
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(name_rows[0]))
            writer.writeheader()
            writer.writerows(name_rows)
            write_text_atomic(out / "eval" / name / "per_sample.csv", text.getvalue())
        metrics_path = out / "metrics.json"
        existing = read_json(metrics_path)
        for kind in ("depth", "normal"):
            existing.setdefault(kind, {}).update(results[kind])
        write_json_atomic(metrics_path, existing)
