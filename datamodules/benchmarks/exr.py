"""OpenEXR reading and writing through the official `OpenEXR` Python bindings (ASWF, PyPI `OpenEXR`).

DSINE ships iBims-1 and Sintel ground-truth normals as 3-channel float EXR files (read there with
OpenCV, channels R, G, B = normal x, y, z). The bindings decode every compression the format
defines (ZIP, PIZ, PXR24, B44, DWA, ...), so real files written by any tool read here. Every
failure, whatever the library raises for a truncated or corrupt file, becomes a ValueError that
names the file, so the benchmarks' bad-sample policy ('raise' / 'skip') applies to it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import OpenEXR

_COMPRESSIONS = {"none": OpenEXR.NO_COMPRESSION, "zips": OpenEXR.ZIPS_COMPRESSION, "zip": OpenEXR.ZIP_COMPRESSION,
                 "piz": OpenEXR.PIZ_COMPRESSION}


def read_exr(path: str | Path, data: bytes | None = None) -> dict[str, np.ndarray]:
    """Read the first part of an EXR file; returns {channel name: (H, W) float32 array}.

    `data` may hold the file's bytes already (e.g. read from an archive); `path` then only names it.
    Raises ValueError naming `path` when the file is missing, truncated, corrupt or has subsampled
    channels.
    """
    path = str(path)
    try:
        buf = Path(path).read_bytes() if data is None else data
    except OSError as err:
        raise ValueError(f"{path}: cannot read the EXR file ({err})") from None
    try:
        with OpenEXR.File(io.BytesIO(buf), separate_channels=True) as exr:
            (x0, y0), (x1, y1) = exr.header()["dataWindow"]
            channels = {name: np.asarray(ch.pixels) for name, ch in exr.channels().items()}
    except Exception as err:  # the bindings raise RuntimeError, ValueError, TypeError... for bad files
        raise ValueError(f"{path}: not a readable OpenEXR file ({type(err).__name__}: {err})") from None
    shape = (int(y1) - int(y0) + 1, int(x1) - int(x0) + 1)
    out = {}
    for name, pixels in channels.items():
        if pixels.shape != shape:
            raise ValueError(f"{path}: channel {name!r} is {pixels.shape}, not the data window {shape} "
                             "(subsampled channels are not supported)")
        out[name] = pixels.astype(np.float32)
    if not out:
        raise ValueError(f"{path}: the EXR file holds no channels")
    return out


def write_exr(path: str | Path, image: np.ndarray, channels: tuple[str, ...] = ("R", "G", "B"),
              compression: str = "none") -> None:
    """Write (H, W, C) (or (H, W) with one channel name) as float32 channels of a scanline EXR.

    image[..., k] goes to channels[k]. compression: 'none', 'zips', 'zip' or 'piz'.
    """
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] != len(channels):
        raise ValueError(f"write_exr: {img.shape[-1]} image channels but names {channels}")
    if compression not in _COMPRESSIONS:
        raise ValueError(f"write_exr: compression {compression!r}; expected one of {sorted(_COMPRESSIONS)}")
    header = {"compression": _COMPRESSIONS[compression], "type": OpenEXR.scanlineimage}
    # the bindings read the buffer as C-contiguous whatever its strides: copy each plane
    planes = {name: np.ascontiguousarray(img[..., k]) for k, name in enumerate(channels)}
    with OpenEXR.File(header, planes) as exr:
        exr.write(str(path))
