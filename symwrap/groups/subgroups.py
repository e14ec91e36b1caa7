"""Subgroups of O(3) that keep a direction or a plane: rotations about one axis, O(2) about one axis, a mirror.

They act on 3-D points and vectors like :class:`~symwrap.groups.SO3` (elements are
(B, 3, 3) matrices), so a model can be asked for several symmetries of different
strength at once, e.g. rotations about the vertical axis that gravity keeps and full
rotations that it breaks (``symwrap.wrap(..., group=["SO2z", "SO3"], strategy="remul")``).
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from .base import default_dtype
from .rotations import _SpatialMatrixGroup

AXES = "xyz"


def _axis_index(axis: str) -> int:
    if axis not in tuple(AXES):  # one letter: "xy" and "" are substrings of "xyz", not axes
        raise ConfigError(f"axis must be one of 'x', 'y', 'z'; got {axis!r}")
    return AXES.index(axis)


class AxialRotations(_SpatialMatrixGroup):
    """SO(2) acting on 3-D space: rotations about the coordinate ``axis`` (``"SO2z"``, ``"SO2y"``).

    Rotations about x are ``AxialRotations("x")``; that name is not in the registry
    because ``x`` writes direct products there.
    """

    special = True

    def __init__(self, axis: str = "z") -> None:
        self.axis = _axis_index(axis)
        self.name = f"SO2{axis}"

    def _plane(self) -> tuple[int, int]:
        """The two coordinates the rotation mixes, in right-handed order (y→z, z→x, x→y)."""
        return (self.axis + 1) % 3, (self.axis + 2) % 3

    def sample(self, n, *, generator=None, device=None, dtype=None):
        dtype = default_dtype(dtype)
        angle = torch.rand(n, generator=generator, device=device, dtype=dtype) * (2 * math.pi)
        return self.rotation(angle)

    def rotation(self, angle: torch.Tensor) -> torch.Tensor:
        """(B, 3, 3) counter-clockwise rotations by ``angle`` about the axis (right-hand rule)."""
        i, j = self._plane()
        matrix = torch.eye(3, dtype=angle.dtype, device=angle.device).repeat(angle.shape[0], 1, 1)
        cos, sin = torch.cos(angle), torch.sin(angle)
        matrix[:, i, i], matrix[:, j, j] = cos, cos
        matrix[:, i, j], matrix[:, j, i] = -sin, sin
        return matrix

    def lie_algebra(self, *, device=None, dtype=None):
        i, j = self._plane()
        generator = torch.zeros(1, 3, 3, dtype=default_dtype(dtype), device=device)
        generator[0, j, i], generator[0, i, j] = 1.0, -1.0
        return generator


class PlaneReflection(_SpatialMatrixGroup):
    """The group of order 2 made of the identity and the mirror that flips one coordinate
    (``"Mz"``: z ↦ −z, a reflection through the xy plane; ``"My"``; ``PlaneReflection("x")``)."""

    special = False
    order = 2

    def __init__(self, axis: str = "z") -> None:
        self.axis = _axis_index(axis)
        self.name = f"M{axis}"

    def elements(self, *, device=None, dtype=None):
        mirror = torch.eye(3, dtype=default_dtype(dtype), device=device)
        mirror[self.axis, self.axis] = -1.0
        return torch.stack([torch.eye(3, dtype=mirror.dtype, device=device), mirror])

    def sample(self, n, *, generator=None, device=None, dtype=None):
        flip = torch.randint(2, (n,), generator=generator, device=device)
        return self.elements(device=device, dtype=dtype)[flip]

    def lie_algebra(self, *, device=None, dtype=None):
        return super(_SpatialMatrixGroup, self).lie_algebra(device=device, dtype=dtype)


class AxialO2(AxialRotations):
    """O(2) acting on 3-D space about a coordinate axis ("O2z", "O2y"), keeping that axis fixed.

    The rotations about ``axis`` and the reflections through the planes that contain it (block-diagonal O(2) ⊕ 1).

    Half the Haar mass are reflections (det −1). O(2) about x is ``AxialO2("x")`` (name ``"O2x"``), not in the
    registry because ``x`` writes direct products there.
    """

    special = False

    def __init__(self, axis: str = "z") -> None:
        super().__init__(axis)
        self.name = f"O2{axis}"

    def sample(self, n, *, generator=None, device=None, dtype=None):
        rotation = super().sample(n, generator=generator, device=device, dtype=dtype)
        flip = torch.rand(n, generator=generator, device=device) < 0.5
        i, _ = self._plane()
        mirror = torch.ones(n, 3, dtype=rotation.dtype, device=rotation.device)
        mirror[:, i] = torch.where(flip.to(rotation.device), -1.0, 1.0).to(rotation.dtype)
        return rotation * mirror[:, None, :]  # rotation @ diag(mirror): a reflection through a plane with the axis
