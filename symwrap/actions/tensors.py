"""Rank-2 tensors (B, d, d) such as an inertia, stress or covariance tensor: T ↦ R T Rᵀ."""

from __future__ import annotations

from ..errors import ActionError, IncompatibleGroupError
from .base import Action


class TensorAction(Action):
    """One rank-2 Cartesian tensor per sample (B, d, d), moved as R T Rᵀ (inertia, stress, covariance).

    R is the element's linear part; translations and permutations leave the tensor alone.
    """

    name = "tensor"
    layout = "(B, d, d): batch, rows, columns"

    def check_group(self, group):
        if not group.has_linear:
            raise IncompatibleGroupError(
                f"'tensor' data is only rotated, and {group.name} has no rotations; choose a rotation group "
                "(SO3, O3, SO2z, ...)"
            )

    def validate(self, x, group=None, *, check_finite=False):
        x = self._require_tensor(x)
        self._require_ndim(x, (3,))
        self._require_float(x)
        size = group.dim if group is not None else x.shape[-1]
        if x.shape[1:] != (size, size):
            raise ActionError(f"'tensor' data must be (B, {size}, {size}); got shape {tuple(x.shape)}")
        self.check_nonempty(x)
        if check_finite:
            self._require_finite(x)

    def act(self, group, g, x):
        self._check_element_count(g, group, x.shape[0])
        if not group.has_linear:
            return x
        linear = group.linear_part(g, dtype=x.dtype)
        return linear @ x @ linear.transpose(-1, -2)
