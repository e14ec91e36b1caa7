"""Look groups up by name: ``get_group("SO3")``, ``get_group("C8")``, ``get_group("E3xS")``."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TypeVar

from ..errors import RegistryError, UnknownGroupError
from ..registry import Registry
from .base import Group
from .product import ProductGroup

GroupFactory = Callable[..., Group]
F = TypeVar("F", bound=GroupFactory)

#: names without a number (``"SO3"``) and patterns with one (``"C{n}"``, whose factory takes ``n``)
_NAMED: Registry[GroupFactory] = Registry("group", error=UnknownGroupError)
_PATTERNED: Registry[GroupFactory] = Registry("group", error=UnknownGroupError)
_FIXED = _NAMED.objects  # lower-case name -> factory
_PATTERNS = _PATTERNED.objects  # lower-case pattern ("c{n}") -> factory


def register_group(name: str, *, override: bool = False) -> Callable[[F], F]:
    """Register a group class or factory under ``name``.

    ``name`` may contain an ``{n}`` placeholder (``"C{n}"``): the factory is then
    called with the integer found there. Names are matched case-insensitively and
    may not contain ``x``, which writes direct products.

    Example::

        @symwrap.register_group("SO2z")
        class RotationsAboutZ(symwrap.groups.Group): ...
    """
    key = name.lower()
    if "x" in key.replace("{n}", ""):
        raise RegistryError(f"group name {name!r} contains 'x', which is reserved for products (SO3xS)")

    def decorator(factory: F) -> F:
        for table in (_NAMED, _PATTERNED):
            table.check_free(name, override=override)
        return (_PATTERNED if "{n}" in key else _NAMED).register(name, factory, override=True)

    return decorator


def list_groups() -> list[str]:
    """Names of all registered groups (``{n}`` stands for any positive integer);
    any of them can be combined into a direct product with ``x``."""
    return sorted(_NAMED.names() + _PATTERNED.names())


@functools.cache
def _pattern(key: str) -> re.Pattern[str]:
    """The regular expression of a lower-case pattern: ``"c{n}"`` -> ``^c(\\d+)$``."""
    return re.compile("^" + re.escape(key).replace(r"\{n\}", r"(\d+)") + "$")


def _lookup(name: str) -> Group | None:
    factory = _NAMED.find(name)
    if factory is not None:
        return factory()
    key = Registry.key(name)
    for pattern, factory in _PATTERNS.items():
        match = _pattern(pattern).match(key)
        if match:
            return factory(int(match.group(1)))
    return None


def get_group(group: str | Group) -> Group:
    """The group called ``group`` (case-insensitive), or ``group`` itself if it is one.

    Raises:
        UnknownGroupError: no registered group has that name.
    """
    if isinstance(group, Group):
        return group
    if not isinstance(group, str):
        raise UnknownGroupError(group, list_groups(), "Pass a group name or a symwrap.groups.Group.")
    found = _lookup(group)
    if found is not None:
        return found
    parts = group.strip().lower().split("x")
    if len(parts) > 1 and all(parts):
        factors = [_lookup(p) for p in parts]
        if all(f is not None for f in factors):
            return ProductGroup(factors)  # type: ignore[arg-type]
    raise UnknownGroupError(group, list_groups(), "Products are written with 'x', e.g. 'SO3xS'.")
