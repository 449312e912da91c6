"""The fast Hypersim decode (bit-pattern tables, channel-wise float64 flip test) gives exactly the
bytes of the straightforward float formulas (SPEC 5, 6; tests/datamodules/hypersim_formulas.py)."""

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from datamodules.hypersim import HypersimDataset, decode_raw
from datamodules.hypersim_layout import frame_paths
from datamodules.synthetic.hypersim_writer import write_hypersim

sys.path.insert(0, str(Path(__file__).parent))
from hypersim_formulas import formula_decode  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hypersim_exact")
    write_hypersim(root, num_scenes=1, frames_per_scene=2, height=48, width=64, seed=5, splits=("train",))
    # frame 1: NaN / inf colour and normals where there is no entity, a NaN distance, very bright pixels
    paths = frame_paths(root, "ai_001_001", 1)
    with h5py.File(paths["render_entity_id"], "r+") as f:
        entity = f["dataset"][()]
        entity[:3, :5] = -1
        f["dataset"][...] = entity
    with h5py.File(paths["color"], "r+") as f:
        c = f["dataset"][()]
        c[0, 0], c[1, 1], c[2, 2, 0] = np.nan, np.inf, -np.inf
        c[10, 10] = 60000.0
        f["dataset"][...] = c
    with h5py.File(paths["normal_cam"], "r+") as f:
        n = f["dataset"][()]
        n[0, 1, 2], n[2, 3, 1] = np.nan, np.inf
        f["dataset"][...] = n
    with h5py.File(paths["depth_meters"], "r+") as f:
        d = f["dataset"][()]
        d[20, 20] = np.nan
        f["dataset"][...] = d
    return root


def test_decode_is_byte_identical_to_the_float_formulas(root):
    ds = HypersimDataset(root, "train", max_invalid_fraction=1.0)
    assert len(ds) == 2
    for fid in ds.frames:
        got = decode_raw(root, fid, ds._camera_position)
        ref = formula_decode(root, fid)
        ref["normal"] = ref["normal"].astype(np.float16)
        for key in ("rgb", "distance", "normal", "valid"):
            assert got[key].dtype == ref[key].dtype, key
            assert np.array_equal(got[key].view(np.uint8), ref[key].view(np.uint8)), f"{fid.name} {key}"
    assert not got["valid"][20, 20] and got["normal"][0, 1].tolist() == [0, 0, 0]
