"""File reading with errors that name the file, the sample-dict builder, and bad-sample skipping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args

import h5py
import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

OnBadSample = Literal["raise", "skip"]
"""What a reader does with a sample it cannot read: stop naming the file, or log, count and skip it."""
SKIPPED_KEY = "num_skipped_before"
"""Sample-dict key: bad samples skipped (policy 'skip') before this one was found (see SkipCounter)."""


class BadSampleError(ValueError):
    """A sample's files are missing, unreadable or hold impossible values; the message names the file."""


def read_hdf5(path: str | Path, key: str = "dataset") -> np.ndarray:
    """The array stored under `key` in the HDF5 file `path` (Hypersim stores everything under 'dataset')."""
    path = Path(path)
    if not path.is_file():
        raise BadSampleError(f"{path}: missing file (expected an HDF5 file with key '{key}')")
    try:
        with h5py.File(path, "r") as f:
            return f[key][()]
    except (OSError, KeyError) as err:
        raise BadSampleError(f"{path}: cannot read HDF5 key '{key}': {err}") from err


def read_image(path: str | Path) -> np.ndarray:
    """Pixels of an image file (JPEG -> (H,W,3) uint8, 16-bit PNG -> (H,W) uint16)."""
    path = Path(path)
    if not path.is_file():
        raise BadSampleError(f"{path}: missing file (expected an image)")
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.array(img)
    except (OSError, ValueError, SyntaxError) as err:
        raise BadSampleError(f"{path}: cannot decode image: {err}") from err
    if arr.dtype == np.int32:  # PIL decodes some 16-bit PNGs as mode 'I'
        arr = arr.astype(np.uint16)
    return arr


def check_policy(on_bad_sample: str) -> str:
    """`on_bad_sample` if OnBadSample allows it, else ValueError (readers are built without the config
    layer in tests and notebooks, so they check their own argument against the same Literal)."""
    allowed = get_args(OnBadSample)
    if on_bad_sample not in allowed:
        raise ValueError(f"on_bad_sample: expected one of {list(allowed)}, got {on_bad_sample!r}")
    return on_bad_sample


def lookup(table: np.ndarray, index: np.ndarray, out: np.ndarray | None = None, block: int = 1 << 17) -> np.ndarray:
    """table[index] for an integer `index` array of any shape, in blocks along its first axis of
    about `block` elements: np.take converts indices to int64, and one image-sized int64
    temporary costs more in page faults than the look-up itself."""
    if out is None:
        out = np.empty(index.shape, dtype=table.dtype)
    step = max(1, block // max(1, index[0].size if index.ndim > 1 else 1))
    for start in range(0, index.shape[0], step):
        np.take(table, index[start : start + step], out=out[start : start + step])
    return out


_UINT8_TO_PM1 = (np.arange(256, dtype=np.float32) / 255.0) * 2.0 - 1.0
"""uint8 -> float32 in [-1, 1], computed as make_sample's float path computes (x / 255) * 2 - 1."""


def make_sample(
    rgb01: np.ndarray,
    depth: np.ndarray,
    valid: np.ndarray,
    normal: np.ndarray,
    K: np.ndarray,
    name: str,
    dataset: str,
) -> dict:
    """The sample dict of `datamodules/__init__.py` from (H,W,3) rgb in [0,1] (or uint8, taken as
    rgb / 255), (H,W) metric depth, (H,W) bool validity, (H,W,3) normals (project convention) and
    (3,3) K."""
    depth = np.where(valid, depth, 0.0).astype(np.float32)
    if rgb01.dtype == np.uint8:  # one table look-up: the same float32 values as the float path below
        rgb = lookup(_UINT8_TO_PM1, rgb01.transpose(2, 0, 1))
    else:
        rgb = np.ascontiguousarray(rgb01.transpose(2, 0, 1), dtype=np.float32) * 2.0 - 1.0
    return {
        "rgb": torch.from_numpy(rgb),
        "depth": torch.from_numpy(depth)[None],
        "valid_mask": torch.from_numpy(np.ascontiguousarray(valid, dtype=bool))[None],
        "normal": torch.from_numpy(np.ascontiguousarray(normal.transpose(2, 0, 1), dtype=np.float32)),
        "intrinsics": torch.from_numpy(np.asarray(K, dtype=np.float32)),
        "name": name,
        "dataset": dataset,
    }


class SkipCounter:
    """Loads sample `index` with `load`; under policy 'skip' a BadSampleError is logged, counted
    and the next index tried (at most `len` tries), under 'raise' it propagates."""

    def __init__(self, on_bad_sample: str, dataset_name: str) -> None:
        self.policy = check_policy(on_bad_sample)
        self.dataset_name = dataset_name
        self.num_skipped = 0

    def get(self, index: int, length: int, load: Callable[[int], dict]) -> dict:
        """The sample; its key SKIPPED_KEY holds how many bad samples were skipped to reach it, so
        counts made inside DataLoader worker processes reach the training loop with the batch."""
        for attempt in range(length):
            try:
                sample = load((index + attempt) % length)
                sample[SKIPPED_KEY] = attempt
                return sample
            except BadSampleError as err:
                if self.policy == "raise":
                    raise
                self.num_skipped += 1
                logger.warning("%s: skipping bad sample (%d skipped so far): %s", self.dataset_name, self.num_skipped, err)
        raise BadSampleError(f"{self.dataset_name}: every sample is bad")
