"""What a `train` command spends outside the training steps: start-up imports, the validation
cadence (always at the end too), and speed-only settings that must not make Make retrain a run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import yaml

from experiments.config import CONFIG_DIR, load_experiment
from experiments.datasets import build_datamodule
from experiments.run_state import FINISHED_FILE, plan_run
from experiments.runner import build_module, build_trainer

ROOT = Path(__file__).resolve().parents[2]
FE2E = CONFIG_DIR / "fe2e.yaml"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]], ids=["help", "train-help"])
def test_help_imports_neither_torch_nor_lightning(argv):
    code = (f"import sys\nfrom experiments.__main__ import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('torch', 'lightning', 'matplotlib', 'pandas', 'diffusers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "usage: python -m experiments" in out
    assert out.strip().splitlines()[-1] == "[]"


class ValidationEpochs(L.Callback):
    """(epoch, global step) of every validation run during fit."""

    def __init__(self):
        self.seen: list[tuple[int, int]] = []

    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            self.seen.append((trainer.current_epoch, trainer.global_step))


@pytest.mark.parametrize("overrides, expected", [
    # 5 epochs validated every 2: epochs 2 and 4 (1-based), and the last one, 5
    (["trainer.max_epochs=5", "trainer.check_val_every_n_epoch=2"], [(1, 4), (3, 8), (4, 10)]),
    # the last epoch is on the cadence: validated once
    (["trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2"], [(1, 4), (3, 8)]),
    # max_steps reached in the middle of epoch 2 (2 batches per epoch), cadence 5 epochs: at that step
    (["trainer.max_epochs=10", "trainer.max_steps=3", "trainer.check_val_every_n_epoch=5"], [(1, 3)]),
], ids=["off-cadence-end", "on-cadence-end", "max-steps"])
def test_a_run_always_validates_at_its_end(tmp_path, data_overrides, overrides, expected):
    cfg = load_experiment([FE2E], [*data_overrides, f"runs_dir={tmp_path}", "evaluation.benchmarks=[eth3d]",
                                   "features.blocks=[]", "trainer.limit_val_batches=1", *overrides])
    seen = ValidationEpochs()
    trainer = build_trainer(cfg, callbacks=[seen])
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    assert seen.seen == expected
    assert trainer.global_step == expected[-1][1]


def test_speed_settings_do_not_make_keep_retrain(tmp_path, data_overrides):
    """A run written before data.sample_cache_mb / data.latent_cache_mb existed (config.yaml without
    them), or with other values, is still 'unchanged' for existing_run=keep: they change no number."""
    from experiments.runner import write_run_metadata

    base = [*data_overrides, f"runs_dir={tmp_path}", "existing_run=keep"]
    cfg = load_experiment([FE2E], base)
    write_run_metadata(cfg)
    written = yaml.safe_load((cfg.run_dir / "config.yaml").read_text())
    assert "latent_cache_mb" in written["data"] and "sample_cache_mb" in written["data"]
    del written["data"]["latent_cache_mb"], written["data"]["sample_cache_mb"]
    (cfg.run_dir / "config.yaml").write_text(yaml.safe_dump(written))
    (cfg.run_dir / "checkpoints").mkdir()
    (cfg.run_dir / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (cfg.run_dir / FINISHED_FILE).write_text("{}")
    assert plan_run(cfg).action == "keep"
    assert plan_run(load_experiment([FE2E], [*base, "data.latent_cache_mb=0", "data.sample_cache_mb=0"])).action == "keep"
    changed = plan_run(load_experiment([FE2E], [*base, "data.batch_size=3"]))
    assert changed.action == "fresh" and "data.batch_size" in changed.reason
