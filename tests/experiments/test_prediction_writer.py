"""PredictionWriter: the documented files and bytes, output subsets, errors naming the file."""

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from experiments.prediction_writer import PredictionWriter, parse_outputs


def _pred(h=37, w=53, seed=0):
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(1, 1, h, w, generator=g)
    depth[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.5])  # the ends of the colormap
    normal = torch.nn.functional.normalize(torch.randn(1, 3, h, w, generator=g), dim=1)
    return {"depth": depth, "normal": normal}


def test_files_and_bytes_match_the_float_formulas(tmp_path):
    preds = [_pred(seed=s) for s in range(3)]
    with PredictionWriter(tmp_path) as writer:
        for i, pred in enumerate(preds):
            writer.submit(f"img{i}", pred)
    for i, pred in enumerate(preds):
        depth = pred["depth"][0, 0].numpy()
        np.testing.assert_array_equal(np.load(tmp_path / f"img{i}_depth.npy"), depth)
        png = np.asarray(Image.open(tmp_path / f"img{i}_depth.png"))
        np.testing.assert_array_equal(png, (depth * 65535 + 0.5).astype(np.uint16))
        colour = (colormaps["Spectral"](depth)[..., :3] * 255 + 0.5).astype(np.uint8)  # matplotlib's float path
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"img{i}_depth_color.png")), colour)
        normal = pred["normal"][0].permute(1, 2, 0).numpy()
        expected = ((normal + 1) / 2 * 255 + 0.5).clip(0, 255).astype(np.uint8)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"img{i}_normal.png")), expected)


def test_only_the_requested_outputs(tmp_path):
    with PredictionWriter(tmp_path, parse_outputs("npy, color")) as writer:
        writer.submit("a", _pred())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_depth.npy", "a_depth_color.png"]


def test_a_normal_only_model_writes_only_its_normals(tmp_path):
    with PredictionWriter(tmp_path) as writer:  # e.g. GenPercept's normal model
        writer.submit("a", {"normal": _pred()["normal"]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_normal.png"]


def test_bad_arguments_and_write_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="--outputs.*png16"):
        parse_outputs("npy,png16")
    with pytest.raises(ValueError, match="--png-compression"):
        PredictionWriter(tmp_path, png_compression=12)
    writer = PredictionWriter(tmp_path / "missing_folder")
    writer.submit("b", _pred())
    with pytest.raises(OSError, match=r"missing_folder/b_depth.npy"):
        writer.close()


def test_predict_command_rejects_bad_output_options_with_exit_2(tmp_path, capsys):
    from experiments.__main__ import main

    base = ["predict", "--checkpoint", str(tmp_path / "no_run"), "--input", str(tmp_path), "--output", str(tmp_path / "o")]
    assert main([*base, "--outputs", "npy,jpeg"]) == 2
    assert main([*base, "--png-compression", "11"]) == 2
    err = capsys.readouterr().err
    assert "--outputs" in err and "--png-compression" in err
