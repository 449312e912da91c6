"""Upsampling of feature maps; the grid PNG."""

import numpy as np
import pytest
import torch
from matplotlib import image as mpimg

from analysis.features import plot_feature_grid, upsample_to


def test_upsample_to_bilinear():
    m = np.array([[0.0, 1.0]], dtype=np.float32)  # 1x2 -> 1x4, align_corners=False
    # output x centres map to input coords -0.25, 0.25, 0.75, 1.25 -> clamped: 0, .25, .75, 1
    np.testing.assert_allclose(upsample_to(m, (1, 4)), [[0.0, 0.25, 0.75, 1.0]], atol=1e-6)
    assert upsample_to(torch.ones(2, 3, 5), (6, 10)).shape == (2, 6, 10)


def test_plot_feature_grid_png_size(tmp_path):
    maps = [("block 1", np.arange(12.0).reshape(3, 4)), ("block 20", np.ones((3, 4)))]
    entries = [("editor", "epoch 1", maps, np.linspace(1, 2, 12).reshape(3, 4)),
               ("generator", "epoch 1", maps, None)]
    out = plot_feature_grid(entries, tmp_path / "f.png", figsize=(6, 4), dpi=40, title="t")
    img = mpimg.imread(out)
    assert img.shape[:2] == (160, 240)
    assert img[..., :3].std() > 0.01


def test_load_feature_entries_first_last(tmp_path):
    from analysis.features import load_feature_entries

    feats = tmp_path / "editor" / "features"
    feats.mkdir(parents=True)
    for e in (1, 2, 3):
        np.savez(feats / f"epoch_{e:03d}.npz", **{"block:double.1": np.full((2, 2), float(e)),
                                                  "block:single.9": np.eye(2), "depth": np.ones((4, 6))})
    entries = load_feature_entries({"editor": tmp_path / "editor"})
    assert [(e[0], e[1]) for e in entries] == [("editor", "epoch 1"), ("editor", "epoch 3")]
    name, m = entries[1][2][0]
    assert name == "double.1" and m.shape == (4, 6) and np.allclose(m, 3.0)
    with pytest.raises(KeyError, match="single.20"):
        load_feature_entries({"editor": tmp_path / "editor"}, blocks=["single.20"])


def test_feature_rows_show_input_and_ground_truth_beside_the_maps(tmp_path):
    """Issue 12 item 7: each row is input, ground truth (log depth, invalid blank), blocks, prediction."""
    from analysis.features import load_feature_entries, row_panels

    feats = tmp_path / "editor" / "features"
    feats.mkdir(parents=True)
    rgb = np.zeros((2, 3, 3))
    rgb[..., 0] = 1.0  # red
    gt = np.array([[1.0, np.e, np.nan], [np.e**2, 1.0, 1.0]])
    np.savez(feats / "epoch_001.npz", **{"block:double.1": np.ones((1, 1)), "depth": np.zeros((2, 3)),
                                         "rgb": rgb, "gt_depth": gt})
    (row,) = load_feature_entries({"editor": tmp_path / "editor"})
    panels = row_panels(row, "rainbow", "Spectral")
    assert [p[0] for p in panels] == ["input", "ground truth (log depth)", "double.1", "predicted depth"]
    assert panels[0][2] is None and np.array_equal(panels[0][1], rgb)
    expected_log = np.array([[0.0, 1.0, np.nan], [2.0, 0.0, 0.0]])  # log of 1, e, e^2 by hand
    np.testing.assert_allclose(panels[1][1], expected_log, atol=1e-12)
    out = plot_feature_grid([row], tmp_path / "f.png", figsize=(8, 2), dpi=40)
    img = mpimg.imread(out)[..., :3]
    red = (img[..., 0] > 0.9) & (img[..., 1] < 0.1) & (img[..., 2] < 0.1)
    assert red.sum() > 20  # the input image is drawn as is, not through a colormap
