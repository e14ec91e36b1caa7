"""The :class:`Action` interface: how group elements act on one kind of data.

An action knows the layout of its data (which dimension is the batch, which the
set members, which the coordinates), validates it, and applies the parts of a
group element (see :mod:`symwrap.groups.base`) that concern it. The batching
helpers (``repeat``, ``mean``, ``flatten``) let strategies and metrics run
k transformed copies of a batch as one bigger batch.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from ..errors import (
    ActionError,
    ConfigError,
    DeviceError,
    EmptyInputError,
    IncompatibleGroupError,
    InputDtypeError,
    NonFiniteInputError,
)
from ..groups import Element, Group, element_batch_size
from .tracing import is_tracing


class Action(ABC):
    """How a group acts on one kind of data.

    Subclasses implement :meth:`act` and, when their data is not a plain tensor
    with the batch first, the batching helpers.
    """

    name: str = "action"
    #: human-readable layout, used in error messages
    layout: str = "(B, ...)"

    # --- what the data is made of: what strategies and default networks may branch on ----------
    #: spatial axes of a regular grid that the group resamples (2 for images; 0 for data without a grid)
    grid_axes: int = 0
    #: the axis of feature channels: dim 1 for channels-first grids, the last dim otherwise
    channel_axis: int = -1
    #: whether the data carries point positions, what :meth:`positions` returns frames are computed from
    has_positions: bool = False
    #: whether group elements only reorder the values, never change them (charges, atom types, set features)
    values_fixed: bool = False
    #: whether no group element moves the data at all (invariant outputs)
    trivial: bool = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # --- what the action accepts --------------------------------------------------
    def check_group(self, group: Group) -> None:  # noqa: B027 - optional hook: most actions take every group
        """Raise :class:`IncompatibleGroupError` if ``group`` cannot act on this data."""

    def validate(self, x: Any, group: Group | None = None, *, check_finite: bool = False) -> None:
        """Raise an :class:`ActionError` subclass if ``x`` does not fit this action (and
        :class:`~symwrap.errors.DeviceError` for tensors on the ``meta`` device, which hold no data)."""
        tensor = self._require_tensor(x)
        if tensor.ndim == 0:
            raise ActionError(f"{self.name!r} data must be {self.layout}, batch first; got a 0-dimensional tensor. "
                              "Add a batch dimension with x.unsqueeze(0)")
        self.check_nonempty(tensor)
        if check_finite:
            self._require_finite(tensor)

    def check_nonempty(self, x: Any) -> None:
        """Raise :class:`~symwrap.errors.EmptyInputError` if ``x`` holds nothing: a batch of 0 samples, a set
        of 0 members, any axis of size 0. Reads shapes only, so it is cheap enough to run on every call.
        Data that is not a tensor is left to :meth:`validate` (actions for other data override this)."""
        if not isinstance(x, torch.Tensor):
            return
        empty = [axis for axis, size in enumerate(x.shape) if size == 0]
        if not empty:
            return
        if empty[0] == 0:
            raise EmptyInputError(f"{self.name!r} data must be {self.layout}; got a batch of 0 samples "
                                  f"(shape {tuple(x.shape)}). Pass at least one sample")
        raise EmptyInputError(
            f"{self.name!r} data must be {self.layout}; got shape {tuple(x.shape)}, whose axis "
            f"{empty[0]}{self._axis_label(x.ndim, empty[0])} is empty. Every sample needs at least one entry along it"
        )

    def _axis_label(self, ndim: int, axis: int) -> str:
        """`` (N)``: the name :attr:`layout` gives ``axis`` of ``ndim``-dimensional data, if it gives one."""
        for group in re.findall(r"\(([^()]*)\)", self.layout):
            names = [name.strip() for name in group.split(",")]
            if len(names) == ndim and "..." not in names:
                return f" ({names[axis]})"
        return ""

    @abstractmethod
    def act(self, group: Group, g: Element, x: Any) -> Any:
        """``g·x`` for a batch of elements ``g`` and a batch of data ``x`` of the same size."""

    # --- batching helpers -----------------------------------------------------------
    def batch_size(self, x: Any) -> int:
        """The number of samples in ``x`` (while tracing, a symbolic size, so the batch stays free in the graph)."""
        return self._require_tensor(x).shape[0]

    def repeat(self, x: Any, k: int) -> Any:
        """k copies of the batch stacked along the batch dimension (copy-major)."""
        tensor = self._require_tensor(x)
        return tensor.repeat(k, *([1] * (tensor.ndim - 1)))

    def mean(self, y: Any, k: int) -> Any:
        """Average over the k copies made by :meth:`repeat`."""
        return y.unflatten(0, (k, y.shape[0] // k)).mean(0)

    def flatten(self, y: Any) -> torch.Tensor:
        """(B, D) view of the data, for norms and distances."""
        tensor = self._require_tensor(y)
        return tensor.reshape(tensor.shape[0], -1)

    def take(self, x: Any, count: int) -> Any:
        """The first ``count`` samples of the batch ``x`` (all of them when it has fewer)."""
        return self._require_tensor(x)[:count]

    def set_size(self, x: Any) -> tuple[int, torch.Tensor | None] | None:
        """Number of set members (and per-sample counts for ragged data), or ``None``."""
        return None

    def bind(self, group: Group, x: Any) -> Group:
        """The group made concrete for ``x`` (the set size of ``S`` comes from the data)."""
        if not group.needs_size:
            return group
        size = self.set_size(x)
        if size is None:
            raise IncompatibleGroupError(
                f"group {group.name!r} permutes set members, but {self.name!r} data {self.layout} has none; "
                "use a set-like input action: points, vectors, scalars, set or graph."
            )
        return group.sized(*size)

    #: whether :meth:`permute_by_matrix` works (relaxed permutations can carry gradients)
    soft_permutations: bool = False

    def members(self, x: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """What a permutation interface network reads: per-member features (B, N, F), a dense
        (B, N, N) adjacency (``None`` for a set without edges) and a (B, N) mask of real members
        (``None`` when every member is real)."""
        raise ActionError(f"{self.name!r} data {self.layout} has no set members to read")

    def member_feature_count(self, group: Group) -> int | None:
        """How many features per member :meth:`members` gives, when the layout alone fixes it
        (``None``: it depends on the data, as for scalars of any width)."""
        return None

    def permute_by_matrix(self, x: Any, matrix: torch.Tensor) -> Any:
        """Move the members by (B, N, N) matrices: ``matrix[b] @ members``. With the 0/1 matrix of a
        permutation this is its action; with a relaxed one it carries gradients to the matrix."""
        raise ActionError(f"{self.name!r} data {self.layout} has no set members to permute")

    def resize(self, x: Any, size: int) -> Any:
        """``x`` on a grid of ``size`` along every spatial axis (antialiased), for data with a grid
        (:attr:`grid_axes` > 0); resizing must commute with the group's exact elements."""
        raise ConfigError(f"{self.name!r} data {self.layout} has no grid to resize")

    def positions(self, x: Any) -> torch.Tensor | None:
        """The (B, N, d) positions in ``x`` that frames are computed from, if it has any."""
        return None

    def probe(self, x: Any) -> torch.Tensor:
        """A floating tensor of ``x`` whose device and dtype the group elements should follow."""
        return self._require_tensor(x)

    def spec(self) -> Any:
        """What :func:`get_action` needs to rebuild this action (used by ``save_pretrained``)."""
        return self.name

    def differentiable(self) -> Action:
        """A version of this action that is differentiable in the group element."""
        return self

    def acts_exactly(self, group: Group) -> bool:
        """Whether every element of ``group`` moves this data exactly (permuting entries, or an orthogonal map
        up to float round-off), so that ``act(g, act(h, x)) == act(gh, x)`` holds to round-off: what an exact
        strategy needs. Interpolated moves (image rotations that are not quarter turns) do not."""
        return True

    # --- shared checks --------------------------------------------------------------
    def _require_tensor(self, x: Any) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ActionError(f"{self.name!r} data must be a torch.Tensor {self.layout}; got {type(x).__name__}")
        require_data_device(x, f"{self.name!r} data")
        return x

    def _require_float(self, x: torch.Tensor) -> None:
        if not torch.is_floating_point(x):
            raise InputDtypeError(
                f"{self.name!r} data must be a floating-point tensor; got dtype {x.dtype}. "
                "Convert it with x.float()."
            )

    def _require_finite(self, x: torch.Tensor) -> None:
        if is_tracing():  # validation only: a traced graph cannot branch on the values (see symwrap.export)
            return
        if torch.is_floating_point(x) and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise NonFiniteInputError(
                f"{self.name!r} data of shape {tuple(x.shape)} has {bad} NaN or inf entries; "
                "clean the input, or pass validate=False to skip this check."
            )

    def _require_ndim(self, x: torch.Tensor, ndims: tuple[int, ...], hint: str = "") -> None:
        if x.ndim not in ndims:
            raise ActionError(
                f"{self.name!r} data must be {self.layout}; got a tensor of shape {tuple(x.shape)}."
                + (f" {hint}" if hint else "")
            )

    def _group_parts(self, group: Group, g: Element, dtype: torch.dtype) -> tuple[Any, Any, Any]:
        linear = group.linear_part(g, dtype=dtype) if group.has_linear else None
        translation = group.translation_part(g, dtype=dtype) if group.has_translation else None
        permutation = group.permutation_part(g) if group.has_permutation else None
        return linear, translation, permutation

    def _check_element_count(self, g: Element, group: Group, x_batch: int) -> None:
        if element_batch_size(g) != x_batch:
            raise ActionError(
                f"{self.name!r}: got {element_batch_size(g)} elements of {group.name} for a batch of {x_batch}; "
                "pass one element per sample."
            )


def require_data_device(x: torch.Tensor, what: str) -> None:
    """Raise :class:`~symwrap.errors.DeviceError` for a tensor on the ``meta`` device: it has a shape but no
    values, so nothing can be computed from it."""
    if x.device.type == "meta":
        raise DeviceError(
            f"{what} is a tensor on the 'meta' device (shape {tuple(x.shape)}), which holds no values; "
            "create it with values on a real device ('cpu', 'cuda', ...)"
        )


def by_matrix(x: torch.Tensor, matrix: torch.Tensor,
              apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``apply(matrix, x)`` in ``x``'s dtype. Integer and boolean data (charges, atom types, a 0/1 adjacency)
    are moved in floating point and cast back: exact for the 0/1 matrix of a hard permutation, and without a
    gradient, which integers cannot carry."""
    if torch.is_floating_point(x) or torch.is_complex(x):
        return apply(matrix.to(x.dtype), x)
    return apply(matrix.detach(), x.to(matrix.dtype)).round().to(x.dtype)


def permute_members(x: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Move member ``i`` of each set (dim 1) to position ``permutation[b, i]``."""
    if x.shape[1] != permutation.shape[1]:
        raise ActionError(
            f"a permutation of {permutation.shape[1]} members cannot act on a set of {x.shape[1]} members"
        )
    inverse = torch.argsort(permutation, dim=1)
    index = inverse.reshape(*inverse.shape, *([1] * (x.ndim - 2))).expand_as(x)
    return torch.gather(x, 1, index)
