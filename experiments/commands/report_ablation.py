"""`report-ablation`: table.md/csv/tex, loss_curves.png and features.png of an ablation experiment."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from analysis.report import write_feature_figure, write_loss_plot, write_table
from experiments.run_state import is_replaced_run

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="folder of runs, e.g. runs/ablation-editor-vs-t2i")
    parser.add_argument("--runs", default=None, help="comma-separated run names in plot order (default: all)")
    parser.add_argument("--out", required=True, help="results folder, e.g. results/ablation-editor-vs-t2i")
    parser.add_argument("--inset-epochs", type=float, default=2.0, help="x range of the loss-curve inset")
    parser.add_argument("--smoothing", type=float, default=0.6, help="EMA weight of the plotted curves (0 = raw)")


def experiment_runs(experiment: Path, names: str | None) -> dict[str, Path]:
    """{run name: folder} of the runs of an experiment that have metrics.json, in the requested order
    (by default all of them except old runs a retrain moved aside)."""
    if names:
        runs = {n: experiment / n for n in names.split(",")}
        missing = [str(p) for p in runs.values() if not (p / "metrics.json").is_file()]
        if missing:
            raise FileNotFoundError(f"runs without metrics.json (train and evaluate them first): {missing}")
        return runs
    runs = ({p.name: p for p in sorted(experiment.iterdir())
             if (p / "metrics.json").is_file() and not is_replaced_run(p.name)} if experiment.is_dir() else {})
    if not runs:
        raise FileNotFoundError(f"{experiment}: no runs with metrics.json")
    return runs


def run(args: argparse.Namespace) -> None:
    runs = experiment_runs(Path(args.experiment), args.runs)
    out = Path(args.out)
    paths = write_table("ablation", list(runs.values()), out)
    for suffix, path in paths.items():  # the issue names them table.{md,csv,tex}
        path.replace(out / f"table.{suffix}")
    write_loss_plot(runs, out / "loss_curves.png", inset_epochs=args.inset_epochs, smoothing=args.smoothing,
                    title="Training loss: " + " vs ".join(runs))
    with_features = {n: p for n, p in runs.items() if (p / "features").is_dir()}
    if with_features:
        write_feature_figure(with_features, out / "features.png")
    else:
        log.warning("no run saved feature snapshots (features.blocks empty): features.png not written")
    print((out / "table.md").read_text())
