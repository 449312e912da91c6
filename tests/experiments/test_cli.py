"""The command line as a user meets it: help, clear errors with exit code 2, and a tiny run through
train -> evaluate -> predict -> table / report-ablation writing the documented files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from experiments.__main__ import COMMANDS, build_parser, main
from experiments.config import CONFIG_DIR


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_bad_config_key_exits_2_naming_the_dotted_key(capsys):
    code = main(["train", "--config", str(CONFIG_DIR / "fe2e.yaml"), "optim.learning_rate=1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "optim.learning_rate" in err and "lr" in err  # the valid keys at that level are listed


def test_wrong_type_exits_2(capsys):
    assert main(["train", "--config", str(CONFIG_DIR / "fe2e.yaml"), "trainer.max_epochs=many"]) == 2
    assert "trainer.max_epochs" in capsys.readouterr().err


def test_evaluate_missing_run_folder(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope"), "--benchmarks", "kitti"]) == 2
    assert "expected a run folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_overrides):
    runs = tmp_path_factory.mktemp("runs")
    args = ["train", "--config", str(CONFIG_DIR / "fe2e.yaml"), *data_overrides, f"runs_dir={runs}",
            "trainer.max_epochs=2", "evaluation.benchmarks=[kitti]", "backbone.finetune=lora"]
    assert main(args) == 0
    return runs / "fe2e" / "fe2e", args


def test_train_writes_the_run_folder(trained_run):
    run, _ = trained_run
    for rel in ("config.yaml", "git_commit.txt", "checkpoints/last.ckpt", "checkpoints/adapter.safetensors",
                "features/epoch_001.npz", "features/epoch_002.npz", "metrics.json"):
        assert (run / rel).is_file(), rel
    assert list(run.glob("events.out.tfevents.*"))
    meta = json.loads((run / "metrics.json").read_text())["meta"]
    assert meta["data"] == "synthetic" and meta["backbone"] == "tiny-editor" and meta["steps"] == 4


def test_training_again_into_a_used_run_folder_is_refused(trained_run, capsys):
    _, args = trained_run
    assert main(args) == 2
    assert "resume=last" in capsys.readouterr().err


def test_evaluate_then_tables(trained_run, tmp_path):
    run, _ = trained_run
    assert main(["evaluate", "--checkpoint", str(run), "--benchmarks", "kitti,eth3d,nyuv2_normal"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["depth"]) >= {"kitti", "eth3d"} and "nyuv2_normal" in metrics["normal"]
    rows = (run / "eval/kitti/per_sample.csv").read_text().splitlines()
    assert rows[0].startswith("name,abs_rel") and len(rows) == 1 + 3  # the test preset has 3 KITTI images with GT
    per_image = np.loadtxt(run / "eval/kitti/per_sample.csv", delimiter=",", skiprows=1, usecols=1)
    assert per_image.mean() == pytest.approx(metrics["depth"]["kitti"]["abs_rel"], rel=1e-9)

    assert main(["table", "depth", "--runs", str(run), "--out", str(tmp_path / "depth")]) == 0
    md = (tmp_path / "depth/table.md").read_text()
    assert "SMOKE SCALE" in md and "FE2E" in md and (tmp_path / "depth/table.tex").is_file()
    assert main(["table", "normal", "--runs", str(run), "--out", str(tmp_path / "normal")]) == 0
    assert main(["report-ablation", str(run.parent), "--out", str(tmp_path / "abl")]) == 0
    for name in ("table.md", "table.csv", "loss_curves.png", "features.png"):
        assert (tmp_path / "abl" / name).stat().st_size > 0, name


def test_predict_writes_depth_and_normal_files(trained_run, tmp_path):
    run, _ = trained_run
    rgb = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img.png")
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["predict", "--checkpoint", str(run), "--input", str(tmp_path), "--output", str(tmp_path / "out")]) == 0
    depth = np.load(tmp_path / "out/img_depth.npy")
    assert depth.shape == (50, 70) and 0 <= depth.min() and depth.max() <= 1
    png = np.asarray(Image.open(tmp_path / "out/img_depth.png"))
    assert png.dtype == np.uint16 and np.abs(png / 65535.0 - depth).max() < 1e-4
    normal = np.asarray(Image.open(tmp_path / "out/img_normal.png")).astype(float) / 255 * 2 - 1
    assert normal.shape == (50, 70, 3) and np.abs(np.linalg.norm(normal, axis=2) - 1).max() < 0.02
    assert "x LEFT" in (tmp_path / "out/CONVENTIONS.txt").read_text()


def test_evaluate_from_config_with_a_released_style_kohya_lora(tmp_path, data_overrides):
    """Without a run: backbone from config + a kohya FLUX LoRA (the released FE2E format) changes the scores."""
    import torch
    from safetensors.torch import save_file

    h, rank = 32, 4  # tiny-editor width
    g = torch.Generator().manual_seed(0)
    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.randn(rank, h, generator=g),
               "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.randn(3 * h, rank, generator=g),
               "lora_unet_double_blocks_0_img_attn_qkv.alpha": torch.tensor(4.0)}, tmp_path / "fe2e_lora.safetensors")
    common = ["evaluate", "--benchmarks", "kitti", "--config", str(CONFIG_DIR / "fe2e.yaml")]
    assert main([*common, *data_overrides, f"runs_dir={tmp_path}", "run=plain"]) == 0
    assert main([*common, "--adapter", str(tmp_path / "fe2e_lora.safetensors"), *data_overrides,
                 f"runs_dir={tmp_path}", "run=released"]) == 0
    plain = json.loads((tmp_path / "fe2e/plain/metrics.json").read_text())["depth"]["kitti"]["abs_rel"]
    released = json.loads((tmp_path / "fe2e/released/metrics.json").read_text())["depth"]["kitti"]["abs_rel"]
    assert released != pytest.approx(plain, rel=1e-6)
    assert (tmp_path / "fe2e/released/config.yaml").is_file()
