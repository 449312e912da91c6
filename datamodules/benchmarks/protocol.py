"""Per-benchmark evaluation protocol (SPEC section 7) as plain dataclasses, and the table that fills them.

The table ships with this package as `benchmarks.yaml` (package data beside this file); code never
branches on a dataset's name, it reads these fields. The benchmark readers (`depth.py`, `normal.py`)
decode and mask by them, the synthetic writers write by them, and the scorer takes each benchmark's
valid depth range and input size from them.

The named interface for other packages: `load_protocols(path=None)` -> `BenchmarkProtocols` of
`DepthProtocol` / `NormalProtocol`. `path=None` is the packaged table; a user may pass their own
YAML of the same form (`evaluation.protocol_file`). Run folders written before the table moved here
hold its old absolute path (`.../experiments/configs/eval/benchmarks.yaml`); such a path reads the
packaged table (logged), so old runs evaluate unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

PACKAGED_PROTOCOL_FILE = Path(__file__).resolve().with_name("benchmarks.yaml")
"""The protocol table shipped with this package (what `protocol_file=None` means)."""
LEGACY_PROTOCOL_PARTS = ("experiments", "configs", "eval", "benchmarks.yaml")
"""Trailing path components of where the table lived before it moved into this package."""
RETIRED_PROTOCOL_KEYS = {
    "alignment": "nothing read it; the alignment space is the config key evaluation.alignment "
    "('auto' = the space matching the depth quantization)",
}
"""Entry keys older protocol files may hold, and why they went (dropped with a warning naming the file)."""


@dataclass
class DepthProtocol:
    """How one zero-shot depth benchmark is decoded, masked and scored."""

    name: str
    """Config name of the benchmark, e.g. 'nyuv2'."""
    num_images: int
    """Images in the released test list that have ground truth (e.g. 652 for KITTI Eigen)."""
    min_depth: float
    """Ground truth strictly above this is valid (metres); aligned predictions are clipped to it."""
    max_depth: float
    """Ground truth strictly below this is valid (metres; SPEC gives open intervals, as Marigold); .inf =
    none; aligned predictions are clipped to it."""
    range_masks_gt: bool = True
    """True: ground truth outside (min_depth, max_depth) is not scored. False (DIODE, as Marigold): the
    dataset's own mask is the evaluation mask as is, and the range only clips the aligned prediction."""
    depth_scale: float = 1.0
    """Stored ground-truth value divided by this gives metres (png/1000 -> 1000; raw float -> 1)."""
    crop: str = "none"
    """Mask rule: 'none', 'nyu_eigen' (rows 45:471, cols 41:601), 'kitti_eigen' (KB crop + eigen
    mask), or 'file' (the dataset ships a validity mask)."""
    input_size: tuple[int, int] = (768, 1024)
    """(H, W) in pixels fed to the model (FE2E's resize bucket for this dataset)."""


@dataclass
class NormalProtocol:
    """How one zero-shot normal benchmark is decoded and scored (DSINE protocol)."""

    name: str
    num_images: int
    gt_format: str = "png"
    """'png' (png/255*2-1, valid where RGB sum > 0), 'npy' (negate x) or 'exr'."""
    input_size: tuple[int, int] = (768, 1024)
    """(H, W) in pixels fed to the model."""


@dataclass
class BenchmarkProtocols:
    """The protocol table: benchmark name -> protocol, per task."""

    depth: dict[str, DepthProtocol] = field(default_factory=dict)
    normal: dict[str, NormalProtocol] = field(default_factory=dict)
    source: str = str(PACKAGED_PROTOCOL_FILE)
    """The file the table was read from (for messages)."""

    def names(self) -> list[str]:
        """Every benchmark name the table defines, depth first (each kind sorted)."""
        return sorted(self.depth) + sorted(self.normal)


def is_legacy_protocol_file(path: str | Path | None) -> bool:
    """True when `path` names the table's pre-move location (`.../experiments/configs/eval/benchmarks.yaml`,
    as older run folders' config.yaml hold it), wherever that checkout was."""
    if path is None:
        return False
    return PurePath(str(path)).parts[-len(LEGACY_PROTOCOL_PARTS):] == LEGACY_PROTOCOL_PARTS


def resolve_protocol_file(path: str | Path | None = None) -> Path:
    """The protocol file to read: the packaged table for None or for its old location (logged), else `path`.

    Raises FileNotFoundError naming `path` when a user's file does not exist.
    """
    if path is None:
        return PACKAGED_PROTOCOL_FILE
    if is_legacy_protocol_file(path):
        log.info("protocol file %s is where the benchmark protocol table used to live; reading the packaged "
                 "table %s instead", path, PACKAGED_PROTOCOL_FILE)
        return PACKAGED_PROTOCOL_FILE
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"protocol file {path} not found (evaluation.protocol_file: leave it null for "
                                "the packaged table, or name a YAML with 'depth:' / 'normal:' entries)")
    return path


def load_protocols(path: str | Path | None = None) -> BenchmarkProtocols:
    """Read the benchmark protocol table (None = the packaged one; see `resolve_protocol_file`).

    Raises ValueError naming the file and key on a bad entry; a retired key (RETIRED_PROTOCOL_KEYS)
    is dropped with a warning naming the file and key.
    """
    path = resolve_protocol_file(path)
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with 'depth:' and/or 'normal:' at the top level")
    unknown = sorted(set(raw) - {"depth", "normal"})
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; expected 'depth' and/or 'normal'")
    out = BenchmarkProtocols(source=str(path))
    for kind, cls, target in (("depth", DepthProtocol, out.depth), ("normal", NormalProtocol, out.normal)):
        for name, entry in (raw.get(kind) or {}).items():
            try:
                entry = dict(entry)
                for key in sorted(RETIRED_PROTOCOL_KEYS.keys() & entry.keys()):
                    log.warning("%s: ignoring retired key '%s.%s.%s' (= %s): %s", path, kind, name, key,
                                entry.pop(key), RETIRED_PROTOCOL_KEYS[key])
                if "input_size" in entry:
                    entry["input_size"] = tuple(entry["input_size"])
                if "max_depth" in entry:
                    entry["max_depth"] = float(entry["max_depth"])
                target[name] = cls(name=name, **entry)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}: bad entry '{kind}.{name}': {err}") from err
    return out
