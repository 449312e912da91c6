"""`preprocess`: decode the raw Hypersim release once into a cache that reads faster (same samples)."""

from __future__ import annotations

import argparse

from datamodules.hypersim import preprocess_hypersim


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hypersim", required=True, help="raw Hypersim root (with metadata_images_split_scene_v1.csv)")
    parser.add_argument("--out", required=True, help="cache folder (give it to data config as the Hypersim cache_dir)")
    parser.add_argument("--split", default="train", choices=["train", "val", "test"])
    parser.add_argument("--max-invalid-fraction", type=float, default=0.01,
                        help="drop frames with more invalid pixels than this (SPEC: 1%%)")
    parser.add_argument("--on-bad-sample", default="raise", choices=["raise", "skip"])


def run(args: argparse.Namespace) -> None:
    out = preprocess_hypersim(args.hypersim, args.out, split=args.split,
                              max_invalid_fraction=args.max_invalid_fraction, on_bad_sample=args.on_bad_sample)
    print(out)
