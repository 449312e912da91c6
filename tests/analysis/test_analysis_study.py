"""The study report's numbers from hand-made run folders (events, metrics.json, per-sample CSVs)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from torch.utils.tensorboard import SummaryWriter

from analysis.study import convergence, final_metrics, paired_matrix, plot_loss_bands, study_runs, study_verdict

SEEDS = (0, 1, 2)
IMAGES = [f"img{i:02d}" for i in range(12)]


def _write_run(root, arm, seed, loss, val, per_image, kitti=(0.2, 0.7), drop=None):
    run = root / f"{arm}-s{seed}"
    w = SummaryWriter(str(run))
    for step, value in enumerate(loss):
        w.add_scalar("train/loss", value, step)
    for step, value in val:
        w.add_scalar("val/kitti/abs_rel", value, step)
    w.close()
    names = [n for n in IMAGES if n != drop]
    (run / "eval/kitti").mkdir(parents=True)
    pd.DataFrame({"name": names, "abs_rel": [per_image[IMAGES.index(n)] for n in names]}).to_csv(
        run / "eval/kitti/per_sample.csv", index=False)
    (run / "metrics.json").write_text(json.dumps({"depth": {"kitti": {"abs_rel": kitti[0], "delta1": kitti[1]}}}))


@pytest.fixture
def study(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.3, len(IMAGES))
    for s in SEEDS:
        noise = rng.normal(0, 0.002, len(IMAGES))
        _write_run(tmp_path, "generator", s, [1.0, 0.8, 0.9, 0.6, 0.7], [(2, 0.30), (4, 0.25)], base + noise,
                   kitti=(0.25, 0.70 + 0.01 * s))
        _write_run(tmp_path, "editor", s, [1.0, 0.6, 0.5, 0.4, 0.35], [(2, 0.24), (4, 0.20)], base - 0.05 + noise,
                   kitti=(0.20, 0.80), drop="img03" if s == 1 else None)
    return study_runs(tmp_path, ["editor", "generator"], SEEDS)


def test_paired_matrix_aligns_by_name_and_drops_unscored_images(study):
    a, b = paired_matrix(study, "editor", "generator", SEEDS, "kitti")
    assert a.shape == b.shape == (3, 11)  # img03 missing from one editor run
    np.testing.assert_allclose(a - b, -0.05, atol=1e-12)


def test_verdict_is_computed_from_the_per_image_differences(study):
    line, numbers = study_verdict(study, SEEDS, "kitti", n_boot=2000)
    assert line.startswith("editor better") and numbers["ci_high"] < 0
    assert numbers["mean"] == pytest.approx(-0.05) and numbers["n_images"] == 11


def test_convergence_numbers(study):
    per_run, summary = convergence(study, ["editor", "generator"], SEEDS, "kitti", reference_arm="generator")
    ed = per_run[per_run["arm"] == "editor"].iloc[0]
    # editor loss 1, .6, .5, .4, .35 over steps 0..4: trapezoids .8 + .55 + .45 + .375 = 2.175 over 4 steps
    assert ed["loss_area"] == pytest.approx(2.175 / 4)
    diffs = np.diff([1.0, 0.6, 0.5, 0.4, 0.35])
    assert ed["loss_oscillation"] == pytest.approx(diffs.std(ddof=1))
    # generator's final val AbsRel is 0.25: the editor reaches it at its first validation (step 2, 0.24)
    assert ed["steps_to_reference"] == 2
    assert per_run[per_run["arm"] == "generator"]["steps_to_reference"].tolist() == [4, 4, 4]
    assert summary.loc["editor", "final_loss_mean"] == pytest.approx(0.35)


def test_final_metrics_and_band_plot(study, tmp_path):
    table = final_metrics(study, ["editor", "generator"], SEEDS, ["kitti"])
    gen = table[table["arm"] == "generator"].iloc[0]
    assert gen["abs_rel_mean"] == pytest.approx(25.0) and gen["delta1_mean"] == pytest.approx(71.0)
    assert gen["delta1_std"] == pytest.approx(math.sqrt(((70 - 71) ** 2 + 0 + (72 - 71) ** 2) / 2))
    png = plot_loss_bands(study, ["editor", "generator"], SEEDS, tmp_path / "bands.png")
    assert png.stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="random-s0"):
        study_runs(tmp_path, ["random"], [0])
