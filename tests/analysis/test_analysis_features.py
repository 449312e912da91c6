"""feature_norm_map against NumPy on a hand-made tensor; upsampling; the grid PNG."""

import numpy as np
import pytest
import torch
from matplotlib import image as mpimg

from analysis.features import feature_norm_map, plot_feature_grid, upsample_to


def _tokens():
    # B=2, text T=3, grid h2=2 x w2=3 (n=6), C=4; L = 3 + 6 + 6 = 15
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 15, 4)).astype(np.float32)


def test_feature_norm_map_target_and_image_offsets():
    f = _tokens()
    ref_target = np.sqrt((f[:, 3:9] ** 2).sum(-1)).reshape(2, 2, 3)
    ref_image = np.sqrt((f[:, 9:15] ** 2).sum(-1)).reshape(2, 2, 3)
    got = feature_norm_map(torch.from_numpy(f), num_text_tokens=3, token_hw=(2, 3))
    np.testing.assert_allclose(got.numpy(), ref_target, rtol=1e-6)
    got_np = feature_norm_map(f, 3, (2, 3), part="image")
    np.testing.assert_allclose(got_np, ref_image, rtol=1e-6)
    # raster order: token k of the target part sits at row k // 3, col k % 3
    assert got[1, 1, 0] == pytest.approx(float(np.linalg.norm(f[1, 3 + 3])), rel=1e-6)


def test_feature_norm_map_shape_errors():
    f = _tokens()
    with pytest.raises(ValueError, match="L=15"):
        feature_norm_map(f, 2, (2, 3))
    with pytest.raises(ValueError, match="part='image'"):
        feature_norm_map(f[:, :9], 3, (2, 3), part="image")


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
