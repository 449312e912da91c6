"""report: run folders -> table files, loss plot and feature figure."""

import json
import re

import numpy as np
from matplotlib import image as mpimg
from torch.utils.tensorboard import SummaryWriter

from analysis.report import write_feature_figure, write_loss_plot, write_table


def _run(root, name, abs_rel):
    d = root / name
    d.mkdir(parents=True)
    meta = {"method": "fe2e", "backbone": f"tiny-{name}", "data": "synthetic", "steps": 8, "run": f"exp/{name}"}
    (d / "metrics.json").write_text(json.dumps({"meta": meta, "depth": {"kitti": {"abs_rel": abs_rel, "delta1": 0.5}}}))
    w = SummaryWriter(str(d))
    for s in range(8):
        w.add_scalar("train/loss", 1.0 / (s + 1), s)
        w.add_scalar("epoch", s // 4, s)
    w.close()
    feats = d / "features"
    feats.mkdir()
    for e in (1, 2):
        np.savez(feats / f"epoch_{e:03d}.npz", **{"block:single.1": np.arange(4.0).reshape(2, 2),
                                                  "depth": np.ones((8, 8))})
    return d


def test_report_end_to_end(tmp_path):
    runs = {"editor": _run(tmp_path, "editor", 0.2), "generator": _run(tmp_path, "generator", 0.3)}
    paths = write_table("depth", list(runs.values()), tmp_path / "results", published=False)
    md = re.sub(" +", " ", paths["md"].read_text())  # column padding collapsed
    assert "| fe2e (exp/editor) | synthetic | - | - | 20.0 | 50.0 |" in md
    assert "backbone=tiny-generator, data=synthetic, steps=8" in md
    assert "rank" in paths["csv"].read_text().splitlines()[0]
    assert paths["tex"].read_text().startswith("\\begin{table}")
    png = write_loss_plot(runs, tmp_path / "results" / "loss.png", inset_epochs=1)
    assert mpimg.imread(png).shape[:2] == (600, 960)  # default figsize (8, 5) at 120 dpi
    fig = write_feature_figure(runs, tmp_path / "results" / "features.png")
    assert mpimg.imread(fig).shape[0] > 100


def test_cost_table_per_sample_figures(tmp_path):
    import json
    import math

    from analysis.report import cost_table

    for name, cost in {"a": {"trainable_parameters": 10, "train_seconds": 30.0, "train_samples": 60,
                             "train_resumed": False, "eval_seconds": 8.0, "eval_images": 16},
                       "b": {"trainable_parameters": 5, "train_seconds": 30.0, "train_samples": 60,
                             "train_resumed": True}}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"cost": cost}))
    df = cost_table({"a": tmp_path / "a", "b": tmp_path / "b"}).set_index("run")
    assert df.loc["a", "train_ms_per_sample"] == 500 and df.loc["a", "inference_ms_per_image"] == 500
    assert math.isnan(df.loc["b", "train_ms_per_sample"]) and math.isnan(df.loc["b", "inference_ms_per_image"])
