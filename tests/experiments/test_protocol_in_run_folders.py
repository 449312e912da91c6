"""No run folder freezes a protocol path; run folders that did (before the table moved) still work unchanged."""

from __future__ import annotations

import logging

from omegaconf import OmegaConf

from datamodules.benchmarks.protocol import PACKAGED_PROTOCOL_FILE, load_protocols
from experiments.config import CONFIG_DIR, load_experiment
from experiments.datasets import benchmark_factories
from experiments.run_state import FINISHED_FILE, plan_run
from experiments.runner import write_run_metadata
from experiments.scoring import BenchmarkScorer

FE2E = str(CONFIG_DIR / "fe2e.yaml")
OLD_DEFAULT = "/work/main/experiments/configs/eval/benchmarks.yaml"
"""evaluation.protocol_file as run folders written before the move hold it."""


def finished_run(tmp_path, data_overrides, protocol_file: str | None):
    """A finished fe2e run folder whose config.yaml names `protocol_file` (None: as written today)."""
    base = [f"runs_dir={tmp_path / 'runs'}", *data_overrides]
    cfg = load_experiment([FE2E], base)
    write_run_metadata(cfg)
    path = cfg.run_dir / "config.yaml"
    if protocol_file is not None:
        node = OmegaConf.load(path)
        node.evaluation.protocol_file = protocol_file
        path.write_text(OmegaConf.to_yaml(node))
    (cfg.run_dir / FINISHED_FILE).write_text("{}")
    return base, path


def test_config_yaml_holds_no_protocol_path(tmp_path, data_overrides):
    _, path = finished_run(tmp_path, data_overrides, None)
    assert OmegaConf.load(path).evaluation.protocol_file is None
    assert "benchmarks.yaml" not in path.read_text()


def test_old_run_with_the_frozen_old_path_is_kept_by_make(tmp_path, data_overrides):
    base, _ = finished_run(tmp_path, data_overrides, OLD_DEFAULT)
    plan = plan_run(load_experiment([FE2E], [*base, "existing_run=keep"]))
    assert plan.action == "keep", plan.reason


def test_a_run_with_its_own_protocol_file_is_a_changed_config(tmp_path, data_overrides):
    base, _ = finished_run(tmp_path, data_overrides, str(tmp_path / "mine.yaml"))
    plan = plan_run(load_experiment([FE2E], [*base, "existing_run=keep"]))
    assert plan.action == "fresh" and "evaluation.protocol_file" in plan.reason


def test_old_config_yaml_loads_and_scores_with_the_packaged_table(tmp_path, data_overrides, caplog):
    _, path = finished_run(tmp_path, data_overrides, OLD_DEFAULT)
    cfg = load_experiment([path])
    assert cfg.evaluation.protocol_file == OLD_DEFAULT
    with caplog.at_level(logging.INFO):
        factories = dict(benchmark_factories(cfg))
    assert OLD_DEFAULT in caplog.text and str(PACKAGED_PROTOCOL_FILE) in caplog.text
    packaged = load_protocols()
    assert factories["kitti"].args[2] == packaged.depth["kitti"]
    assert factories["nyuv2_normal"].args[2] == packaged.normal["nyuv2_normal"]
    scorer = BenchmarkScorer(cfg.evaluation, cfg.quantization)
    assert scorer.depth_protocols == {n: packaged.depth[n] for n in ("kitti", "eth3d")}
    assert scorer.normal_protocols == {"nyuv2_normal": packaged.normal["nyuv2_normal"]}
