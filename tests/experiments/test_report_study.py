"""`report-study` end to end on hand-made run folders: verdict line, report files, TensorBoard bands."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from torch.utils.tensorboard import SummaryWriter

from experiments.__main__ import main


def _run(root, arm, seed, per_image, loss, cost=None):
    run = root / f"{arm}-s{seed}"
    w = SummaryWriter(str(run))
    for step, v in enumerate(loss):
        w.add_scalar("train/loss", v, step)
    w.add_scalar("val/kitti/abs_rel", float(np.mean(per_image)), len(loss) - 1)
    w.close()
    (run / "eval/kitti").mkdir(parents=True)
    pd.DataFrame({"name": [f"i{k}" for k in range(len(per_image))], "abs_rel": per_image}).to_csv(
        run / "eval/kitti/per_sample.csv", index=False)
    (run / "metrics.json").write_text(json.dumps({"depth": {"kitti": {"abs_rel": float(np.mean(per_image)),
                                                                      "delta1": 0.8}}, "cost": cost or {}}))


def test_report_study_writes_the_verdict_from_the_data(tmp_path, capsys):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.1, 0.3, 10)
    for s in range(3):
        _run(tmp_path / "runs", "generator", s, base + rng.normal(0, 0.01, 10), [1.0, 0.9, 0.8],
             {"train_seconds": 50.0 + s, "eval_seconds": 2.0, "train_resumed": False})
        _run(tmp_path / "runs", "editor", s, base + rng.normal(0, 0.01, 10), [1.0, 0.7, 0.6],
             {"train_seconds": 40.0, "eval_seconds": 1.5 * s, "train_resumed": s == 2})
    out = tmp_path / "results"
    code = main(["report-study", str(tmp_path / "runs"), "--arms", "editor,generator", "--reference", "generator",
                 "--benchmarks", "kitti", "--out", str(out)])
    assert code == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    # same base, independent noise: nothing to detect
    assert line.startswith("no detectable difference") and "minimal detectable effect" in line
    report = (out / "report.md").read_text()
    assert line in report and "neither confirms nor refutes" in report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 10 and "## Compute" in report
    # generator: 50 + 51 + 52 s of training, 3 x 2 s of evaluation; editor: seed 2 resumed (its time is partial)
    assert summary["compute_seconds"]["generator"] == {"train_s": 153.0, "eval_s": 6.0}
    assert np.isnan(summary["compute_seconds"]["editor"]["train_s"]) and summary["compute_seconds"]["editor"]["eval_s"] == 4.5
    assert list((out / "tensorboard").glob("events.out.tfevents.*")) and (out / "loss_curves.png").is_file()
    assert main(["report-study", str(tmp_path / "runs"), "--arms", "editor", "--compare", "editor,generator",
                 "--out", str(out)]) == 2
