"""Actions on point clouds and their per-point fields, on single vectors, and the
trivial and regular output actions."""

from __future__ import annotations

import torch

from ..errors import ActionError, IncompatibleGroupError
from ..groups import Group, repeat_each, tile
from .base import Action, by_matrix, permute_members


class PointsAction(Action):
    """Positions (B, N, d): permuted, rotated and translated."""

    name = "points"
    layout = "(B, N, d): batch, points, coordinates"
    rotates = True
    translates = True
    has_positions = True

    def validate(self, x, group=None, *, check_finite=False):
        x = self._require_tensor(x)
        self._require_ndim(x, (3,))
        self._require_float(x)
        if group is not None and (group.has_linear or group.has_translation) and x.shape[-1] != group.dim:
            channels_first = x.shape[1] == group.dim
            raise ActionError(
                f"{self.name!r} data must be (B, N, {group.dim}) for {group.name}; got shape {tuple(x.shape)}."
                + (" It looks channels-first (B, d, N): pass x.transpose(1, 2)." if channels_first else "")
            )
        self.check_nonempty(x)
        if check_finite:
            self._require_finite(x)

    def set_size(self, x):
        return int(x.shape[1]), None

    def positions(self, x):
        return x if self.translates else None

    soft_permutations = True

    def members(self, x):
        return x, None, None

    def member_feature_count(self, group):
        return group.dim

    def permute_by_matrix(self, x, matrix):
        return by_matrix(x, matrix, lambda m, a: m @ a)

    def act(self, group, g, x):
        self._check_element_count(g, group, x.shape[0])
        linear, translation, permutation = self._group_parts(group, g, x.dtype)
        if permutation is not None:
            x = permute_members(x, permutation)
        if linear is not None and self.rotates:
            x = x @ linear.transpose(-1, -2)
        if translation is not None and self.translates:
            x = x + translation.unsqueeze(1)
        return x


class VectorsAction(PointsAction):
    """Per-point vectors (B, N, d) such as velocities or forces: permuted and rotated, never translated."""

    name = "vectors"
    translates = False
    has_positions = False


class ScalarsAction(Action):
    """Per-point scalars (B, N) or (B, N, F) such as charges or atom types: only permuted."""

    soft_permutations = True

    name = "scalars"
    layout = "(B, N) or (B, N, F): batch, set members, features"
    values_fixed = True

    def validate(self, x, group=None, *, check_finite=False):
        x = self._require_tensor(x)
        self._require_ndim(x, (2, 3))
        self.check_nonempty(x)
        if check_finite:
            self._require_finite(x)

    def set_size(self, x):
        return int(x.shape[1]), None

    def act(self, group, g, x):
        self._check_element_count(g, group, x.shape[0])
        permutation = group.permutation_part(g) if group.has_permutation else None
        return x if permutation is None else permute_members(x, permutation)

    def members(self, x):
        features = x.unsqueeze(-1) if x.ndim == 2 else x
        if not torch.is_floating_point(features):
            features = features.to(torch.get_default_dtype())
        return features, None, None

    def permute_by_matrix(self, x, matrix):
        if x.ndim == 2:
            return by_matrix(x, matrix, lambda m, a: (m @ a.unsqueeze(-1)).squeeze(-1))
        return by_matrix(x, matrix, lambda m, a: m @ a)


class SetAction(ScalarsAction):
    """Sets of feature vectors (B, N, F): only permuted, by permutation groups."""

    name = "set"
    layout = "(B, N, F): batch, set members, features"

    def check_group(self, group):
        if group.has_linear or group.has_translation or not group.has_permutation:
            raise IncompatibleGroupError(
                f"'set' data is only permuted, so it takes permutation groups (S, S{{n}}); got {group.name}. "
                "For coordinates use input='points' (or a dict of 'points' and 'scalars' fields)."
            )

    def validate(self, x, group=None, *, check_finite=False):
        x = self._require_tensor(x)
        self._require_ndim(x, (3,), "Add a feature dimension with x.unsqueeze(-1).")
        self.check_nonempty(x)
        if check_finite:
            self._require_finite(x)


class VectorAction(Action):
    """One vector per sample (B, d): rotated; translations and permutations leave it alone."""

    name = "vector"
    layout = "(B, d): batch, coordinates"
    translates = False

    def check_group(self, group):
        if group.has_translation and not group.has_linear:
            raise IncompatibleGroupError(
                f"'vector' data is only rotated, and {group.name} has no rotations; for positions use output='point'"
            )

    def validate(self, x, group=None, *, check_finite=False):
        x = self._require_tensor(x)
        self._require_ndim(x, (2,))
        self._require_float(x)
        if group is not None and (group.has_linear or group.has_translation) and x.shape[-1] != group.dim:
            raise ActionError(
                f"{self.name!r} data must be (B, {group.dim}) for {group.name}; got shape {tuple(x.shape)}"
            )
        self.check_nonempty(x)
        if check_finite:
            self._require_finite(x)

    def act(self, group, g, x):
        self._check_element_count(g, group, x.shape[0])
        if group.has_linear:
            x = (group.linear_part(g, dtype=x.dtype) @ x.unsqueeze(-1)).squeeze(-1)
        if group.has_translation and self.translates:
            x = x + group.translation_part(g, dtype=x.dtype)
        return x


class PointAction(VectorAction):
    """One position per sample (B, d), such as a predicted centre: rotated and translated."""

    name = "point"
    translates = True

    def check_group(self, group):
        return


class InvariantAction(Action):
    """The trivial action: every element leaves the data unchanged (invariant outputs)."""

    name = "invariant"
    layout = "(B, ...)"
    values_fixed = True
    trivial = True

    def act(self, group, g, x):
        return x


class RegularAction(Action):
    """Logits over the elements of a finite group (B, |G|): ``(g·y)[h] = y[g⁻¹h]``."""

    name = "regular"
    layout = "(B, |G|): batch, one entry per group element"

    def check_group(self, group):
        if not group.is_finite and not group.needs_size:
            raise IncompatibleGroupError(
                f"'regular' outputs have one entry per group element, so they need a finite group; got {group.name}"
            )

    def validate(self, x, group=None, *, check_finite=False):
        x = self._require_tensor(x)
        self._require_ndim(x, (2,))
        if group is not None:
            self._require_one_set_size(group)
        if group is not None and group.is_finite and x.shape[1] != group.order:
            raise ActionError(f"'regular' data for {group.name} must be (B, {group.order}); got shape {tuple(x.shape)}")
        self.check_nonempty(x)
        if check_finite:
            self._require_finite(x)

    def __init__(self) -> None:
        self._tables: dict[tuple[str, int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def _require_one_set_size(self, group: Group) -> None:
        if group.ragged:
            raise ActionError(
                f"'regular' outputs have one entry per element of {group.name}, which needs sets of one size; "
                "this batch holds sets of different sizes. Batch sets of one size together, or use another output"
            )

    def _cayley(self, group: Group, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Index tables of the group law (product[a, b] = index of e_a·e_b) and of inverses, cached."""
        self._require_one_set_size(group)
        key = (group.name, group.order, str(device))
        if key not in self._tables:
            elements = group.elements(device=device)
            n = group.order
            left, right = repeat_each(elements, n), tile(elements, n)
            product = group.index(group.compose(left, right)).reshape(n, n)
            self._tables[key] = (product, group.index(group.inverse(elements)))
        return self._tables[key]

    def act(self, group: Group, g, x):
        self._check_element_count(g, group, x.shape[0])
        product, inverse = self._cayley(group, x.device)
        source = product[inverse[group.index(g)]]  # row b, column h: the index of g_b⁻¹·h
        return torch.gather(x, 1, source)
