"""`generate`: text-to-image samples of a MERGE run's frozen generator, converters off.

MERGE claims to unify generation and depth estimation: the converters never touch the base model, so
a trained run still generates exactly what the untrained generator did. This command shows it: it
samples the base FLUX transformer of a run (flow-matching Euler from seeded noise over FLUX's dynamic
schedule, the empty prompt, decoded by the run's VAE) and writes OUT/generate.png (a grid) and
OUT/generate.json (settings, the checkpoint's step, and the sha256 of the base weights). The same
seed gives byte-identical PNGs before and after training.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from experiments.checkpoints import locate_run
from experiments.config import load_experiment
from experiments.runner import build_module, load_trained_weights
from lightning_modules.backbones.merge_backbone import sample_images

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="a MERGE run folder (config.yaml [+ checkpoints/last.ckpt]) or one of its .ckpt files")
    parser.add_argument("--out", required=True, help="output folder for generate.png and generate.json")
    parser.add_argument("--num-images", type=int, default=8, help="samples in the grid (default 8)")
    parser.add_argument("--size", type=int, default=64, help="square image side in pixels, a multiple of 16 "
                        "(default 64; FLUX.1-dev is meant for 1024)")
    parser.add_argument("--steps", type=int, default=20, help="Euler steps (default 20)")
    parser.add_argument("--guidance", type=float, default=3.5,
                        help="distilled-guidance value of FLUX.1-dev's embedding (default 3.5, FluxPipeline's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting noise (default 0)")
    parser.add_argument("--device", default="auto", help="'auto' (cuda when available), 'cpu' or 'cuda'")


def image_grid(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> uint8 (rows*H, cols*W, 3), cols = ceil(sqrt(N)), row-major, black padding."""
    n, _, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    pixels = ((images.float().clamp(-1, 1) + 1) / 2 * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = pixels[i]
    return grid


def run(args: argparse.Namespace) -> None:
    run_dir, ckpt = locate_run(args.checkpoint)
    cfg = load_experiment([run_dir / "config.yaml"])
    if cfg.method != "merge":
        raise ValueError(f"--checkpoint {args.checkpoint}: generate samples the frozen generator of a MERGE run "
                         f"(method: merge); this run has method: {cfg.method}")
    module = build_module(cfg)
    steps = load_trained_weights(module, ckpt) if ckpt is not None else 0
    module.configure_model()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    module.to(device).eval()
    images = sample_images(module.backbone, args.num_images, args.size, args.steps, args.guidance, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images)).save(out / "generate.png")
    meta = {"run": str(run_dir), "checkpoint": str(ckpt) if ckpt else None, "trained_steps": steps,
            "base_sha256": module.backbone.base_fingerprint(), "num_images": args.num_images, "size": args.size,
            "steps": args.steps, "guidance": args.guidance, "seed": args.seed, "backbone": cfg.backbone.name}
    (out / "generate.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("samples of the frozen generator (converters off, %d trained steps): %s", steps, out / "generate.png")
