"""Default helper networks, looked up by what the group and the data are made of.

A strategy that needs a helper network (an encoder for the contrastive canonicalizer, regular-representation
scores, an interface, a teacher) asks :func:`default_network` for a *role*; the registry answers with the first
entry whose ``applies(group, input, output)`` holds. Entries test what the group and the action are made of
(:attr:`~symwrap.groups.Group.is_finite`, ``dim``, ``has_linear`` ...; the action's ``grid_axes``,
``channel_axis``, ``has_positions``, ``trivial`` ...), never their class names, so a new group or action that
says the same things gets the same defaults. Entries registered later are asked first, so a user's own
entry takes precedence over the built-in ones::

    @symwrap.nn.register_default_network("encoder", "my-mesh-encoder",
                                         applies=lambda group, input, output: input.name == "mesh",
                                         needs="meshes")
    def mesh_encoder(group, input, output, *, out_features, hidden, **options):
        return MyMeshEncoder(out_features, hidden)

Roles of the built-in strategies, and the options their builders receive (extra options are passed through,
so a builder takes ``**options``):

================== ================================================================ ===========================
role               the network                                                      options
================== ================================================================ ===========================
``encoder``        any (N, ...) input to (N, out_features), not equivariant          ``out_features``, ``hidden``,
                                                                                    ``in_channels``
``regular_scores`` (B, |G|) scores moving in the regular representation              ``hidden``, ``in_channels``
``frame``          (B, d, d) orthogonal frames with F(h·x) = h·F(x)                  ``hidden``, ``in_channels``
``interface``      probabilistic symmetrization's p(g | x)                            ``config``
``teacher``        a random-initialised equivariant network                           the teacher's own kwargs,
                                                                                    ``in_channels``, ``out_features``
================== ================================================================ ===========================
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import ConfigError

Applies = Callable[[Any, Any, Any], bool]
Builder = Callable[..., nn.Module]

__all__ = [
    "DefaultNetwork",
    "NoDefaultNetworkError",
    "default_network",
    "find_default_network",
    "list_default_networks",
    "register_default_network",
]


class NoDefaultNetworkError(ConfigError):
    """No registered default network fits this group and data; pass your own network."""


@dataclasses.dataclass(frozen=True)
class DefaultNetwork:
    """One registry entry: ``build(group, input, output, **options)`` where ``applies(group, input, output)``."""

    role: str
    name: str
    applies: Applies
    build: Builder
    #: what the entry needs, for error messages ("images (B, C, H, W) under C_n or D_n")
    needs: str
    #: the optional package its network needs (``"escnn"``), if any
    requires: str | None = None

    @property
    def installed(self) -> bool:
        """Whether the package it needs is installed (entries without one always are)."""
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


_ENTRIES: list[DefaultNetwork] = []


def register_default_network(role: str, name: str, *, applies: Applies, needs: str, requires: str | None = None,
                             overwrite: bool = False) -> Callable[[Builder], Builder]:
    """Decorator registering ``build`` as the default ``role`` network wherever ``applies`` holds.

    Later registrations are asked first; an entry whose optional package ``requires`` is not installed is
    passed over for one that applies and is (and built only when none is, so that its builder raises the
    :class:`~symwrap.errors.MissingDependencyError` naming what to install). A second entry with the same
    role and name raises a :class:`~symwrap.errors.ConfigError` unless ``overwrite=True`` (which replaces it).
    """

    def decorator(build: Builder) -> Builder:
        _load_builtin_entries()  # built-ins first, so that this entry is asked before them
        existing = [entry for entry in _ENTRIES if entry.role == role and entry.name == name]
        if existing and not overwrite:
            raise ConfigError(f"a default {role!r} network named {name!r} is already registered; "
                              "pass overwrite=True to replace it")
        for entry in existing:
            _ENTRIES.remove(entry)
        _ENTRIES.append(DefaultNetwork(role, name, applies, build, needs, requires))
        return build

    return decorator


def find_default_network(role: str, group: Any, input: Any, output: Any = None) -> DefaultNetwork | None:
    """The entry :func:`default_network` would build, or ``None``: the last registered one that applies and
    whose package is installed, else the last one that applies."""
    _load_builtin_entries()
    applicable = [entry for entry in reversed(_ENTRIES) if entry.role == role and entry.applies(group, input, output)]
    installed = [entry for entry in applicable if entry.installed]
    return (installed or applicable or [None])[0]


def default_network(role: str, group: Any, input: Any, output: Any = None, **options: Any) -> nn.Module:
    """The default ``role`` network for ``group`` acting on ``input`` (and ``output``), built with ``options``.

    Raises:
        NoDefaultNetworkError: no entry applies; the message lists what each entry needs.
    """
    entry = find_default_network(role, group, input, output)
    if entry is None:
        known = [f"{e.name} ({e.needs})" for e in reversed(_ENTRIES) if e.role == role]
        data = input.spec() if hasattr(input, "spec") else input
        raise NoDefaultNetworkError(
            f"there is no default {role!r} network for {getattr(group, 'name', group)} on {data!r} inputs"
            + (f" with {output.spec()!r} outputs" if output is not None and hasattr(output, "spec") else "")
            + f"; the registered ones are: {', '.join(known) or 'none'}. Pass your own network, or register one "
            "with symwrap.nn.register_default_network"
        )
    return entry.build(group, input, output, **options)


def list_default_networks(role: str | None = None) -> list[tuple[str, str, str]]:
    """``(role, name, needs)`` of every registered entry (of ``role``), in the order they are asked."""
    _load_builtin_entries()
    return [(e.role, e.name, e.needs) for e in reversed(_ENTRIES) if role is None or e.role == role]


# --- what the built-in entries ask ------------------------------------------------------------------------

def planar_linear(group: Any) -> bool:
    """Rotations (and reflections) of the plane only: no translation or permutation part."""
    return bool(group.has_linear and group.dim == 2 and not group.has_translation and not group.has_permutation)


def image_grid(action: Any) -> bool:
    """Channels-first data on a 2-D grid (images)."""
    return action.grid_axes == 2 and action.channel_axis == 1


def needs_in_channels(options: dict[str, Any], what: str) -> int:
    in_channels = options.get("in_channels")
    if in_channels is None:
        raise ConfigError(f"the default {what} is built for a fixed number of image channels; pass in_channels=")
    return in_channels


_LOADED = False


def _load_builtin_entries() -> None:
    """The built-in entries of :mod:`symwrap.nn` (strategies register theirs when imported)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import default_entries  # noqa: F401 - registers on import
