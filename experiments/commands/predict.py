"""`predict`: depth (and normal) maps for one image or a folder of images.

Output convention (also written to OUTPUT/CONVENTIONS.txt):
- {stem}_depth.npy: float32 (H, W) affine-invariant depth in [0, 1] in the model's quantization space
  (log depth for FE2E: larger = farther); align it to metric depth with a scale and shift in that space.
- {stem}_depth.png: the same as 16-bit PNG, value * 65535.
- {stem}_depth_color.png: colourised for viewing (Spectral colormap, near = red).
- {stem}_normal.png: 8-bit RGB = (n + 1) / 2 * 255 of unit normals in the camera frame with x LEFT,
  y UP, z TOWARD the camera (only for models that predict normals).
--outputs npy,png,color,normal picks which of these are written (all by default).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from experiments import prediction_writer
from experiments.checkpoints import locate_run
from experiments.config import load_experiment
from experiments.runner import build_module, load_trained_weights

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run folder or .ckpt")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="output folder")
    prediction_writer.add_arguments(parser)
    parser.add_argument("overrides", nargs="*", metavar="key=value")


def list_images(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            return images
        raise FileNotFoundError(f"--input {path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
    raise FileNotFoundError(f"--input {path}: no such file or folder")


def load_rgb(path: Path) -> torch.Tensor:
    """(1,3,H,W) float32 in [-1, 1]."""
    try:
        arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    except OSError as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    return torch.from_numpy(arr).permute(2, 0, 1)[None] * 2 - 1


def run(args: argparse.Namespace) -> None:
    outputs = prediction_writer.parse_outputs(args.outputs)  # bad values: exit 2 before the model loads
    prediction_writer.check_png_compression(args.png_compression)
    run_dir, ckpt = locate_run(args.checkpoint)
    cfg = load_experiment([run_dir / "config.yaml"], args.overrides)
    module = build_module(cfg)
    if ckpt is not None:
        load_trained_weights(module, ckpt)
    else:
        module.configure_model()
    module.eval()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "CONVENTIONS.txt").write_text(__doc__.split("Output convention (also written to OUTPUT/CONVENTIONS.txt):\n")[1])
    with prediction_writer.PredictionWriter(out, outputs, args.png_compression) as writer:
        for path in list_images(Path(args.input)):
            rgb = load_rgb(path)
            pred = module.predict_native(rgb)
            writer.submit(path.stem, pred)  # encoded and written by the writer thread
            log.info("%s -> %s/%s_*", path, out, path.stem)
