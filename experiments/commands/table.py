"""`table`: the zero-shot depth or normal table over runs, beside the published rows."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.report import write_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=["depth", "normal"])
    parser.add_argument("--runs", required=True, help="comma-separated run folders (each with metrics.json)")
    parser.add_argument("--out", required=True, help="results folder, e.g. results/table-depth")
    parser.add_argument("--no-published", action="store_true", help="leave the published rows out")


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    paths = write_table(args.task, [r for r in args.runs.split(",") if r], out, published=not args.no_published)
    for suffix, path in paths.items():
        path.replace(out / f"table.{suffix}")
    print((out / "table.md").read_text())
