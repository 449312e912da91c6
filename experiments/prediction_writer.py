"""Writing `predict` outputs off the model's critical path: a background writer thread, light PNG
compression, and only the outputs asked for.

Files per image (the conventions are in experiments/commands/predict.py's docstring):
  npy    -> {stem}_depth.npy        float32 (H, W) in [0, 1]
  png    -> {stem}_depth.png        16-bit, value * 65535 (rounded)
  color  -> {stem}_depth_color.png  Spectral colormap, 8-bit RGB
  normal -> {stem}_normal.png       8-bit RGB (n + 1) / 2 * 255 (models that predict normals)

`PredictionWriter.submit` copies the maps to host NumPy arrays on the caller's thread (so the model
may reuse its buffers) and hands encoding and writing to one worker thread (PNG encoding and file
writes release the GIL). At most `max_pending` images wait; `close()` (or leaving the `with` block)
waits for all of them and raises the first write error, naming the file.
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

OUTPUT_KINDS = ("npy", "png", "color", "normal")
"""Accepted values of `--outputs` (all of them by default)."""
DEFAULT_PNG_COMPRESSION = 1
"""zlib level of the PNGs: 1 is several times faster to write than PIL's default 6, files ~10-30% larger."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The writer's command-line options (`predict --outputs ... --png-compression N`)."""
    parser.add_argument("--outputs", default=",".join(OUTPUT_KINDS),
                        help=f"comma-separated subset of {','.join(OUTPUT_KINDS)} (default: all)")
    parser.add_argument("--png-compression", type=int, default=DEFAULT_PNG_COMPRESSION, metavar="0-9",
                        help=f"zlib level of the PNGs (default {DEFAULT_PNG_COMPRESSION}; PIL's default is 6)")


def parse_outputs(text: str) -> tuple[str, ...]:
    """The output kinds of a comma-separated list; ValueError naming the unknown ones."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in OUTPUT_KINDS]
    if unknown or not kinds:
        raise ValueError(f"--outputs: expected a comma-separated subset of {','.join(OUTPUT_KINDS)}, got {text!r}")
    return kinds


def check_png_compression(level: int) -> int:
    """`level` if it is a zlib level 0..9, else ValueError naming --png-compression."""
    if not 0 <= level <= 9:
        raise ValueError(f"--png-compression: expected 0..9, got {level}")
    return level


def spectral_table() -> np.ndarray:
    """(256, 3) uint8 of matplotlib's Spectral colormap (its own 256 entries, rounded like the
    float path: colour * 255 + 0.5)."""
    from matplotlib import colormaps

    return (colormaps["Spectral"](np.arange(256))[:, :3] * 255 + 0.5).astype(np.uint8)


def colorize(depth: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 colours of depth in [0, 1], indexed as matplotlib does (int(x * 256), 1 -> 255)."""
    index = np.minimum((depth * 256.0).astype(np.int64), 255)
    return table[index]


class PredictionWriter:
    """Writes predictions into `out_dir` from a worker thread; use as a context manager."""

    def __init__(self, out_dir: str | Path, outputs: tuple[str, ...] = OUTPUT_KINDS,
                 png_compression: int = DEFAULT_PNG_COMPRESSION, max_pending: int = 4) -> None:
        self.out_dir, self.outputs = Path(out_dir), tuple(outputs)
        self.level = check_png_compression(png_compression)
        self._table = spectral_table() if "color" in self.outputs else None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prediction-writer")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._futures: list[Future] = []
        self.seconds_writing = 0.0
        """Worker-thread time spent encoding and writing (for the bench)."""

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def submit(self, stem: str, pred: dict[str, torch.Tensor]) -> None:
        """Queue the outputs of one image: pred['depth'] (1,1,H,W) in [0, 1] and/or pred['normal']
        (1,3,H,W) unit normals (a GenPercept model predicts one of the two). Blocks while
        `max_pending` images are queued."""
        depth = pred["depth"][0, 0].detach().float().clamp(0, 1).cpu().numpy() if "depth" in pred else None
        normal = None
        if "normal" in pred and "normal" in self.outputs:
            normal = pred["normal"][0].detach().permute(1, 2, 0).float().cpu().numpy()
        self._raise_finished_errors()
        self._slots.acquire()
        future = self._pool.submit(self.write, stem, depth, normal)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def write(self, stem: str, depth: np.ndarray | None, normal: np.ndarray | None) -> list[Path]:
        """Encode and write one image's outputs now, on this thread; returns the files written."""
        start = time.perf_counter()
        written = []
        if depth is not None and "npy" in self.outputs:
            written.append(self._save(f"{stem}_depth.npy", lambda p: np.save(p, depth.astype(np.float32, copy=False))))
        if depth is not None and "png" in self.outputs:
            png16 = Image.fromarray((depth * 65535 + 0.5).astype(np.uint16))
            written.append(self._save(f"{stem}_depth.png", lambda p: png16.save(p, compress_level=self.level)))
        if depth is not None and "color" in self.outputs:
            colour = Image.fromarray(colorize(depth, self._table))
            written.append(self._save(f"{stem}_depth_color.png", lambda p: colour.save(p, compress_level=self.level)))
        if normal is not None:
            rgb = Image.fromarray(((normal + 1) / 2 * 255 + 0.5).clip(0, 255).astype(np.uint8))
            written.append(self._save(f"{stem}_normal.png", lambda p: rgb.save(p, compress_level=self.level)))
        self.seconds_writing += time.perf_counter() - start
        return written

    def _save(self, name: str, save) -> Path:
        path = self.out_dir / name
        try:
            save(path)
        except OSError as err:
            raise OSError(f"{path}: cannot write prediction output: {err}") from err
        return path

    def _raise_finished_errors(self) -> None:
        pending = []
        for future in self._futures:
            if future.done():
                future.result()  # re-raises a write error
            else:
                pending.append(future)
        self._futures = pending

    def close(self) -> None:
        """Wait for every queued image; raise the first write error."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self._futures = []
            self._pool.shutdown(wait=True)
