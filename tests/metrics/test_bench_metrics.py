"""experiments.bench.metrics: timing another checkout's suite alongside ('before')."""

import sys
from pathlib import Path

import pytest

from experiments.bench import metrics as bench


def test_base_checkout_is_imported_next_to_this_one():
    import lightning_modules.metrics as ours

    root = Path(bench.__file__).resolve().parents[2]
    cls = bench.load_base_depth_metrics(str(root))
    assert cls.__name__ == "DepthMetrics" and cls is not ours.DepthMetrics  # its own module objects
    assert sys.modules["lightning_modules.metrics"] is ours  # this checkout's modules are back
    res = bench.run("lidar", 2, base_cls=cls)
    assert res["suite_rel_diff"] <= 1e-9 and res["base_rel_diff"] <= 1e-9
    assert res["base_ms"] > 0 and res["base_speedup"] > 0


def test_base_that_is_not_a_checkout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a checkout"):
        bench.load_base_depth_metrics(str(tmp_path))
