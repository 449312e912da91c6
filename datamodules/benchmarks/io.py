"""Reading members straight out of an uncompressed tar, and decoding image/array bytes.

`BadSampleError` is the datamodules-wide one (datamodules.io_utils), re-exported here.
`TarMembers` indexes a tar once (name -> byte offset and size) and then reads a member with one
seek + read on a file handle it opens lazily in each process, so a dataset holding it can be
pickled into DataLoader workers (each worker opens its own handle).
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.io_utils import BadSampleError, check_policy


def _norm(name: str) -> str:
    return name.removeprefix("./")


class TarMembers:
    """Random access to the regular-file members of an uncompressed tar, by relative path."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"benchmark archive not found: {self.path}")
        try:
            with tarfile.open(self.path, "r:") as tar:
                self.index = {_norm(m.name): (m.offset_data, m.size) for m in tar if m.isfile()}
        except tarfile.TarError as err:
            raise BadSampleError(f"{self.path}: not a readable uncompressed tar ({err})") from err
        self._fh = None
        self._pid = None

    def __contains__(self, name: str) -> bool:
        return _norm(name) in self.index

    def read(self, name: str) -> bytes:
        """The member's bytes; raises BadSampleError naming archive and member when absent."""
        try:
            offset, size = self.index[_norm(name)]
        except KeyError:
            raise BadSampleError(f"{self.path}: member './{_norm(name)}' listed but not in the archive") from None
        if self._fh is None or self._pid != os.getpid():
            self._fh = open(self.path, "rb")  # noqa: SIM115 - kept open for the dataset's lifetime
            self._pid = os.getpid()
        self._fh.seek(offset)
        return self._fh.read(size)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fh"], state["_pid"] = None, None
        return state

    def __del__(self):
        if getattr(self, "_fh", None) is not None:
            self._fh.close()


def decode_image(data: bytes, where: str) -> np.ndarray:
    """PNG/JPEG bytes -> array (H, W[, C]) of the file's own dtype (uint8 RGB, uint16 depth, ...)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im, dtype=np.uint16)
            if im.mode in ("I", "L", "F"):
                return np.asarray(im)
            return np.asarray(im.convert("RGB"))
    except Exception as err:  # PIL raises several types for corrupt data
        raise BadSampleError(f"{where}: cannot decode image ({type(err).__name__}: {err})") from err


def decode_npy(data: bytes, where: str) -> np.ndarray:
    """.npy bytes -> array; raises BadSampleError naming the member when corrupt."""
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:
        raise BadSampleError(f"{where}: cannot decode .npy ({type(err).__name__}: {err})") from err


def rgb_to_unit(rgb: np.ndarray, where: str) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1]."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise BadSampleError(f"{where}: expected an 8-bit RGB image, got {rgb.dtype} {rgb.shape}")
    return (rgb.astype(np.float32) / 255.0 * 2.0 - 1.0).transpose(2, 0, 1).copy()


class ListedBenchmark(Dataset):
    """A dataset over listed entries, each decoded by `self._load(entry) -> sample dict`.

    `_select(entries, on_bad_sample)`: under 'raise' keeps every entry (a bad one raises
    BadSampleError when read); under 'skip' decodes each once, keeps those that decode, logs each
    bad one and the total, and records them in `skipped` / `num_skipped`. Every item carries
    `input_size`: (2,) int64, the (H, W) the model sees this benchmark at (its protocol's bucket
    times input_scale; `sizing.scaled_input_size`).
    """

    name: str
    entries: list
    input_size: tuple[int, int]

    def _load(self, entry) -> dict:
        raise NotImplementedError

    def _select(self, entries: list, on_bad_sample: str, logger: logging.Logger) -> None:
        self.entries, self.skipped = entries, []
        if check_policy(on_bad_sample) == "skip":
            self.entries = []
            for entry in entries:
                try:
                    self._load(entry)
                    self.entries.append(entry)
                except BadSampleError as err:
                    logger.warning("%s: skipping sample: %s", self.name, err)
                    self.skipped.append(str(err))
            if self.skipped:
                logger.warning("%s: skipped %d bad samples of %d", self.name, len(self.skipped), len(entries))
            if entries and not self.entries:
                raise BadSampleError(f"{self.name}: every one of the {len(entries)} listed samples is bad "
                                     f"(on_bad_sample=skip leaves nothing to score); the first: {self.skipped[0]}")
        self.num_skipped = len(self.skipped)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        sample = self._load(self.entries[index])
        sample["input_size"] = torch.tensor(self.input_size, dtype=torch.int64)
        return sample
