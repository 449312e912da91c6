"""Event files -> DataFrame round trip, TensorBoard smoothing, epoch mapping, loss plot size."""

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg
from torch.utils.tensorboard import SummaryWriter

from analysis.curves import (
    infer_steps_per_epoch,
    load_scalars,
    plot_loss_curves,
    smooth,
    steps_to_epochs,
)

# values exactly representable in float32, so the round trip is exact
LOSS = {"editor": [0.5, 0.25, 0.125, 0.0625, 0.09375, 0.078125],
        "generator": [0.75, 0.5, 0.375, 0.25, 0.3125, 0.28125]}
STEPS = [0, 2, 4, 6, 8, 10]  # 4 steps per epoch


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for run, values in LOSS.items():
        w = SummaryWriter(str(root / run))
        for s, v in zip(STEPS, values):
            w.add_scalar("train/loss", v, s)
            w.add_scalar("epoch", s // 4, s)
        w.add_scalar("train/lr", 1e-4, 0)
        w.close()
    return root


def test_load_scalars_reads_back_exactly(runs):
    df = load_scalars([runs / "editor", runs / "generator"], tags=["train/loss", "epoch"])
    assert list(df.columns) == ["run", "tag", "step", "wall_time", "value"]
    for run, values in LOSS.items():
        part = df[(df.run == run) & (df.tag == "train/loss")]
        assert part["step"].tolist() == STEPS
        assert part["value"].tolist() == values
        ep = df[(df.run == run) & (df.tag == "epoch")]
        assert ep["value"].tolist() == [0, 0, 1, 1, 2, 2]
    assert "train/lr" not in set(df.tag)
    labelled = load_scalars({"E": runs / "editor"})
    assert set(labelled.run) == {"E"} and "train/lr" in set(labelled.tag)


def test_load_scalars_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="event files"):
        load_scalars([tmp_path])


def test_smooth_matches_hand_ema():
    x = [1.0, 3.0, 2.0, 6.0]
    a = 0.5
    # state: s1 = .5, s2 = .25+1.5 = 1.75, s3 = .875+1 = 1.875, s4 = .9375+3 = 3.9375
    # debias: 1-a^t = .5, .75, .875, .9375
    expected = [1.0, 1.75 / 0.75, 1.875 / 0.875, 3.9375 / 0.9375]
    np.testing.assert_allclose(smooth(np.array(x), a), expected, rtol=1e-12)
    s = smooth(pd.Series(x, index=[10, 11, 12, 13]), a)
    assert list(s.index) == [10, 11, 12, 13]
    np.testing.assert_allclose(s.to_numpy(), expected)
    np.testing.assert_allclose(smooth(np.array(x), 0.0), x)


def test_steps_to_epochs_from_logged_epoch():
    epochs = pd.DataFrame({"step": [0, 2, 4, 6, 8, 10], "value": [0, 0, 1, 1, 2, 2]})
    # 4 steps per epoch: bounds max s/(e+1) = 10/3, min s/e (e > 0) = 4 -> n = 4
    got = steps_to_epochs([0, 2, 4, 6, 10, 12], epochs)
    np.testing.assert_allclose(got, [0, 0.5, 1, 1.5, 2.5, 3.0])
    np.testing.assert_allclose(steps_to_epochs([5], steps_per_epoch=4), [1.25])


def test_infer_steps_per_epoch_lightning_pattern():
    # what Lightning logged for 10 batches/epoch, log_every_n_steps=3 (steps 2, 5, ..., 29)
    steps = np.arange(2, 30, 3)
    epochs = pd.DataFrame({"step": steps, "value": steps // 10})
    assert infer_steps_per_epoch(epochs) == 10.0
    only_first = pd.DataFrame({"step": [0, 3, 6], "value": [0, 0, 0]})
    assert infer_steps_per_epoch(only_first) == 7.0
    with pytest.raises(ValueError, match="constant number of steps"):
        infer_steps_per_epoch(pd.DataFrame({"step": [5, 6], "value": [1, 0]}))


def test_plot_loss_curves_png_size(runs, tmp_path):
    df = load_scalars([runs / "editor", runs / "generator"])
    out = plot_loss_curves(df, tmp_path / "loss.png", inset_epochs=1, labels={"editor": "editor"},
                           title="t", footnote="editor: tiny, synthetic, 10 steps", figsize=(6, 4), dpi=50)
    img = mpimg.imread(out)
    assert img.shape[:2] == (200, 300)
    assert img[..., :3].std() > 0.01  # something drawn
