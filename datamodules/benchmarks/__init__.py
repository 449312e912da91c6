"""Zero-shot benchmarks: Marigold-packaged depth sets and DSINE-packaged normal sets.

    from datamodules.benchmarks import DepthBenchmark, NormalBenchmark, load_protocols
    p = load_protocols()  # the packaged protocol table (benchmarks.yaml beside this file)
    ds = DepthBenchmark("kitti", "/data", p.depth["kitti"], split_root="/src/Marigold")

Layouts (archive names, filename lists, ground-truth formats) are in `layouts.py`; decoding and
masking constants, and each benchmark's model input size, come from the protocol table
(`protocol.py`, which reads the packaged `benchmarks.yaml` or a user's YAML of the same form).
"""

from .depth import DepthBenchmark, eval_mask, kb_crop_box
from .io import BadSampleError
from .layouts import DEPTH_LAYOUTS, NORMAL_LAYOUTS
from .normal import NormalBenchmark, decode_normal
from .protocol import BenchmarkProtocols, DepthProtocol, NormalProtocol, load_protocols

__all__ = [
    "DEPTH_LAYOUTS",
    "NORMAL_LAYOUTS",
    "BadSampleError",
    "BenchmarkProtocols",
    "DepthBenchmark",
    "DepthProtocol",
    "NormalBenchmark",
    "NormalProtocol",
    "decode_normal",
    "eval_mask",
    "kb_crop_box",
    "load_protocols",
]
