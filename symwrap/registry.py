"""One small name -> object table that the group, action, strategy and data-set registries share.

Names are looked up case-insensitively and without surrounding blanks; the name as registered is what
:meth:`Registry.names` lists. An unknown name raises the registry's own :class:`~symwrap.errors.UnknownNameError`
subclass, listing the registered names::

    models = Registry("model", error=UnknownModelError)

    @models.register("Tiny")
    def tiny(): ...

    models.get(" tiny ")  # -> tiny
    "TINY" in models      # -> True
    models.names()        # -> ["Tiny"]

This module imports nothing of symwrap but :mod:`symwrap.errors`, so every room (``groups/`` included) can
build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

from .errors import RegistryError, UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")
F = TypeVar("F")


class Registry(Generic[T]):
    """A table of named objects (classes, factories, functions) of one ``kind``.

    Args:
        kind: what is registered (``"group"``, ``"data set"``); used in error messages.
        error: the :class:`~symwrap.errors.UnknownNameError` subclass :meth:`get` raises.
        hint: a sentence appended to that error's message (how to register one, ...).
    """

    def __init__(self, kind: str, *, error: type[UnknownNameError] = UnknownNameError, hint: str = "") -> None:
        self.kind = kind
        self.error = error
        self.hint = hint
        #: lower-case key -> object; a plain dict, so tests can save, patch and restore it
        self.objects: dict[str, T] = {}
        self._display: dict[str, str] = {}  # lower-case key -> the name as registered

    @staticmethod
    def key(name: str) -> str:
        """The look-up key of ``name``: stripped and lower-cased."""
        return name.strip().lower()

    def check_free(self, name: str, *, override: bool = False) -> None:
        """Raise :class:`~symwrap.errors.RegistryError` if ``name`` is taken and ``override`` is false."""
        if not override and self.key(name) in self.objects:
            article = "an" if self.kind[:1].lower() in "aeiou" else "a"
            raise RegistryError(
                f"{article} {self.kind} is already registered as {name!r}; pass override=True to replace it"
            )

    @overload
    def register(self, name: str, obj: None = None, *, override: bool = False) -> Callable[[F], F]: ...

    @overload
    def register(self, name: str, obj: F, *, override: bool = False) -> F: ...

    def register(self, name: str, obj: Any = None, *, override: bool = False) -> Any:
        """Register ``obj`` under ``name``, or, without ``obj``, return a decorator that does.

        Raises:
            RegistryError: ``name`` is taken (in any case) and ``override`` is false.
        """
        if obj is None:
            return lambda target: self.register(name, target, override=override)
        self.check_free(name, override=override)
        key = self.key(name)
        self.objects[key] = obj
        self._display[key] = name
        return obj

    def find(self, name: object) -> T | None:
        """The object registered as ``name``, or ``None``."""
        return self.objects.get(self.key(name)) if isinstance(name, str) else None

    def get(self, name: object) -> T:
        """The object registered as ``name`` (case-insensitive).

        Raises:
            UnknownNameError: (the registry's subclass) no object has that name; the message lists those that do.
        """
        if isinstance(name, str) and self.key(name) in self.objects:
            return self.objects[self.key(name)]
        raise self.error(name, self.names(), self.hint)

    def display_name(self, key: str) -> str:
        """The name as registered for the look-up key ``key``."""
        return self._display.get(key, key)

    def items(self) -> list[tuple[str, T]]:
        """``(name as registered, object)`` pairs, in registration order."""
        return [(self.display_name(key), obj) for key, obj in self.objects.items()]

    def names(self) -> list[str]:
        """The registered names, as registered, sorted."""
        return sorted(self.display_name(key) for key in self.objects)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.key(name) in self.objects

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.objects)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()!r})"
