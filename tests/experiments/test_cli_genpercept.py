"""GenPercept through the command line: train -> evaluate -> table, its row beside the published ones."""

from __future__ import annotations

import json

from experiments.__main__ import main
from experiments.config import CONFIG_DIR


def test_genpercept_run_appears_in_the_depth_table(tmp_path, data_overrides):
    runs = tmp_path / "runs"
    assert main(["train", "--config", str(CONFIG_DIR / "genpercept.yaml"), *data_overrides, f"runs_dir={runs}",
                 "trainer.max_steps=2", "evaluation.benchmarks=[]", "features.blocks=[]"]) == 0
    run = runs / "genpercept" / "genpercept"
    assert main(["evaluate", "--checkpoint", str(run), "--benchmarks", "kitti"]) == 0
    meta = json.loads((run / "metrics.json").read_text())["meta"]
    assert meta["method"] == "genpercept" and meta["objective"]["method"] == "genpercept"
    assert meta["objective"]["grad_axes"] == "released" and meta["steps"] == 2
    assert main(["table", "depth", "--runs", str(run), "--out", str(tmp_path / "depth")]) == 0
    rows = [line for line in (tmp_path / "depth/table.md").read_text().splitlines() if line.startswith("|")]
    ours = [r for r in rows if "genpercept (genpercept/genpercept)" in r]
    assert len(ours) == 1 and ours[0].count(" - ") >= 8  # KITTI scored; the four other benchmarks shown as '-'
    assert any(r.startswith("| GenPercept") for r in rows) and any(r.startswith("| MERGE-L") for r in rows)
