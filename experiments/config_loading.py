"""Structured configs: dataclass schema <- YAML files <- `key=value` overrides, validated at start-up.

Every error a user can cause (unknown key, wrong type, a value outside a field's `Literal` choices,
missing required value, a value a component rejects) is raised as `ConfigError` naming the full
dotted key and what was expected. Literal fields are checked by OmegaConf as each layer is merged;
the error lists the choices read from the annotation (lightning_modules.choices).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from lightning_modules.choices import choice_error, literal_choices

T = TypeVar("T")
log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration the user wrote cannot be used; the message names the key and the source."""


def _valid_keys(schema: DictConfig, dotted: str) -> list[str]:
    """The keys the schema allows at the level of `dotted` (its parent node)."""
    parent = dotted.rsplit(".", 1)[0] if "." in dotted else ""
    node = OmegaConf.select(schema, parent) if parent else schema
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def field_annotation(schema: type, dotted: str) -> Any:
    """The type annotation of the dataclass field at `dotted` (e.g. 'evaluation.on_bad_sample') in the
    schema class, through nested (possibly Optional) dataclass fields; None when there is no such field."""
    annotation: Any = schema
    for part in dotted.split("."):
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = inner[0] if len(inner) == 1 else None
        if not (isinstance(annotation, type) and dataclasses.is_dataclass(annotation)):
            return None
        annotation = typing.get_type_hints(annotation).get(part)
    return annotation


def _explain(err: OmegaConfBaseException, schema: DictConfig, source: str, schema_cls: type | None = None
             ) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, ConfigKeyError):
        valid = ", ".join(_valid_keys(schema, key))
        return ConfigError(f"{source}: unknown config key '{key}'; valid keys at that level: [{valid}]")
    choices = literal_choices(field_annotation(schema_cls, key)) if schema_cls is not None else None
    if isinstance(err, ValidationError) and choices is not None:
        return ConfigError(f"{source}: {choice_error(key, getattr(err, 'value', '?'), choices)}")
    if isinstance(err, ValidationError):
        detail = str(err).splitlines()[0]
        return ConfigError(f"{source}: bad value for config key '{key}': {detail}")
    return ConfigError(f"{source}: config key '{key}': {str(err).splitlines()[0]}")


@functools.cache
def _schema_node(schema: type) -> DictConfig:
    """OmegaConf.structured(schema), built once per schema class. Never mutated: merges copy it, and
    error messages only read it."""
    return OmegaConf.structured(schema)


def _merge_layers(schema_node: DictConfig, layers: Sequence[tuple[str, DictConfig]], schema_cls: type) -> DictConfig:
    """The schema with every (source, layer) merged over it in order. One OmegaConf.merge call (one
    deep copy) on the usual path; when it fails, the layers are merged one by one to name the source
    whose layer does not fit the schema."""
    try:
        return OmegaConf.merge(schema_node, *(layer for _, layer in layers))
    except OmegaConfBaseException as first:
        cfg = schema_node
        for source, layer in layers:
            try:
                cfg = OmegaConf.merge(cfg, layer)
            except OmegaConfBaseException as err:
                raise _explain(err, schema_node, source, schema_cls) from None
        raise _explain(first, schema_node, "config", schema_cls) from None


def load_config(schema: type[T], files: Sequence[str | Path] = (), overrides: Sequence[str] = (),
                retired: Mapping[str, str] | None = None) -> T:
    """Build a validated `schema` instance from YAML `files` (merged in order) and `key=value` overrides.

    A YAML file may name others to merge first under the top-level key `defaults` (a list of paths
    relative to that file). `retired` maps dotted keys the schema no longer has to why: such a key
    in a file (an older run's config.yaml) is dropped with a warning; on the command line it is an
    error. Returns the dataclass instance with every component's own validation
    (`__post_init__`) already run.
    """
    retired = retired or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command line: override '{item}' is not of the form key=value")
        if item.split("=", 1)[0] in retired:
            key = item.split("=", 1)[0]
            raise ConfigError(f"command line: config key '{key}' no longer exists: {retired[key]}")
    layers = []
    for path in files:
        for layer_path, layer in _read_with_defaults(Path(path)):
            _drop_retired(layer, retired, layer_path)
            layers.append((str(layer_path), layer))
    if overrides:
        layers.append(("command line", OmegaConf.from_dotlist(list(overrides))))
    cfg = _merge_layers(_schema_node(schema), layers, schema)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"required config value(s) missing: {', '.join(missing)} (set them in YAML or as key=value)")
    return _to_object(cfg)


def _drop_retired(layer: DictConfig, retired: Mapping[str, str], path: Path) -> None:
    """Remove retired keys from one YAML layer in place, logging each with its value and reason."""
    for key, why in retired.items():
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(layer, parent_key) if parent_key else layer
        if isinstance(parent, DictConfig) and leaf in parent:
            log.warning("%s: ignoring retired config key '%s' (= %s): %s", path, key, parent[leaf], why)
            parent.pop(leaf)


def _read_with_defaults(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, DictConfig]]:
    """The YAML file at `path` preceded by the files its `defaults:` list names, recursively."""
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path in seen:
        raise ConfigError(f"{path}: circular 'defaults' chain: {' -> '.join(map(str, seen + (path,)))}")
    try:
        node = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends: say which file
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    layers: list[tuple[Path, DictConfig]] = []
    defaults = node.pop("defaults", None) or []
    for rel in defaults:
        layers += _read_with_defaults(path.parent / str(rel), seen + (path,))
    layers.append((path, node))
    return layers


def _to_object(cfg: DictConfig) -> Any:
    """Instantiate dataclasses section by section so a component's ValueError names its section."""
    try:
        return OmegaConf.to_object(cfg)
    except (ValueError, TypeError) as err:
        section = _failing_section(cfg)
        where = f"config section '{section}'" if section else "config"
        raise ConfigError(f"{where}: {err}") from None


def _failing_section(cfg: DictConfig) -> str | None:
    for key in cfg.keys():
        node = cfg[key]
        if isinstance(node, DictConfig):
            try:
                OmegaConf.to_object(node)
            except (ValueError, TypeError):
                return str(key)
    return None


def to_yaml(obj: Any) -> str:
    """Resolved YAML text of a config dataclass instance (what a run folder's config.yaml holds)."""
    if dataclasses.is_dataclass(obj):
        return OmegaConf.to_yaml(OmegaConf.structured(obj))
    return OmegaConf.to_yaml(OmegaConf.create(obj))
