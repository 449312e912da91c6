"""The command line as a user meets it: help, clear errors with exit code 2, and a tiny run through
train -> evaluate -> predict -> table / report-ablation writing the documented files."""

from __future__ import annotations

import json
import shutil

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
            "trainer.max_epochs=2", "evaluation.benchmarks=[kitti]", "backbone.finetune=lora", "--evaluate", "eth3d"]
    assert main(args) == 0
    return runs / "fe2e" / "fe2e", args


def test_train_writes_the_run_folder(trained_run):
    run, _ = trained_run
    for rel in ("config.yaml", "git_commit.txt", "checkpoints/last.ckpt", "checkpoints/adapter.safetensors",
                "features/epoch_001.npz", "features/epoch_002.npz", "metrics.json"):
        assert (run / rel).is_file(), rel
    assert list(run.glob("events.out.tfevents.*"))
    with np.load(run / "features/epoch_002.npz") as snap:  # the feature figure's input and ground truth
        rgb, gt, pred = snap["rgb"], snap["gt_depth"], snap["depth"]
    assert rgb.shape[:2] == gt.shape == pred.shape and 0 <= rgb.min() and rgb.max() <= 1
    assert np.isfinite(gt).mean() > 0.5 and np.nanmin(gt) > 0  # metres; NaN marks invalid pixels
    meta = json.loads((run / "metrics.json").read_text())["meta"]
    assert meta["data"] == "synthetic" and meta["backbone"] == "tiny-editor" and meta["steps"] == 4


def test_train_evaluate_scores_as_the_evaluate_command(trained_run, tmp_path):
    """`train --evaluate` scored the run in-process; `evaluate` on a copy of it gives the same numbers."""
    run, args = trained_run
    ours = json.loads((run / "metrics.json").read_text())["depth"]["eth3d"]
    copy = tmp_path / "runs" / "fe2e" / "copy"
    shutil.copytree(run, copy)
    (copy / "metrics.json").unlink()
    assert main(["evaluate", "--checkpoint", str(copy), "--benchmarks", "eth3d"]) == 0
    assert json.loads((copy / "metrics.json").read_text())["depth"]["eth3d"] == ours
    # a kept (finished) run is scored too, without training again
    assert main([*args[:-2], "existing_run=keep", "--evaluate", "kitti"]) == 0
    assert "kitti" in json.loads((run / "metrics.json").read_text())["depth"]


def test_train_evaluate_unknown_benchmark_exits_2_before_training(tmp_path, data_overrides, capsys):
    args = ["train", "--config", str(CONFIG_DIR / "fe2e.yaml"), *data_overrides, f"runs_dir={tmp_path}",
            "--evaluate", "kitty"]
    assert main(args) == 2
    assert "kitty" in capsys.readouterr().err and not (tmp_path / "fe2e").exists()


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


# ---- issue 11: results go where the user pointed; clean errors naming the file -------------------
def _copy_run(run, dst):
    import shutil

    shutil.copytree(run, dst)
    return dst


def test_evaluate_a_copied_run_writes_into_the_copy(trained_run, tmp_path):
    """Issue 11 item 5: evaluate followed config.yaml's runs_dir/experiment/run back to the original."""
    run, _ = trained_run
    copy = _copy_run(run, tmp_path / "elsewhere/exp/copied")
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["evaluate", "--checkpoint", str(copy), "--benchmarks", "eth3d"]) == 0
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # the original run is untouched
    metrics = json.loads((copy / "metrics.json").read_text())
    assert "eth3d" in metrics["depth"] and metrics["meta"]["run"] == "exp/copied"
    assert (copy / "eval/eth3d/per_sample.csv").is_file()


def test_evaluate_config_refuses_the_folder_of_a_trained_run(trained_run, data_overrides, capsys):
    """Issue 11 item 5: `evaluate --config` with a trained run's name overwrote its config.yaml."""
    from experiments.config import load_experiment

    run, _ = trained_run
    config = (run / "config.yaml").read_text()
    assert main(["evaluate", "--benchmarks", "kitti", "--config", str(CONFIG_DIR / "fe2e.yaml"), *data_overrides,
                 f"runs_dir={run.parent.parent}"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == config
    load_experiment([run / "config.yaml"])


def test_predict_skips_and_counts_unreadable_files(trained_run, tmp_path, caplog):
    """Issue 11 item 7: one unreadable file stopped the whole folder."""
    import logging

    run, _ = trained_run
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(src / "good.png")
    (src / "garbage.png").write_bytes(b"\x89PNG but not really")
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(src / "cut.png")
    (src / "cut.png").write_bytes((src / "cut.png").read_bytes()[:60])  # header fine, pixel data truncated
    with caplog.at_level(logging.WARNING):
        assert main(["predict", "--checkpoint", str(run), "--input", str(src), "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out/good_depth.npy").is_file() and not (tmp_path / "out/cut_depth.npy").exists()
    assert "skipped 2 of 3 inputs" in caplog.text and "garbage.png" in caplog.text and "cut.png" in caplog.text


def test_lora_rank_mismatch_names_the_checkpoint(trained_run, capsys):
    """Issue 11 item 9: a size-mismatch RuntimeError traceback."""
    run, _ = trained_run
    assert main(["evaluate", "--checkpoint", str(run), "--benchmarks", "kitti", "backbone.lora_rank=4"]) == 2
    err = capsys.readouterr().err
    assert "last.ckpt" in err and "lora_rank" in err


def test_peft_adapter_onto_a_fully_finetuned_model_is_refused_before_writing(trained_run, tmp_path, data_overrides,
                                                                              capsys):
    run, _ = trained_run
    adapter = run / "checkpoints/adapter.safetensors"
    assert main(["evaluate", "--benchmarks", "kitti", "--adapter", str(adapter), "--config",
                 str(CONFIG_DIR / "fe2e.yaml"), *data_overrides, f"runs_dir={tmp_path}", "backbone.finetune=full"]) == 2
    err = capsys.readouterr().err
    assert str(adapter) in err and "finetune" in err
    assert not (tmp_path / "fe2e").exists()


def test_truncated_adapter_is_named(trained_run, tmp_path, data_overrides, capsys):
    run, _ = trained_run
    cut = tmp_path / "adapter.safetensors"
    whole = (run / "checkpoints/adapter.safetensors").read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    assert main(["evaluate", "--benchmarks", "kitti", "--adapter", str(cut), "--config",
                 str(CONFIG_DIR / "fe2e.yaml"), *data_overrides, f"runs_dir={tmp_path}", "backbone.finetune=lora"]) == 2
    err = capsys.readouterr().err
    assert str(cut) in err and "truncated" in err


class _Payload:
    """Pickles as a call to Path.touch: it runs only if a loader executes pickled code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.target),))


def test_pickle_payload_checkpoint_is_blocked_and_named(trained_run, tmp_path, capsys):
    import torch

    run, _ = trained_run
    copy = tmp_path / "runs/exp/evil"
    (copy / "checkpoints").mkdir(parents=True)
    (copy / "config.yaml").write_text((run / "config.yaml").read_text())
    flag = tmp_path / "payload-ran"
    torch.save({"state_dict": {}, "global_step": 1, "x": _Payload(flag)}, copy / "checkpoints/last.ckpt")
    for command in (["evaluate", "--checkpoint", str(copy), "--benchmarks", "kitti"],
                    ["train", "--config", str(copy / "config.yaml"), f"resume={copy}/checkpoints/last.ckpt",
                     f"runs_dir={tmp_path}/runs", "experiment=exp", "run=evil"]):
        assert main(command) == 2
        assert str(copy / "checkpoints/last.ckpt") in capsys.readouterr().err
    assert not flag.exists()


@pytest.mark.slow
def test_skip_counts_reach_metrics_json(trained_run, tmp_path, synthetic_root):
    """Issue 11 item 9: bad samples skipped under on_bad_sample=skip are counted in metrics.json."""
    import shutil

    run, _ = trained_run
    copy = _copy_run(run, tmp_path / "runs/exp/skips")
    root = tmp_path / "eval"
    shutil.copytree(synthetic_root / "eval", root)
    victim = sorted((root / "dsine_eval/nyuv2").rglob("*_normal.png"))[0]
    victim.write_bytes(b"broken")
    assert main(["evaluate", "--checkpoint", str(copy), "--benchmarks", "nyuv2_normal", f"evaluation.root={root}",
                 "evaluation.on_bad_sample=skip"]) == 0
    metrics = json.loads((copy / "metrics.json").read_text())
    assert metrics["skipped"]["nyuv2_normal"] == {"unreadable": 1, "unscored": 0}
    assert "nyuv2_normal" in metrics["normal"]
