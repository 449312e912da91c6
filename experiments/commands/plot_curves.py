"""`plot-curves`: training-loss curves of any runs, read from their TensorBoard event files."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.report import write_loss_plot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--tag", default="train/loss")
    parser.add_argument("--inset", type=float, default=2.0, help="inset x range in epochs")
    parser.add_argument("--smoothing", type=float, default=0.6, help="EMA weight (0 = raw)")


def run(args: argparse.Namespace) -> None:
    runs = {Path(r).name: r for r in args.runs}
    print(write_loss_plot(runs, args.out, tag=args.tag, inset_epochs=args.inset, smoothing=args.smoothing))
