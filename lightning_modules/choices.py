"""Closed sets of choices: a `typing.Literal` annotation is the one list, this module the one check.

A config field such as `quantization: Quantization` with `Quantization = Literal["direct", "inverse",
"log"]` is validated by the config layer: OmegaConf checks Literal fields as YAML or key=value sets
them (experiments/config_loading.py words the error with the full key), and a config dataclass
built in Python checks itself in __post_init__ with `check_choices`. Functions and classes that take
a bare string instead of a config (a metric or encoding used in a test or notebook) check it with
`check_choice` against the same Literal.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union


def literal_choices(annotation: Any) -> tuple | None:
    """The allowed values of a Literal annotation, None appended for Optional[Literal[...]] /
    `Literal[...] | None`; None when the annotation is not a Literal."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        args = typing.get_args(annotation)
        literals = [a for a in args if typing.get_origin(a) is Literal]
        if len(literals) == 1 and set(args) - set(literals) == {type(None)}:
            return (*typing.get_args(literals[0]), None)
    return None


def choice_error(key: str, value: Any, allowed: tuple) -> str:
    """The one wording of a bad choice: `key: expected one of [...], got 'value'`."""
    return f"{key}: expected one of {list(allowed)}, got {value!r}"


def check_choice(key: str, value: Any, annotation: Any) -> Any:
    """Return `value` if the Literal `annotation` allows it, else raise ValueError naming `key`."""
    allowed = literal_choices(annotation)
    if allowed is None:
        raise TypeError(f"check_choice({key!r}): {annotation!r} is not a Literal annotation")
    if value not in allowed:
        raise ValueError(choice_error(key, value, allowed))
    return value


def check_choices(cfg: Any, section: str) -> None:
    """Check every Literal-annotated field of the dataclass instance `cfg` (call it in __post_init__,
    so a config built in Python is held to the same Literal as one loaded from YAML); the error names
    `{section}.{field}` (just `field` for section '')."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        if literal_choices(hints[f.name]) is not None:
            check_choice(f"{section}.{f.name}" if section else f.name, getattr(cfg, f.name), hints[f.name])
