"""Type checks of config fields, read from the dataclass annotations.

Every :class:`~symwrap.strategies.StrategyConfig` runs :func:`check_field_types` before its own range
checks, so ``num_samples="x"``, ``num_samples=2.5`` or ``seed="abc"`` fail at ``wrap()`` with a
:class:`~symwrap.errors.ConfigError` naming the field, instead of deep inside torch at the first forward.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import cache
from typing import Any

from ..errors import ConfigError


@cache
def _field_types(config_class: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_class)
    return {field.name: hints[field.name] for field in dataclasses.fields(config_class)}


def check_field_types(config: Any) -> None:
    """Raise :class:`ConfigError` for the first field whose value does not fit its annotation.

    Integers are accepted where floats are expected; booleans are accepted only where ``bool`` is; floats
    must be finite.
    """
    for name, annotation in _field_types(type(config)).items():
        value = getattr(config, name)
        if not _fits(value, annotation):
            raise ConfigError(
                f"{type(config).__name__}.{name} must be {_describe(annotation)}; got {value!r} "
                f"({type(value).__name__})"
            )


def _fits(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(annotation))
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        return isinstance(value, (list, tuple)) and all(_fits(v, item) for v in value)
    if origin is dict:
        key_type, value_type = typing.get_args(annotation) or (Any, Any)
        return isinstance(value, dict) and all(
            _fits(k, key_type) and _fits(v, value_type) for k, v in value.items()
        )
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if annotation is float:
        return "a finite number"
    if annotation is int:
        return "an integer"
    if annotation is bool:
        return "True or False"
    if annotation is str:
        return "a string"
    if origin in (list, tuple):
        return f"a list of ({_describe(typing.get_args(annotation)[0])})"
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        return f"a dict of {_describe(key_type)} to {_describe(value_type)}"
    return getattr(annotation, "__name__", str(annotation))
