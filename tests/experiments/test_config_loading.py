"""Config loading: unknown keys, wrong types and missing values fail with the dotted path."""

from dataclasses import dataclass, field

import pytest
from omegaconf import MISSING

from experiments.config_loading import ConfigError, load_config


@dataclass
class Inner:
    rate: float = 1e-4
    """A documented float."""
    mode: str = "log"

    def __post_init__(self):
        if self.mode not in ("log", "direct"):
            raise ValueError(f"mode must be one of ['log', 'direct'], got '{self.mode}'")


@dataclass
class Outer:
    name: str = MISSING
    inner: Inner = field(default_factory=Inner)
    steps: int = 10


def test_yaml_then_overrides_in_order(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("name: a\ninner:\n  rate: 0.5\nsteps: 3\n")
    top = tmp_path / "top.yaml"
    top.write_text("defaults: [base.yaml]\nsteps: 4\n")
    cfg = load_config(Outer, [top], ["inner.mode=direct"])
    assert (cfg.name, cfg.inner.rate, cfg.inner.mode, cfg.steps) == ("a", 0.5, "direct", 4)
    assert isinstance(cfg.inner, Inner)


def test_unknown_key_names_dotted_path_and_valid_keys():
    with pytest.raises(ConfigError, match=r"'inner\.rat'.*\[mode, rate\]"):
        load_config(Outer, [], ["name=x", "inner.rat=3"])


def test_wrong_type_names_dotted_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninner:\n  rate: fast\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'inner\.rate'"):
        load_config(Outer, [bad])


def test_the_failing_layer_is_named_among_several(tmp_path):
    """Layers are merged in one call; a failure is traced back to the layer that does not fit."""
    (tmp_path / "a.yaml").write_text("name: x\n")
    (tmp_path / "b.yaml").write_text("steps: many\n")
    (tmp_path / "c.yaml").write_text("inner:\n  rate: 0.5\n")
    with pytest.raises(ConfigError, match=r"b\.yaml.*'steps'") as err:
        load_config(Outer, [tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"], ["inner.mode=direct"])
    assert "a.yaml" not in str(err.value) and "c.yaml" not in str(err.value)
    with pytest.raises(ConfigError, match=r"command line.*'steps'"):
        load_config(Outer, [tmp_path / "a.yaml", tmp_path / "c.yaml"], ["steps=lots"])


def test_missing_required_value():
    with pytest.raises(ConfigError, match="missing: name"):
        load_config(Outer)


def test_component_validation_names_section():
    with pytest.raises(ConfigError, match=r"section 'inner'.*mode must be one of"):
        load_config(Outer, [], ["name=x", "inner.mode=cubic"])


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, [tmp_path / "nope.yaml"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Outer, [], ["name"])


def test_retired_keys_dropped_from_files_rejected_on_command_line(tmp_path, caplog):
    old_run = tmp_path / "config.yaml"
    old_run.write_text("name: x\ninner:\n  rate: 0.5\n  scale: 1000.0\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'inner\.scale'"):
        load_config(Outer, [old_run])
    retired = {"inner.scale": "always 1000 now"}
    with caplog.at_level("WARNING"):
        cfg = load_config(Outer, [old_run], retired=retired)
    assert cfg.inner.rate == 0.5 and "inner.scale" in caplog.text and "always 1000 now" in caplog.text
    with pytest.raises(ConfigError, match=r"'inner\.scale' no longer exists: always 1000 now"):
        load_config(Outer, [old_run], ["inner.scale=1"], retired=retired)


def test_old_run_config_with_connector_time_scale_still_loads(tmp_path):
    from experiments.config import CONFIG_DIR, load_experiment
    from experiments.config_loading import to_yaml

    text = to_yaml(load_experiment([CONFIG_DIR / "fe2e.yaml"]))
    old = tmp_path / "config.yaml"
    old.write_text(text.replace("backbone:\n", "backbone:\n  connector_time_scale: 1000.0\n", 1))
    assert load_experiment([old]).backbone.name == load_experiment([CONFIG_DIR / "fe2e.yaml"]).backbone.name
    with pytest.raises(ConfigError, match="sigma \\* 1000"):
        load_experiment([old], ["backbone.connector_time_scale=1"])
