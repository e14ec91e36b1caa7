"""The modified inertia task of Finzi et al. (EMLP, 2021) as used by Kim et al., "Regularizing Towards Soft
Equivariance Under Mixed Symmetries" (PER, ICML 2023, arXiv 2306.00356): a symmetry broken down to a subgroup.

Each sample is ``points`` = 5 point masses: masses ``m_i = softplus(z_i)`` and positions ``x_i ~ N(0, I)``
(``z_i ~ N(0, 1)``), as in the authors' data (``ModifiedInertia`` in kim-hyunsu/PER). The target is the
(B, 3, 3) tensor

    T = I + α · (I a) aᵀ,      I = Σ_i m_i (|x_i|² 1 − x_i x_iᵀ)  (the inertia tensor about the origin),

with ``a`` the unit vector along ``axis`` (z). ``I`` is O(3)-equivariant, ``R I(x) Rᵀ = I(R x)``; the term
``α (I a) aᵀ`` keeps this only for the orthogonal R with ``R a = ±a``: at ``α = 0`` the task is exactly
O(3)-equivariant, at ``α > 0`` only O(2) about ``axis`` (and the mirror through the plane normal to it)
remain. PER uses α = 0.3 (``target = inertia + 3e-1*vgT``). Sampling runs in float64 from a CPU generator, so a
seed gives the same data on every device.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch.nn import functional

from ..errors import ConfigError, ShapeError

__all__ = ["INPUT_ACTIONS", "OUTPUT_ACTION", "InertiaData", "inertia_tensor", "modified_inertia",
           "modified_inertia_tensor"]

AXES = "xyz"
#: how a group acts on :meth:`InertiaData.inputs` and on the target (``symwrap.wrap``'s ``input=`` and ``output=``)
INPUT_ACTIONS = {"pos": "points", "mass": "scalars"}
OUTPUT_ACTION = "tensor"


def inertia_tensor(mass: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) inertia tensors about the origin of point masses ``mass`` (B, N) at ``pos`` (B, N, 3)."""
    if pos.ndim != 3 or pos.shape[-1] != 3 or mass.shape != pos.shape[:2]:
        raise ShapeError(f"expected mass (B, N) and pos (B, N, 3); got mass {tuple(mass.shape)} and pos "
                         f"{tuple(pos.shape)}")
    eye = torch.eye(3, dtype=pos.dtype, device=pos.device)
    squared = pos.pow(2).sum(-1)[..., None, None]
    per_point = squared * eye - pos.unsqueeze(-1) * pos.unsqueeze(-2)
    return (mass[..., None, None] * per_point).sum(1)


def modified_inertia_tensor(mass: torch.Tensor, pos: torch.Tensor, alpha: float, axis: str = "z") -> torch.Tensor:
    """``I + α (I a) aᵀ`` (see the module docstring): O(3)-equivariant at ``alpha = 0``, O(2) about ``axis``
    otherwise."""
    _check_alpha(alpha)
    inertia = inertia_tensor(mass, pos)
    unit = torch.zeros(3, dtype=pos.dtype, device=pos.device)
    unit[_axis(axis)] = 1.0
    return inertia + alpha * (inertia @ unit).unsqueeze(-1) * unit


@dataclasses.dataclass(frozen=True)
class InertiaData:
    """A batch of the modified inertia task: ``mass`` (B, N), ``pos`` (B, N, 3), ``target`` (B, 3, 3)."""

    mass: torch.Tensor
    pos: torch.Tensor
    target: torch.Tensor
    alpha: float
    axis: str = "z"

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def inputs(self) -> dict[str, torch.Tensor]:
        """``{"pos": (B, N, 3), "mass": (B, N)}``."""
        return {"pos": self.pos, "mass": self.mass}

    def subset(self, index: slice | torch.Tensor) -> InertiaData:
        """The samples at ``index``."""
        return dataclasses.replace(self, mass=self.mass[index], pos=self.pos[index], target=self.target[index])


def modified_inertia(
    n: int,
    *,
    alpha: float = 0.3,
    points: int = 5,
    axis: str = "z",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> InertiaData:
    """``n`` seeded samples of the modified inertia task (see the module docstring).

    Raises:
        ConfigError: ``n`` or ``seed`` not an integer >= 0, ``points`` not >= 1, ``alpha`` negative or not
            finite, ``axis`` not one of ``"x"``, ``"y"``, ``"z"``.
    """
    for name, value, low in (("n", n, 0), ("points", points, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}")
    _check_alpha(alpha)
    _axis(axis)
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randn(n, points * 4, generator=generator, dtype=torch.float64)
    mass = functional.softplus(draws[:, :points])
    pos = draws[:, points:].reshape(n, points, 3)
    target = modified_inertia_tensor(mass, pos, float(alpha), axis)
    return InertiaData(mass.to(dtype), pos.to(dtype), target.to(dtype), float(alpha), axis)


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise ConfigError(f"alpha must be a finite number >= 0; got {alpha!r}")


def _axis(axis: str) -> int:
    if not isinstance(axis, str) or axis not in tuple(AXES):
        raise ConfigError(f"axis must be one of 'x', 'y', 'z'; got {axis!r}")
    return AXES.index(axis)
