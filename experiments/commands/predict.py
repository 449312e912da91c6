"""`predict`: depth (and normal) maps for one image or a folder of images.

Output convention (also written to OUTPUT/CONVENTIONS.txt):
- {stem}_depth.npy (models that predict depth): float32 (H, W) affine-invariant depth in [0, 1] in the model's quantization space
  (log depth for FE2E: larger = farther); align it to metric depth with a scale and shift in that space.
- {stem}_depth.png: the same as 16-bit PNG, value * 65535.
- {stem}_depth_color.png: colourised for viewing (Spectral colormap, near = red).
- {stem}_normal.png: 8-bit RGB = (n + 1) / 2 * 255 of unit normals in the camera frame with x LEFT,
  y UP, z TOWARD the camera (only for models that predict normals).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from experiments.checkpoints import locate_run
from experiments.config import load_experiment
from experiments.runner import build_module, load_trained_weights

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run folder or .ckpt")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="output folder")
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


def write_prediction(out: Path, stem: str, pred: dict[str, torch.Tensor]) -> None:
    """The depth files when the model predicts depth, the normal PNG when it predicts normals (a
    GenPercept model predicts one of the two)."""
    if "depth" in pred:
        depth = pred["depth"][0, 0].float().clamp(0, 1).cpu().numpy()
        np.save(out / f"{stem}_depth.npy", depth.astype(np.float32))
        Image.fromarray((depth * 65535 + 0.5).astype(np.uint16)).save(out / f"{stem}_depth.png")
        colour = colormaps["Spectral"](depth)[..., :3]
        Image.fromarray((colour * 255 + 0.5).astype(np.uint8)).save(out / f"{stem}_depth_color.png")
    if "normal" in pred:
        normal = pred["normal"][0].permute(1, 2, 0).float().cpu().numpy()
        Image.fromarray(((normal + 1) / 2 * 255 + 0.5).clip(0, 255).astype(np.uint8)).save(out / f"{stem}_normal.png")


def run(args: argparse.Namespace) -> None:
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
    for path in list_images(Path(args.input)):
        rgb = load_rgb(path)
        pred = module.predict_native(rgb)
        write_prediction(out, path.stem, pred)
        log.info("%s -> %s (%s)", path, out, ", ".join(k for k in ("depth", "normal") if k in pred))
