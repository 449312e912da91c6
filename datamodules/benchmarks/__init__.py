"""Zero-shot benchmarks: Marigold-packaged depth sets and DSINE-packaged normal sets.

    from datamodules.benchmarks import DepthBenchmark, NormalBenchmark
    from lightning_modules.metrics.protocol import load_protocols
    p = load_protocols()
    ds = DepthBenchmark("kitti", "/data", p.depth["kitti"], split_root="/src/Marigold")

Layouts (archive names, filename lists, ground-truth formats) are in `layouts.py`; decoding and
masking constants come from the protocol table (experiments/configs/eval/benchmarks.yaml).
"""

from .depth import DepthBenchmark, eval_mask, kb_crop_box
from .io import BadSampleError
from .layouts import DEPTH_LAYOUTS, NORMAL_LAYOUTS
from .normal import NormalBenchmark, decode_normal

__all__ = [
    "DEPTH_LAYOUTS",
    "NORMAL_LAYOUTS",
    "BadSampleError",
    "DepthBenchmark",
    "NormalBenchmark",
    "decode_normal",
    "eval_mask",
    "kb_crop_box",
]
