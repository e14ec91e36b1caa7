"""The strategy registry: ``@register_strategy("remul")`` on a :class:`SymmetricModel` subclass."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..errors import RegistryError, UnknownStrategyError
from ..registry import Registry
from .base import SymmetricModel

M = TypeVar("M", bound=type[SymmetricModel])

_REGISTRY: Registry[type[SymmetricModel]] = Registry("strategy", error=UnknownStrategyError)
_STRATEGIES = _REGISTRY.objects  # lower-case name -> SymmetricModel subclass


def register_strategy(name: str, *, override: bool = False) -> Callable[[M], M]:
    """Register a :class:`SymmetricModel` subclass as ``strategy=name``.

    The class's ``config_class`` must be a :class:`StrategyConfig` dataclass whose
    ``strategy`` class variable is ``name``.
    """

    def decorator(cls: M) -> M:
        _REGISTRY.check_free(name, override=override)
        if cls.config_class.strategy != name:
            raise RegistryError(
                f"{cls.__name__}.config_class.strategy is {cls.config_class.strategy!r}; it must be {name!r}"
            )
        return _REGISTRY.register(name, cls, override=True)

    return decorator


def list_strategies() -> list[str]:
    """Names of all registered strategies."""
    return sorted(cls.config_class.strategy for cls in _STRATEGIES.values())


def get_strategy(name: str) -> type[SymmetricModel]:
    """The :class:`SymmetricModel` subclass registered as ``name``."""
    return _REGISTRY.get(name)
