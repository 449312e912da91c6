"""One source per fact in the config: one seed drives data order, init and noise; choices are Literal
fields checked once, with the full key; the method name is held to the backbone preset's role."""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import pytest
import torch

from experiments.__main__ import main
from experiments.config import CONFIG_DIR, load_experiment
from experiments.config_loading import ConfigError, to_yaml
from experiments.datasets import build_datamodule
from experiments.runner import METHOD_MODULES, build_module
from lightning_modules.backbones import build_backbone
from lightning_modules.choices import check_choice, literal_choices
from lightning_modules.objectives import ObjectiveConfig

FE2E = CONFIG_DIR / "fe2e.yaml"


def _load(data_overrides, *extra):
    return load_experiment([FE2E], [*data_overrides, "backbone.finetune=full", *extra])


def _what_the_seeds_drive(cfg):
    """(training batch order with flips for 2 epochs, backbone weights, first training noise draw)."""
    dm = build_datamodule(cfg)
    dm.setup("fit")
    loader = dm.train_dataloader()
    order = []
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        order += [list(map(str, batch)) for batch in loader.batch_sampler]
    weights = build_backbone(cfg.backbone).state_dict()
    noise = torch.randn(8, generator=build_module(cfg).step_generator("train"))
    return order, weights, noise


def _same(a, b) -> bool:
    (order_a, w_a, n_a), (order_b, w_b, n_b) = a, b
    return (order_a == order_b and w_a.keys() == w_b.keys() and all(torch.equal(w_a[k], w_b[k]) for k in w_a)
            and torch.equal(n_a, n_b))


def test_one_seed_drives_data_order_init_and_noise(data_overrides):
    alone = _load(data_overrides, "seed=3")
    explicit = _load(data_overrides, "seed=3", "data.seed=3", "backbone.seed=3")  # what the Makefile passes
    assert (alone.data.seed, alone.backbone.seed) == (3, 3)
    assert alone == explicit and to_yaml(alone) == to_yaml(explicit)  # the same run, the same config.yaml
    drawn = _what_the_seeds_drive(alone)
    assert _same(drawn, _what_the_seeds_drive(explicit))
    order0, weights0, noise0 = _what_the_seeds_drive(_load(data_overrides))
    order3, weights3, noise3 = drawn
    assert order3 != order0 and not torch.equal(noise3, noise0)
    assert any(not torch.equal(weights3[k], weights0[k]) for k in weights0)


def test_default_seed_is_zero_everywhere_and_written_as_numbers(data_overrides):
    cfg = _load(data_overrides)
    assert (cfg.seed, cfg.data.seed, cfg.backbone.seed) == (0, 0, 0)  # the values every older run used
    text = to_yaml(cfg)
    assert "seed: null" not in text and text.count("seed: 0") == 3


def test_an_explicit_component_seed_wins(data_overrides):
    cfg = _load(data_overrides, "seed=3", "data.seed=5")
    assert (cfg.seed, cfg.data.seed, cfg.backbone.seed) == (3, 5, 3)
    order, _, _ = _what_the_seeds_drive(cfg)
    assert order == _what_the_seeds_drive(_load(data_overrides, "seed=5"))[0]  # data order of seed 5
    assert _load(data_overrides, "seed=3", "backbone.seed=0").backbone.seed == 0  # an explicit 0 is kept


# --------------------------------------------------------------------------------------- choices
@pytest.mark.parametrize("key, value, allowed", [
    ("evaluation.on_bad_sample", "x", ["raise", "skip"]),
    ("quantization", "cubic", ["direct", "inverse", "log"]),
    ("backbone.finetune", "qlora", ["lora", "full", "frozen"]),
    ("data.vkitti_crop", "eigen", ["kb", None]),
    ("objective.kind", "flow", ["direct_adapt", "consistent_velocity"]),
    ("trainer.strategy", "deepspeed", ["auto", "ddp", "ddp_spawn", "fsdp"]),
    ("existing_run", "delete", ["refuse", "keep", "retrain"]),
])
def test_bad_choice_on_the_command_line_exits_2_naming_the_key(capsys, key, value, allowed):
    assert main(["train", "--config", str(FE2E), f"{key}={value}"]) == 2
    assert f"{key}: expected one of {allowed}, got {value!r}" in capsys.readouterr().err


def test_bad_choice_in_a_yaml_file_names_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: [" + str(FE2E) + "]\noptim:\n  schedule: step\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.schedule: expected one of \['constant', 'cosine', "
                                          r"'linear', 'exponential'\], got 'step'"):
        load_experiment([bad])


def test_a_config_built_in_python_is_held_to_the_same_literal():
    with pytest.raises(ValueError, match=r"objective\.sigma_sampling: expected one of \['uniform', 'logit_normal', "
                                         r"'shifted'\], got 'cosine'"):
        ObjectiveConfig(kind="direct_adapt", fixed_start=False, sigma_sampling="cosine")


def test_literal_choices_reads_the_annotation():
    assert literal_choices(Literal["a", "b"]) == ("a", "b")
    assert literal_choices(Optional[Literal["kb"]]) == ("kb", None)  # noqa: UP045 (typing.Union, not |)
    assert literal_choices(Literal["kb"] | None) == ("kb", None)
    assert literal_choices(str) is None and literal_choices(Optional[str]) is None  # noqa: UP045
    assert check_choice("k", "b", Literal["a", "b"]) == "b"
    with pytest.raises(ValueError, match=r"^k: expected one of \['a', 'b'\], got 'c'$"):
        check_choice("k", "c", Literal["a", "b"])


# ------------------------------------------------------------------------------- method vs preset
def test_fe2e_and_t2i_are_one_module_whose_prior_is_the_presets():
    editor = load_experiment([CONFIG_DIR / "ablation/editor_vs_t2i/editor.yaml"])
    generator = load_experiment([CONFIG_DIR / "ablation/editor_vs_t2i/generator.yaml"])
    assert METHOD_MODULES["fe2e"] is METHOD_MODULES["t2i"]
    for cfg, is_editor in ((editor, True), (generator, False)):
        module = build_module(cfg)
        module.configure_model()
        assert module.backbone.is_editor is is_editor


def test_genpercept_takes_either_prior():
    for name in ("tiny-editor", "tiny-generator"):
        cfg = load_experiment([CONFIG_DIR / "genpercept.yaml"], [f"backbone.name={name}"])
        assert cfg.backbone.name == name and cfg.method == "genpercept"


def test_method_prior_mismatch_is_refused_on_the_command_line(capsys):
    assert main(["train", "--config", str(FE2E), "method=t2i"]) == 2
    err = capsys.readouterr().err
    assert "method=t2i needs a generator backbone" in err and "backbone.name='tiny-editor' is an editor" in err


def test_replace_keeps_resolved_seeds():
    """dataclasses.replace (at_run_dir, evaluation) re-runs __post_init__ on resolved sub-configs: unchanged."""
    cfg = load_experiment([FE2E], ["seed=3", "data.seed=5"])
    moved = dataclasses.replace(cfg, run="elsewhere")
    assert (moved.seed, moved.data.seed, moved.backbone.seed) == (3, 5, 3)
