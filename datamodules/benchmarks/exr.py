"""A minimal OpenEXR reader and writer (single-part scanline images), with no dependency.

DSINE ships iBims-1 and Sintel ground-truth normals as 3-channel float EXR files (read there with
OpenCV, channels R, G, B = normal x, y, z). The venv has neither OpenEXR nor imageio, and the
format subset these files use is small:

    magic 20000630 (int32 LE) | version 2 (int32, single-part scanline, no flags)
    header: attributes `name\\0 type\\0 size(int32) value`, terminated by an empty name
            (channels 'chlist', compression, dataWindow/displayWindow 'box2i', lineOrder,
             pixelAspectRatio, screenWindowCenter, screenWindowWidth)
    offset table: one uint64 file offset per chunk
    chunks: int32 first line y | int32 byte count | per scanline, per channel (sorted by name),
            `width` samples

Supported: pixel types UINT/HALF/FLOAT; compression NONE, ZIPS (1 line per chunk), ZIP (16 lines).
Anything else raises ValueError naming the file and the unsupported feature.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

MAGIC = 20000630
_PIXEL_DTYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}
_COMPRESSIONS = {0: ("none", 1), 2: ("zips", 1), 3: ("zip", 16)}
_COMPRESSION_IDS = {"none": 0, "zips": 2, "zip": 3}


def _zip_undo(raw: bytes) -> bytes:
    """Invert EXR's ZIP pre-processing: byte-delta predictor, then the even/odd byte interleave."""
    t = np.frombuffer(raw, np.uint8).astype(np.int64)
    t = (np.cumsum(t - 128) + 128) % 256  # t[i] = t[i-1] + d[i] - 128; t[0] = d[0]
    t[0] = raw[0]
    t = t.astype(np.uint8)
    half = (len(t) + 1) // 2
    out = np.empty_like(t)
    out[0::2] = t[:half]
    out[1::2] = t[half:]
    return out.tobytes()


def _zip_do(data: bytes) -> bytes:
    """EXR's ZIP pre-processing (interleave, then delta predictor) followed by zlib."""
    b = np.frombuffer(data, np.uint8)
    t = np.concatenate([b[0::2], b[1::2]]).astype(np.int64)
    d = t.copy()
    d[1:] = (t[1:] - t[:-1] + 128) % 256
    return zlib.compress(d.astype(np.uint8).tobytes())


def _read_header(buf: bytes, path: str) -> tuple[dict, int]:
    if len(buf) < 8 or struct.unpack_from("<i", buf, 0)[0] != MAGIC:
        raise ValueError(f"{path}: not an OpenEXR file (bad magic number)")
    version = struct.unpack_from("<i", buf, 4)[0]
    if version & 0xFF != 2 or version & ~0xFF & ~0x400:  # only the long-names flag is harmless
        raise ValueError(f"{path}: unsupported EXR version/flags 0x{version:x} (need single-part scanline)")
    pos, header = 8, {}
    while True:
        end = buf.index(b"\0", pos)
        name = buf[pos:end].decode()
        pos = end + 1
        if not name:
            return header, pos
        end = buf.index(b"\0", pos)
        typ = buf[pos:end].decode()
        (size,) = struct.unpack_from("<i", buf, end + 1)
        value = buf[end + 5 : end + 5 + size]
        pos = end + 5 + size
        header[name] = (typ, value)


def _parse_channels(value: bytes) -> list[tuple[str, int]]:
    out, pos = [], 0
    while value[pos] != 0:
        end = value.index(b"\0", pos)
        name = value[pos:end].decode()
        ptype, _linear, xs, ys = struct.unpack_from("<iB3xii", value, end + 1)
        if xs != 1 or ys != 1:
            raise ValueError(f"subsampled channel {name!r} is not supported")
        out.append((name, ptype))
        pos = end + 1 + 16
    return out


def read_exr(path: str | Path, data: bytes | None = None) -> dict[str, np.ndarray]:
    """Read a single-part scanline EXR; returns {channel name: (H, W) float32 array}.

    `data` may hold the file's bytes already (e.g. read from an archive); `path` then only names it.
    """
    path = str(path)
    buf = Path(path).read_bytes() if data is None else data
    try:
        header, pos = _read_header(buf, path)
        channels = _parse_channels(header["channels"][1])
        comp_id = header["compression"][1][0]
        x0, y0, x1, y1 = struct.unpack("<4i", header["dataWindow"][1])
    except (KeyError, IndexError, struct.error) as err:
        raise ValueError(f"{path}: malformed EXR header ({err!r})") from err
    if comp_id not in _COMPRESSIONS:
        raise ValueError(f"{path}: EXR compression id {comp_id} not supported (only NONE, ZIPS, ZIP); "
                         "re-save it uncompressed or add the OpenEXR package")
    for name, ptype in channels:
        if ptype not in _PIXEL_DTYPES:
            raise ValueError(f"{path}: channel {name!r} has unknown pixel type {ptype}")
    width, height = x1 - x0 + 1, y1 - y0 + 1
    lines_per_chunk = _COMPRESSIONS[comp_id][1]
    n_chunks = -(-height // lines_per_chunk)
    offsets = struct.unpack_from(f"<{n_chunks}Q", buf, pos)
    planes = {name: np.empty((height, width), np.float32) for name, _ in channels}
    for off in offsets:
        y, size = struct.unpack_from("<ii", buf, off)
        raw = buf[off + 8 : off + 8 + size]
        nlines = min(lines_per_chunk, y1 - y + 1)
        expected = nlines * width * sum(_PIXEL_DTYPES[p].itemsize for _, p in channels)
        if comp_id != 0 and size < expected:
            raw = _zip_undo(zlib.decompress(raw))
        if len(raw) != expected:
            raise ValueError(f"{path}: chunk at line {y} holds {len(raw)} bytes, expected {expected}")
        cur = 0
        for line in range(nlines):
            for name, ptype in channels:
                dt = _PIXEL_DTYPES[ptype]
                n = width * dt.itemsize
                planes[name][y - y0 + line] = np.frombuffer(raw[cur : cur + n], dt)
                cur += n
    return planes


def _attr(name: str, typ: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + typ.encode() + b"\0" + struct.pack("<i", len(value)) + value


def write_exr(path: str | Path, image: np.ndarray, channels: tuple[str, ...] = ("R", "G", "B"),
              compression: str = "none") -> None:
    """Write (H, W, C) (or (H, W) with one channel name) as float32 channels of a scanline EXR.

    image[..., k] goes to channels[k]; channels are stored sorted by name as the format requires.
    compression: 'none', 'zips' or 'zip'.
    """
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] != len(channels):
        raise ValueError(f"write_exr: {img.shape[-1]} image channels but names {channels}")
    height, width = img.shape[:2]
    order = sorted(range(len(channels)), key=lambda k: channels[k])
    chlist = b"".join(channels[k].encode() + b"\0" + struct.pack("<iB3xii", 2, 0, 1, 1) for k in order) + b"\0"
    comp_id = _COMPRESSION_IDS[compression]
    header = b"".join([
        _attr("channels", "chlist", chlist),
        _attr("compression", "compression", bytes([comp_id])),
        _attr("dataWindow", "box2i", struct.pack("<4i", 0, 0, width - 1, height - 1)),
        _attr("displayWindow", "box2i", struct.pack("<4i", 0, 0, width - 1, height - 1)),
        _attr("lineOrder", "lineOrder", bytes([0])),
        _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        _attr("screenWindowCenter", "v2f", struct.pack("<2f", 0.0, 0.0)),
        _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
    ]) + b"\0"
    lines = _COMPRESSIONS[comp_id][1]
    planar = np.ascontiguousarray(img[..., order].transpose(0, 2, 1))  # (H, C, W): per line, per channel
    chunks = []
    for y in range(0, height, lines):
        data = planar[y : y + lines].astype("<f4").tobytes()
        if comp_id != 0:
            packed = _zip_do(data)
            data = packed if len(packed) < len(data) else data
        chunks.append(struct.pack("<ii", y, len(data)) + data)
    start = 8 + len(header) + 8 * len(chunks)
    offsets, pos = [], start
    for c in chunks:
        offsets.append(pos)
        pos += len(c)
    out = struct.pack("<ii", MAGIC, 2) + header + struct.pack(f"<{len(offsets)}Q", *offsets) + b"".join(chunks)
    Path(path).write_bytes(out)
