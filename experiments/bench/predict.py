"""`predict` per image: the model's time vs the time to write its outputs.

    python -m experiments.bench.predict [--images 8] [--height 480] [--width 640] [--config FILE ...]

Builds the module of `--config` (default: fe2e.yaml + data/synthetic.yaml, the embedded tiny
default; weights as initialised: the time does not depend on them), then for `--images` random
RGB images of the given size times, per image (CPU time of this process): `predict_native` (the
model), writing the four outputs as `predict` did before (PIL's default PNG compression,
matplotlib's float colormap), and as `PredictionWriter` writes them (PNG zlib level 1, colormap
table), each on the calling thread; then (wall time) the whole loop with the writer thread against
the model alone. Prints ms per image and the ratios (the issue's target: writing <= the model).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from experiments.prediction_writer import PredictionWriter

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIGS = [str(CONFIGS / "fe2e.yaml"), str(CONFIGS / "data" / "synthetic.yaml")]
"""The embedded default's FE2E run (tiny editor, model input at 0.25 x FE2E's size), as `predict` sees it."""


def write_as_before(out: Path, stem: str, pred: dict[str, torch.Tensor]) -> None:
    """The writing `predict` did before PredictionWriter: default compression, float colormap."""
    from matplotlib import colormaps

    depth = pred["depth"][0, 0].float().clamp(0, 1).cpu().numpy()
    np.save(out / f"{stem}_depth.npy", depth.astype(np.float32))
    Image.fromarray((depth * 65535 + 0.5).astype(np.uint16)).save(out / f"{stem}_depth.png")
    colour = colormaps["Spectral"](depth)[..., :3]
    Image.fromarray((colour * 255 + 0.5).astype(np.uint8)).save(out / f"{stem}_depth_color.png")
    if "normal" in pred:
        normal = pred["normal"][0].permute(1, 2, 0).float().cpu().numpy()
        Image.fromarray(((normal + 1) / 2 * 255 + 0.5).clip(0, 255).astype(np.uint8)).save(out / f"{stem}_normal.png")


def main(argv: list[str] | None = None) -> dict[str, float]:
    from datamodules.benchmarks.sizing import aspect_input_size
    from experiments.config import load_experiment
    from experiments.runner import build_module

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--config", action="append", help="experiment YAML (repeatable; default: "
                        "fe2e.yaml + data/synthetic.yaml, the embedded default)")
    args = parser.parse_args(argv)
    cfg = load_experiment(args.config or DEFAULT_CONFIGS)
    module = build_module(cfg)
    module.configure_model()
    module.eval()
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(1, 3, args.height, args.width, generator=gen) * 2 - 1 for _ in range(args.images)]
    size = aspect_input_size(args.height, args.width, cfg.evaluation.input_scale)  # as `predict` sizes them
    module.predict_native(images[0], size)  # warm-up
    t = dict.fromkeys(("model", "before", "writer", "loop_model", "loop_threaded"), 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        sync = PredictionWriter(out)
        for i, rgb in enumerate(images):  # CPU time of this process: steadier on a shared machine
            t0 = time.process_time()
            pred = module.predict_native(rgb, size)
            t1 = time.process_time()
            write_as_before(out, f"b{i}", pred)
            t2 = time.process_time()
            depth = pred["depth"][0, 0].float().clamp(0, 1).numpy()
            normal = pred["normal"][0].permute(1, 2, 0).float().numpy() if "normal" in pred else None
            sync.write(f"w{i}", depth, normal)
            t3 = time.process_time()
            t["model"] += t1 - t0
            t["before"] += t2 - t1
            t["writer"] += t3 - t2
        sync.close()
        t0 = time.perf_counter()
        for rgb in images:
            module.predict_native(rgb, size)
        t["loop_model"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with PredictionWriter(out) as threaded:
            for i, rgb in enumerate(images):
                threaded.submit(f"t{i}", module.predict_native(rgb, size))
        t["loop_threaded"] = time.perf_counter() - t0
    ms = {k: 1e3 * v / args.images for k, v in t.items()}
    print(f"{args.images} images {args.height}x{args.width}, torch threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print("ms/image, CPU time (model: all its threads):")
    print(f"model (predict_native)              {ms['model']:8.1f}")
    print(f"writing as before (level 6, float)  {ms['before']:8.1f}   {ms['before'] / ms['model']:5.2f}x the model")
    print(f"PredictionWriter.write (level 1)    {ms['writer']:8.1f}   {ms['writer'] / ms['model']:5.2f}x the model")
    print("ms/image, wall time (the writer thread overlaps the model):")
    print(f"loop with the writer thread         {ms['loop_threaded']:8.1f}   "
          f"{ms['loop_threaded'] / ms['loop_model']:5.2f}x the model-only loop ({ms['loop_model']:.1f})")
    return ms


if __name__ == "__main__":
    main()
