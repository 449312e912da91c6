"""End-to-end smoke tests of the user-facing Make targets on the embedded default (slow: minutes).

Each runs in a copy of the tracked tree that shares this checkout's .venv, with one epoch of training.
Run them with `make test-slow`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    dst = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst / rel)
    (dst / ".venv").symlink_to(REPO / ".venv")
    return dst


def make(workdir: Path, *args: str) -> None:
    # -o: never rebuild the SHARED .venv from the copy (that would repoint its editable install at a temp folder)
    result = subprocess.run(["make", "-o", ".venv/.installed", *args, "MAX_EPOCHS=1"], cwd=workdir, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_ablation_editor_vs_t2i(workdir):
    make(workdir, "ablation-editor-vs-t2i")
    out = workdir / "results/ablation-editor-vs-t2i"
    for name in ("table.md", "table.csv", "loss_curves.png", "features.png"):
        assert (out / name).stat().st_size > 0
    table = (out / "table.md").read_text()
    assert "mini-editor" in table and "mini-generator" in table and "SMOKE SCALE" in table  # the shipped priors
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_seeds"] == 3 and set(summary["arms"]) == {"random", "generator", "editor", "editor-norelight"}
    assert "95% CI" in (out / "report.md").read_text() and summary["ci_low"] <= summary["mean"] <= summary["ci_high"]


@pytest.mark.slow
def test_table_depth_and_normal(workdir):
    make(workdir, "table-depth")
    make(workdir, "table-normal")
    depth = (workdir / "results/table-depth/table.md").read_text()
    normal = (workdir / "results/table-normal/table.md").read_text()
    assert "DIODE" in depth and "Marigold" in depth and "SMOKE SCALE" in depth
    assert "Sintel" in normal and "DSINE" in normal
    # every method's default run beside the published rows (GenPercept's trained first when missing)
    assert "genpercept (genpercept/genpercept)" in depth and "MERGE-L" in depth
    assert "genpercept (genpercept/genpercept-normal)" in normal and "MERGE-L" in normal


@pytest.mark.slow
def test_genpercept(workdir):
    make(workdir, "genpercept")
    for run in ("genpercept", "genpercept-normal"):
        assert (workdir / f"runs/genpercept/{run}/checkpoints/last.ckpt").is_file(), run
    assert "kitti" in (workdir / "runs/genpercept/genpercept/metrics.json").read_text()
    assert "nyuv2_normal" in (workdir / "runs/genpercept/genpercept-normal/metrics.json").read_text()


@pytest.mark.slow
def test_ablation_fe2e(workdir):
    make(workdir, "ablation-fe2e")
    table = (workdir / "results/ablation-fe2e/table.md").read_text()
    ours = [line for line in table.splitlines() if line.startswith("|") and "(ablation-fe2e/row" in line]
    assert len(ours) == 9 and {f"row{i})" for i in range(1, 10)} == {line.split("/")[1].split(" ")[0] for line in ours}


def test_released_lora_is_scored_as_fe2e_evaluates_it(tmp_path):
    """`make table-depth WEIGHTS=...` scores the released LoRA with a sampled image latent and the
    connector at its built-in sigma * 1000 (no override): the command it runs loads to that config."""
    from experiments.config import load_experiment

    dry = subprocess.run(["make", "-n", "table-depth", f"WEIGHTS={tmp_path}"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    line = next(x for x in dry.splitlines() if "--adapter" in x)
    assert "connector_time_scale" not in dry
    words = line.split()
    files = [REPO / words[i + 1] for i, w in enumerate(words) if w == "--config"]
    overrides = [w for w in words if "=" in w and not w.startswith("-")]
    cfg = load_experiment(files, overrides)
    assert cfg.evaluation.image_latent == "sample" and cfg.backbone.name == "step1x-edit"


@pytest.mark.slow
def test_merge(workdir):
    make(workdir, "merge")
    run = workdir / "runs/merge/merge"
    assert json.loads((run / "merge_frozen_base.json").read_text())["identical"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["meta"]["method"] == "merge" and {"kitti", "eth3d"} <= set(metrics["depth"])
    assert (workdir / "results/merge/generate.png").stat().st_size > 0


def test_ablation_paradigms_runs_share_data_order_and_budget():
    """The four paradigms' training commands, as the recipe's shell expands them, load to configs with
    one seed, data config and epoch budget."""
    from experiments.config import load_experiment

    out = subprocess.run(["make", "-s", "-o", ".venv/.installed", "-o", "data/synthetic/SYNTHETIC.txt",
                          "ablation-paradigms", "RUN=echo RUNCMD"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    trains = [line.split()[2:] for line in out.splitlines() if line.startswith("RUNCMD train")]
    cfgs = []
    for words in trains:
        files = [REPO / words[i + 1] for i, w in enumerate(words) if w == "--config"]
        cfgs.append(load_experiment(files, [w for w in words if "=" in w and not w.startswith("-")]))
    assert [c.method for c in cfgs] == ["fe2e", "t2i", "genpercept", "merge"]
    assert len({(c.seed, c.data.seed, c.trainer.max_epochs, c.data.batch_size, c.data.hypersim_root)
                for c in cfgs}) == 1
    assert all(c.trainer.limit_val_batches == 0 and c.run_dir.parent.name == "ablation-paradigms" for c in cfgs)
