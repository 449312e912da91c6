"""Issue 11 "Never lose a run": validation before deletion, safe re-runs, clean errors (fast cases).

The cases that need a trained run live in test_cli.py (they share its trained run); the full
crash -> resume -> keep -> retrain cycle through `train` is the slow test at the end.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.io_utils import SKIPPED_KEY, BadSampleError, SkipCounter
from experiments.__main__ import main
from experiments.config import CONFIG_DIR, load_experiment
from experiments.config_loading import ConfigError
from experiments.run_state import FINISHED_FILE, apply_plan, plan_run
from experiments.synthetic_data import MARKER, clear_synthetic_root

REPO = Path(__file__).resolve().parents[2]
FE2E = str(CONFIG_DIR / "fe2e.yaml")


def a_finished_run(run_dir: Path, overrides: list[str]) -> None:
    """A run folder as `train` leaves it, plus a file of the user's: the config written by the
    same code path the command uses, a checkpoint, FINISHED.json, notes.txt."""
    from experiments.runner import write_run_metadata

    write_run_metadata(load_experiment([FE2E], overrides))
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"two days of GPU time")
    (run_dir / FINISHED_FILE).write_text("{}")
    (run_dir / "notes.txt").write_text("my notes")


def safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """A safetensors file written by hand from the format's definition (u64 header size, JSON, data)."""
    header, data = {}, b""
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


# ---------------------------------------------------------------------------------------- item 1
def test_item1_a_wrong_weights_folder_leaves_the_old_run_untouched(tmp_path, data_overrides, capsys):
    """`make fe2e WEIGHTS=<empty folder>` (overwrite=true) deleted runs/fe2e/fe2e before checking anything."""
    runs = tmp_path / "runs"
    a_finished_run(runs / "fe2e" / "fe2e", [f"runs_dir={runs}", *data_overrides])
    weights = tmp_path / "weights"
    weights.mkdir()
    code = main(["train", "--config", FE2E, "--config", str(CONFIG_DIR / "backbone/step1x-edit.yaml"),
                 *data_overrides, f"runs_dir={runs}", f"backbone.weights={weights}/step1x-edit",
                 f"backbone.prompt_embeds={weights}/step1x-edit/empty_prompt.safetensors", "overwrite=true"])
    assert code == 2
    assert f"{weights}/step1x-edit" in capsys.readouterr().err
    assert (runs / "fe2e/fe2e/notes.txt").read_text() == "my notes"
    assert (runs / "fe2e/fe2e/checkpoints/last.ckpt").read_bytes() == b"two days of GPU time"


def test_item1_method_backbone_pairing_is_checked_first(tmp_path, data_overrides, capsys):
    runs = tmp_path / "runs"
    a_finished_run(runs / "fe2e" / "fe2e", [f"runs_dir={runs}", *data_overrides])
    code = main(["train", "--config", FE2E, *data_overrides, f"runs_dir={runs}", "backbone.name=tiny-generator",
                 "overwrite=true"])
    assert code == 2 and "editor" in capsys.readouterr().err
    assert (runs / "fe2e/fe2e/notes.txt").is_file()


# ---------------------------------------------------------------------------------------- item 2
@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", " run"])
def test_item2_run_and_experiment_names_are_one_plain_folder(name):
    for key in ("run", "experiment"):
        with pytest.raises(ConfigError, match=key):
            load_experiment([FE2E], [f"{key}='{name}'"])


def test_item2_run_dotdot_does_not_delete_runs(tmp_path, data_overrides, capsys):
    runs = tmp_path / "runs"
    (runs / "exp").mkdir(parents=True)
    (runs / "exp" / "keep.txt").write_text("x")
    assert main(["train", "--config", FE2E, *data_overrides, f"runs_dir={runs}", "experiment=exp", "run=..",
                 "overwrite=true"]) == 2
    assert "run='..'" in capsys.readouterr().err
    assert (runs / "exp" / "keep.txt").is_file()


# ---------------------------------------------------------------------------------------- item 3
def test_item3_synth_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["synth", "--out", str(out), "--preset", "test"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "SYNTHETIC.txt" in err
    assert (out / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_item3_rewriting_its_own_folder_removes_only_what_synth_writes(tmp_path):
    root = tmp_path / "synthetic"
    for sub in ("hypersim", "vkitti", "eval"):
        (root / sub).mkdir(parents=True)
        (root / sub / "old.bin").write_bytes(b"0")
    (root / MARKER).write_text("{}")
    (root / "README.mine").write_text("a user's file beside the data")
    clear_synthetic_root(root)
    assert sorted(p.name for p in root.iterdir()) == ["README.mine", MARKER]


# ---------------------------------------------------------------------------------------- item 4
def test_item4_plans_keep_resume_and_move_aside(tmp_path, data_overrides):
    runs = tmp_path / "runs"
    base = [f"runs_dir={runs}", *data_overrides]
    run_dir = runs / "fe2e" / "fe2e"
    a_finished_run(run_dir, base)
    keep = load_experiment([FE2E], [*base, "existing_run=keep"])
    assert plan_run(keep).action == "keep"

    (run_dir / FINISHED_FILE).unlink()  # a crash: checkpoint but no FINISHED.json
    plan = plan_run(keep)
    assert plan.action == "resume" and plan.checkpoint == run_dir / "checkpoints" / "last.ckpt"

    changed = load_experiment([FE2E], [*base, "existing_run=keep", "trainer.max_epochs=7"])
    plan = plan_run(changed)
    assert plan.action == "fresh" and "trainer.max_epochs" in plan.reason
    moved = apply_plan(changed, plan).moved_to
    assert moved.parent == run_dir.parent and moved.name.startswith("fe2e.replaced-")
    assert not run_dir.exists() and (moved / "notes.txt").read_text() == "my notes"

    a_finished_run(run_dir, base)
    retrain = load_experiment([FE2E], [*base, "existing_run=retrain"])
    second = apply_plan(retrain, plan_run(retrain)).moved_to
    assert second != moved and (second / "checkpoints/last.ckpt").is_file() and (moved / "notes.txt").is_file()

    with pytest.raises(FileExistsError, match="existing_run=keep"):
        a_finished_run(run_dir, base)
        plan_run(load_experiment([FE2E], base))  # by hand, without resume=last: refused


def test_item4_make_targets_pass_keep_and_force_retrains():
    def dry(*args: str) -> str:
        env = {**os.environ, "MAKEFLAGS": ""}
        return subprocess.run(["make", "-n", "-W", ".venv/.installed", *args], cwd=REPO, capture_output=True,
                              text=True, env=env, check=False).stdout

    for target in ("fe2e", "ablation-editor-vs-t2i", "ablation-fe2e"):
        out = dry(target, "DATA_ROOT=/d")
        trains = [line for line in out.splitlines() if " train " in line]
        assert trains and all("existing_run=keep" in line and "overwrite" not in line for line in trains), target
    assert "existing_run=retrain" in dry("fe2e", "DATA_ROOT=/d", "FORCE=1")
    helptext = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, check=False).stdout
    assert "FORCE=1" in helptext and "moving" in helptext and "resumes" in helptext


def test_item4_checkpoint_every_n_steps_refreshes_last_ckpt_mid_epoch(tmp_path, data_overrides):
    """A crash in the middle of an epoch keeps the steps done: last.ckpt (the file a resume reads) is
    rewritten every N steps, also after an epoch checkpoint wrote it, and no versioned copy
    (last-v1.ckpt) is left beside it (two ModelCheckpoints once both claimed the name)."""
    import lightning as L

    from experiments.datasets import build_datamodule
    from experiments.runner import build_module, build_trainer

    links = []

    class Crash(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 2:  # epoch 0 has ended: last.ckpt links to its checkpoint
                last = cfg.run_dir / "checkpoints" / "last.ckpt"
                links.append((last.is_symlink() and os.readlink(last), last.resolve().name))

        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 4:  # before the checkpoint callbacks' hooks of step 4
                raise KeyError("simulated crash")

    cfg = load_experiment([FE2E], [*data_overrides, f"runs_dir={tmp_path}", "data.batches_per_epoch=2",
                                   "evaluation.benchmarks=[]", "features.blocks=[]",
                                   "trainer.checkpoint_every_n_steps=3"])
    trainer = build_trainer(cfg, train=True, callbacks=[Crash()])
    with pytest.raises(KeyError, match="simulated crash"):
        trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    folder = cfg.run_dir / "checkpoints"
    # steps 1-2 = epoch 0 (its end writes epoch000 and last), step 3 = the step refresh, step 4 crashes
    assert sorted(p.name for p in folder.iterdir()) == ["epoch000.ckpt", "last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 3
    assert links == [("epoch000.ckpt", "epoch000.ckpt")]  # relative: valid wherever the run folder moves
    assert not (folder / "last.ckpt").is_symlink()  # replaced the epoch-end link, did not write through it
    assert torch.load(folder / "epoch000.ckpt", weights_only=True)["global_step"] == 2


# ---------------------------------------------------------------------------------------- item 7
def test_item7_sixteen_bit_grey_png_is_read_at_its_own_scale(tmp_path):
    from experiments.commands.predict import load_rgb

    grey = np.array([[0, 1000, 30000], [40000, 60000, 65535]], np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    rgb = load_rgb(tmp_path / "g16.png")
    expected = grey.astype(np.float64) / 65535 * 2 - 1
    assert rgb.shape == (1, 3, 2, 3)
    for c in range(3):
        np.testing.assert_allclose(rgb[0, c].numpy(), expected, atol=1e-6)
    Image.fromarray((grey // 257).astype(np.uint8)).save(tmp_path / "g8.png")
    np.testing.assert_allclose(load_rgb(tmp_path / "g8.png")[0, 1].numpy(), (grey // 257) / 255 * 2 - 1, atol=1e-6)


def test_item7_inputs_are_checked_before_the_output_folder_exists(tmp_path, data_overrides, capsys):
    from experiments.runner import write_run_metadata

    write_run_metadata(load_experiment([FE2E], [*data_overrides, f"runs_dir={tmp_path}/runs"]))
    run = tmp_path / "runs/fe2e/fe2e"  # an untrained run: predict uses the initial backbone
    (tmp_path / "broken.png").write_bytes(b"not a png")
    for source in (tmp_path / "nothing-here", tmp_path / "broken.png"):
        out = tmp_path / "out"
        assert main(["predict", "--checkpoint", str(run), "--input", str(source), "--output", str(out)]) == 2
        assert str(source) in capsys.readouterr().err
        assert not out.exists()


# ---------------------------------------------------------------------------------------- item 9
@pytest.mark.parametrize("override,key", [("data.batch_size=0", "data.batch_size"),
                                          ("data.hypersim_probability=-1", "data.hypersim_probability"),
                                          ("data.vkitti_probability=1.5", "data.vkitti_probability")])
def test_item9_loader_settings_out_of_range_name_the_key(override, key, tmp_path, data_overrides, capsys):
    assert main(["train", "--config", FE2E, *data_overrides, f"runs_dir={tmp_path}", override]) == 2
    assert key in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["step1x-single-file", "flux-diffusers"])
def test_item9_truncated_weights_file_is_named(tmp_path, data_overrides, layout, capsys):
    weights = tmp_path / "w"
    (weights / "vae").mkdir(parents=True)
    (weights / "vae/config.json").write_text("{}")
    (weights / "vae/diffusion_pytorch_model.safetensors").write_bytes(safetensors_bytes({"a": np.ones(4)}))
    whole = safetensors_bytes({"x.weight": np.ones((64, 64)), "y.weight": np.ones((64, 64))})
    if layout == "step1x-single-file":
        bad, configs = weights / "step1x-edit-i1258.safetensors", ["--config", str(CONFIG_DIR / "backbone/step1x-edit.yaml")]
    else:
        (weights / "transformer").mkdir()
        (weights / "transformer/config.json").write_text("{}")
        bad, configs = (weights / "transformer/diffusion_pytorch_model.safetensors",
                        ["--config", str(CONFIG_DIR / "ablation/editor_vs_t2i/generator.yaml"),
                         "--config", str(CONFIG_DIR / "backbone/flux-dev.yaml")])
    bad.write_bytes(whole[: len(whole) // 2])
    prompt = tmp_path / "prompt.safetensors"
    prompt.write_bytes(safetensors_bytes({"prompt_embeds": np.ones((2, 4))}))
    code = main(["evaluate", "--benchmarks", "kitti", "--config", FE2E, *configs, *data_overrides,
                 f"runs_dir={tmp_path}/runs", f"backbone.weights={weights}", f"backbone.prompt_embeds={prompt}"])
    err = capsys.readouterr().err
    assert code == 2 and str(bad) in err and "truncated" in err
    assert not (tmp_path / "runs").exists()


def test_item9_every_benchmark_sample_bad_is_a_named_error(tmp_path):
    from datamodules.benchmarks import DepthBenchmark
    from datamodules.benchmarks.protocol import load_protocols
    from tests.datamodules.test_benchmarks_depth import make_tar, png_bytes, write_list

    make_tar(tmp_path / "nyuv2/nyu_labeled_extracted.tar", {"a/rgb_1.png": b"junk", "a/depth_1.png": png_bytes(
        np.ones((480, 640), np.uint16))})
    write_list(tmp_path, "data_split/nyu/labeled/filename_list_test.txt", ["a/rgb_1.png a/depth_1.png a/filled_1.png"])
    with pytest.raises(BadSampleError, match="every one of the 1 listed samples.*a/rgb_1.png"):
        DepthBenchmark("nyuv2", tmp_path, load_protocols().depth["nyuv2"], on_bad_sample="skip")


def test_item9_normal_metric_skips_name_the_sample(caplog):
    from types import SimpleNamespace

    from experiments.scoring import BenchmarkScorer, EvalConfig

    ev = BenchmarkScorer(EvalConfig(benchmarks=["nyuv2_normal"], on_bad_sample="skip"), "log")
    trainer = SimpleNamespace(datamodule=SimpleNamespace(test_dataset_names=["nyuv2_normal"]))
    normal = torch.zeros(2, 3, 4, 4)
    normal[:, 2] = 1
    pred = {"depth": torch.rand(2, 1, 4, 4), "normal": normal.clone()}
    pred["normal"][1] = float("nan")
    batch = {"rgb": torch.zeros(2, 3, 4, 4), "normal": normal, "valid_mask": torch.ones(2, 1, 4, 4, dtype=torch.bool),
             "name": ["scene_a/0001", "scene_b/0042"]}
    with caplog.at_level(logging.WARNING):
        ev.on_test_batch_end(trainer, None, pred, batch, 0, 0)
    assert "scene_b/0042" in caplog.text and "batch item" not in caplog.text
    assert int(ev.normal_metrics["nyuv2_normal"].num_skipped) == 1


class _HalfBad(torch.utils.data.Dataset):
    """Odd indices are bad samples; loads go through SkipCounter as the training readers do."""

    def __init__(self):
        self.skips = SkipCounter("skip", "halfbad")

    def __len__(self):
        return 8

    def _load(self, i):
        if i % 2:
            raise BadSampleError(f"sample {i} is bad")
        return {"x": torch.tensor(float(i))}

    def __getitem__(self, i):
        return self.skips.get(i, len(self), self._load)


def test_item9_skips_made_in_loader_workers_reach_the_main_process():
    ds = _HalfBad()
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="fork")
    total = sum(int(batch[SKIPPED_KEY].sum()) for batch in loader)
    assert total == 4  # indices 1, 3, 5, 7 each skipped once (to 2, 4, 6, 0)
    assert ds.skips.num_skipped == 0  # what the main process's counter saw: nothing


class _Crash(RuntimeError):
    pass


@pytest.mark.slow
def test_item4_crash_resume_keep_and_retrain_through_train(tmp_path, data_overrides, monkeypatch, caplog):
    """The Make cycle through `train ... existing_run=keep`: a crashed run resumes from its step
    checkpoint, a finished one is kept untouched, a changed config moves it aside and retrains."""
    import lightning as L

    import experiments.runner as runner  # `train` imports build_trainer from here when it runs

    class CrashAt(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                raise _Crash("power cut")

    real = runner.build_trainer
    monkeypatch.setattr(runner, "build_trainer", lambda cfg, train=True: real(cfg, train=train, callbacks=[CrashAt()]))
    runs = tmp_path / "runs"
    args = ["train", "--config", FE2E, *data_overrides, f"runs_dir={runs}", "data.batches_per_epoch=3",
            "trainer.max_epochs=1", "evaluation.benchmarks=[]", "features.blocks=[]",
            "trainer.checkpoint_every_n_steps=1", "existing_run=keep"]
    run_dir = runs / "fe2e" / "fe2e"
    with pytest.raises(_Crash):
        main(args)
    assert not (run_dir / FINISHED_FILE).exists()
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 1
    monkeypatch.setattr(runner, "build_trainer", real)

    with caplog.at_level(logging.INFO):
        assert main(args) == 0
    assert "resuming from" in caplog.text
    assert json.loads((run_dir / FINISHED_FILE).read_text())["steps"] == 3
    (run_dir / "notes.txt").write_text("mine")
    stamp = (run_dir / "checkpoints/last.ckpt").stat().st_mtime_ns

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(args) == 0
    assert "nothing to do" in caplog.text
    assert (run_dir / "checkpoints/last.ckpt").stat().st_mtime_ns == stamp

    assert main([*args, "data.batches_per_epoch=2"]) == 0
    old = [p for p in run_dir.parent.iterdir() if p.name.startswith("fe2e.replaced-")]
    assert len(old) == 1 and (old[0] / "notes.txt").read_text() == "mine"
    assert json.loads((old[0] / FINISHED_FILE).read_text())["steps"] == 3
    assert json.loads((run_dir / FINISHED_FILE).read_text())["steps"] == 2


@pytest.mark.slow
def test_item4_mid_epoch_resume_is_exact(tmp_path, data_overrides):
    """A run crashed in the middle of its second epoch and resumed from the step checkpoint ends
    with exactly the weights of an uninterrupted run (same batches, noise, optimizer state)."""
    import lightning as L

    from experiments.datasets import build_datamodule
    from experiments.runner import build_module, build_trainer

    class CrashAt(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 5:
                raise _Crash("power cut")

    def fit(name, callbacks=(), ckpt=None):
        cfg = load_experiment([FE2E], [*data_overrides, f"runs_dir={tmp_path}", f"run={name}",
                                       "data.batches_per_epoch=3", "trainer.max_epochs=2", "data.num_workers=1",
                                       "evaluation.benchmarks=[]", "features.blocks=[]",
                                       "trainer.checkpoint_every_n_steps=1"])
        L.seed_everything(cfg.seed, workers=True)
        build_trainer(cfg, callbacks=list(callbacks)).fit(build_module(cfg), datamodule=build_datamodule(cfg),
                                                          ckpt_path=ckpt)
        return cfg.run_dir / "checkpoints" / "last.ckpt"

    whole = torch.load(fit("whole"), weights_only=True)
    with pytest.raises(_Crash):
        fit("crashed", [CrashAt()])
    last = tmp_path / "fe2e/crashed/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4  # epoch 1, one batch in
    resumed = torch.load(fit("crashed", ckpt=str(last)), weights_only=True)
    assert resumed["global_step"] == whole["global_step"] == 6
    assert resumed["state_dict"].keys() == whole["state_dict"].keys()
    for key, value in whole["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
