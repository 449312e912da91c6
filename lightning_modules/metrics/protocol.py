"""Per-benchmark evaluation protocol (SPEC section 7) as plain dataclasses.

The values live in `experiments/configs/eval/benchmarks.yaml`; code never branches on a dataset's
name, it reads these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

DEFAULT_PROTOCOL_FILE = Path(__file__).resolve().parents[2] / "experiments/configs/eval/benchmarks.yaml"


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
    """(H, W) fed to the model (FE2E's resize bucket for this dataset)."""
    alignment: str = "log"
    """Least-squares alignment space: 'depth', 'disparity', 'log' or 'none'."""


@dataclass
class NormalProtocol:
    """How one zero-shot normal benchmark is decoded and scored (DSINE protocol)."""

    name: str
    num_images: int
    gt_format: str = "png"
    """'png' (png/255*2-1, valid where RGB sum > 0), 'npy' (negate x) or 'exr'."""
    input_size: tuple[int, int] = (768, 1024)
    """(H, W) fed to the model."""


@dataclass
class BenchmarkProtocols:
    depth: dict[str, DepthProtocol] = field(default_factory=dict)
    normal: dict[str, NormalProtocol] = field(default_factory=dict)


def load_protocols(path: str | Path = DEFAULT_PROTOCOL_FILE) -> BenchmarkProtocols:
    """Read the benchmark protocol table; raises ValueError naming the file and key on a bad entry."""
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    out = BenchmarkProtocols()
    for kind, cls, target in (("depth", DepthProtocol, out.depth), ("normal", NormalProtocol, out.normal)):
        for name, entry in (raw.get(kind) or {}).items():
            try:
                entry = dict(entry)
                if "input_size" in entry:
                    entry["input_size"] = tuple(entry["input_size"])
                if "max_depth" in entry:
                    entry["max_depth"] = float(entry["max_depth"])
                target[name] = cls(name=name, **entry)
            except TypeError as err:
                raise ValueError(f"{path}: bad entry '{kind}.{name}': {err}") from err
    return out
