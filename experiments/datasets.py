"""The datamodule of an experiment: training sources from `data`, benchmarks from `evaluation`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from datamodules.benchmarks import DepthBenchmark, NormalBenchmark
from datamodules.benchmarks.protocol import load_protocols
from datamodules.geometry_datamodule import GeometryDataModule
from experiments.config import ExperimentConfig


def benchmark_factories(cfg: ExperimentConfig) -> list[tuple[str, object]]:
    """(name, zero-argument factory) per configured benchmark; datasets open lazily in `setup`."""
    ev = cfg.evaluation
    if not ev.benchmarks:
        return []
    if ev.root is None:
        raise ValueError("evaluation.root is not set: the folder holding the benchmarks "
                         "(Marigold tars + data_split/, DSINE dsine_eval/)")
    if not Path(ev.root).is_dir():
        raise FileNotFoundError(f"evaluation.root: {ev.root} is not a folder")
    protocols = load_protocols(ev.protocol_file)
    out = []
    for name in ev.benchmarks:
        if name in protocols.depth:
            out.append((name, partial(DepthBenchmark, name, ev.root, protocols.depth[name],
                                      on_bad_sample=ev.on_bad_sample, input_scale=ev.input_scale)))
        elif name in protocols.normal:
            out.append((name, partial(NormalBenchmark, name, ev.root, protocols.normal[name],
                                      on_bad_sample=ev.on_bad_sample, input_scale=ev.input_scale)))
        else:
            raise ValueError(f"evaluation.benchmarks: unknown '{name}'; {protocols.source} defines {protocols.names()}")
    return out


def build_datamodule(cfg: ExperimentConfig, stage: str = "fit") -> GeometryDataModule:
    """Training + validation benchmarks for stage 'fit'; the benchmarks as test sets for 'test'."""
    benchmarks = benchmark_factories(cfg)
    if stage == "test":
        return GeometryDataModule(cfg.data, test_datasets=benchmarks)
    return GeometryDataModule(cfg.data, val_datasets=benchmarks)
