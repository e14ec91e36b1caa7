"""Look actions up by name: ``get_action("points")``, or a dict of names for structured data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from ..errors import UnknownActionError
from ..registry import Registry
from .base import Action
from .structured import DictAction

ActionSpec = str | Action | Mapping[str, str | Action]
F = TypeVar("F", bound=Callable[..., Action])

_REGISTRY: Registry[Callable[[], Action]] = Registry(
    "action", error=UnknownActionError,
    hint="Structured inputs take a dict such as {'pos': 'points', 'charge': 'scalars'}.",
)
_ACTIONS = _REGISTRY.objects  # lower-case name -> class or factory


def register_action(name: str, *, override: bool = False) -> Callable[[F], F]:
    """Register an :class:`Action` class (or zero-argument factory) under ``name``.

    Example::

        @symwrap.register_action("quaternion")
        class QuaternionAction(symwrap.actions.Action): ...
    """
    return _REGISTRY.register(name, override=override)


def list_actions() -> list[str]:
    """Names of all registered actions."""
    return _REGISTRY.names()


def get_action(spec: ActionSpec) -> Action:
    """The action named ``spec``, ``spec`` itself if it is an :class:`Action`, or a
    :class:`DictAction` for a dict of field names to action specs.

    Raises:
        UnknownActionError: no registered action has that name.
    """
    if isinstance(spec, Action):
        return spec
    if isinstance(spec, Mapping):
        return DictAction({str(key): get_action(value) for key, value in spec.items()})
    return _REGISTRY.get(spec)()
