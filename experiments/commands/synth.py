"""`synth`: procedural scenes in every real on-disk format (the embedded default data).

Refuses (exit 2) a non-empty --out folder without its SYNTHETIC.txt marker: it never deletes what it did not write.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from experiments.synthetic_data import PRESETS, write_synthetic_root

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (gets hypersim/, vkitti2/, eval/)")
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS),
                        help="how many frames at which resolution (demo: tens of frames, reduced sizes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true",
                        help="rewrite even if the folder is complete (a folder synth did not write is never replaced)")


def run(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    out = write_synthetic_root(Path(args.out), args.preset, args.seed, force=args.force)
    log.info("synthetic data in %s (%.1f s)", out, time.perf_counter() - start)
