"""`predict`: depth (and normal) maps for one image or a folder of images.

Inputs: 8- or 16-bit, grey or colour images (16-bit values are scaled by 1/65535). An unreadable
file in a folder is reported and skipped (the count is logged); the inputs, the run and its
checkpoint are checked before the output folder is created.

Output convention (also written to OUTPUT/CONVENTIONS.txt):
- {stem}_depth.npy (models that predict depth): float32 (H, W) affine-invariant depth in [0, 1] in the model's quantization space
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

from datamodules.benchmarks.sizing import aspect_input_size
from experiments import prediction_writer
from experiments.checkpoints import locate_run, read_checkpoint
from experiments.config import load_experiment
from experiments.preflight import check_backbone
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
    """The image files to predict: `path` itself, or the images (by suffix) in the folder `path`, sorted."""
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            return images
        raise FileNotFoundError(f"--input {path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
    raise FileNotFoundError(f"--input {path}: no such file or folder")


def to_unit_rgb(arr: np.ndarray, mode: str) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] from a decoded image array of any PIL mode's dtype.

    16-bit grey (PIL modes I;16*, or I holding 16-bit values) is divided by 65535, 8-bit by 255,
    float (mode F) is taken as already in [0, 1] (clipped); grey is repeated over three channels.
    """
    if mode.startswith("I;16") or (mode == "I" and arr.size and arr.max() > 255):
        unit = arr.astype(np.float32) / 65535.0
    elif mode == "F":
        unit = np.clip(arr.astype(np.float32), 0.0, 1.0)
    else:
        unit = arr.astype(np.float32) / 255.0
    if unit.ndim == 2:
        unit = np.repeat(unit[..., None], 3, axis=2)
    return np.clip(unit, 0.0, 1.0)


def unreadable_images(images: list[Path]) -> list[Path]:
    """The files whose image header PIL cannot parse (each logged), checked without decoding pixels."""
    bad = []
    for path in images:
        try:
            with Image.open(path):
                pass
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            log.warning("skipping %s: not a readable image (%s)", path, err)
            bad.append(path)
    return bad


def load_rgb(path: Path) -> torch.Tensor:
    """(1,3,H,W) float32 in [-1, 1]; 8- and 16-bit, grey and colour files (ValueError naming an unreadable one)."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
                arr = np.asarray(img)
            else:
                arr = np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    if mode == "1":
        arr, mode = arr.astype(np.uint8) * 255, "L"
    unit = to_unit_rgb(arr, mode)
    return torch.from_numpy(unit).permute(2, 0, 1)[None] * 2 - 1


def run(args: argparse.Namespace) -> None:
    outputs = prediction_writer.parse_outputs(args.outputs)  # bad values: exit 2 before the model loads
    prediction_writer.check_png_compression(args.png_compression)
    images = list_images(Path(args.input))  # inputs are checked before anything is built or written
    skipped = unreadable_images(images)
    if len(skipped) == len(images):
        raise ValueError(f"--input {args.input}: none of the {len(images)} image file(s) can be read")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output {out}: exists and is not a folder")
    run_dir, ckpt = locate_run(args.checkpoint)
    cfg = load_experiment([run_dir / "config.yaml"], args.overrides)
    check_backbone(cfg)
    if ckpt is not None:
        read_checkpoint(ckpt, mmap=True)
    module = build_module(cfg)
    if ckpt is not None:
        load_trained_weights(module, ckpt)
    else:
        module.configure_model()
    module.eval()
    out.mkdir(parents=True, exist_ok=True)
    (out / "CONVENTIONS.txt").write_text(__doc__.split("Output convention (also written to OUTPUT/CONVENTIONS.txt):\n")[1])
    with prediction_writer.PredictionWriter(out, outputs, args.png_compression) as writer:
        for path in (p for p in images if p not in skipped):
            try:
                rgb = load_rgb(path)
            except ValueError as err:
                skipped.append(path)
                log.warning("skipping %s", err)
                continue
            size = aspect_input_size(*rgb.shape[-2:], input_scale=cfg.evaluation.input_scale)
            pred = module.predict_native(rgb, size, generator=module.sample_generators("predict", [path.name]))
            writer.submit(path.stem, pred)  # encoded and written by the writer thread
            log.info("%s -> %s/%s_*", path, out, path.stem)
    if skipped:
        log.warning("skipped %d of %d inputs as unreadable: %s", len(skipped), len(images),
                    ", ".join(str(p) for p in skipped))
    if len(skipped) == len(images):
        raise ValueError(f"--input {args.input}: none of the {len(images)} images could be decoded")
