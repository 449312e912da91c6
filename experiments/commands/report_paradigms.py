"""`report-paradigms`: FE2E, the T2I baseline, GenPercept and MERGE side by side (make ablation-paradigms).

Writes into --out: depth.{md,csv,tex} (with the published rows and average rank), loss_curves.png,
cost.md / cost.csv (trainable parameters, train milliseconds per sample, inference milliseconds per image).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="folder of the runs, e.g. runs/ablation-paradigms")
    parser.add_argument("--runs", default="fe2e,t2i,genpercept,merge", help="comma-separated run names")
    parser.add_argument("--out", required=True, help="results folder, e.g. results/ablation-paradigms")


def run(args: argparse.Namespace) -> None:
    from analysis.report import cost_table, write_loss_plot, write_table
    from analysis.writers import to_csv, to_markdown

    runs = {name: Path(args.experiment) / name for name in args.runs.split(",") if name}
    missing = [str(p) for p in runs.values() if not (p / "metrics.json").is_file()]
    if missing:
        raise FileNotFoundError(f"runs without metrics.json (train and evaluate them first): {missing}")
    out = Path(args.out)
    write_table("depth", list(runs.values()), out)
    write_loss_plot(runs, out / "loss_curves.png", title="train/loss (GenPercept's is a pixel-space loss: "
                    "compare shapes, not levels)")
    costs = cost_table(runs)
    to_markdown(costs, path=out / "cost.md")
    to_csv(costs, path=out / "cost.csv")
    print((out / "depth.md").read_text())
    print((out / "cost.md").read_text())
