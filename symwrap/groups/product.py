"""Direct products G1 x G2 x ...: elements are tuples with one batch per factor.

Each part kind (linear, translation, permutation) may come from one factor only,
so that the factors act on different aspects of the data and commute.
"""

from __future__ import annotations

import math

import torch

from ..errors import GroupElementError, IncompatibleGroupError
from .base import Group, element_batch_size


class ProductGroup(Group):
    """The direct product of ``factors``, named ``"AxB"``."""

    def __init__(self, factors: list[Group] | tuple[Group, ...]) -> None:
        if len(factors) < 2:
            raise IncompatibleGroupError(f"a product needs at least two factors; got {len(factors)}")
        self.factors = tuple(factors)
        self.name = "x".join(f.name for f in self.factors)
        for kind in ("has_linear", "has_translation", "has_permutation"):
            owners = [f.name for f in self.factors if getattr(f, kind)]
            if len(owners) > 1:
                raise IncompatibleGroupError(
                    f"factors {owners} of {self.name!r} both act by {kind[4:]} maps; a direct product "
                    "needs factors that act on different parts (rotations x permutations, ...). "
                    "Use E3 or SE3 for rotations with translations."
                )
        self.has_linear = any(f.has_linear for f in self.factors)
        self.has_translation = any(f.has_translation for f in self.factors)
        self.has_permutation = any(f.has_permutation for f in self.factors)
        self.special = all(f.special for f in self.factors)
        dims = {f.dim for f in self.factors if f.dim is not None}
        if len(dims) > 1:
            raise IncompatibleGroupError(f"factors of {self.name!r} act on spaces of different dimensions {dims}")
        self.dim = dims.pop() if dims else None
        orders = [f.order for f in self.factors]
        self.order = None if any(o is None for o in orders) else math.prod(orders)

    @property
    def needs_size(self) -> bool:
        return any(f.needs_size for f in self.factors)

    def sized(self, n, lengths=None):
        group = ProductGroup([f.sized(n, lengths) for f in self.factors])
        group.name = self.name
        return group

    @property
    def ragged(self) -> bool:
        return any(f.ragged for f in self.factors)

    def fit_rows(self, g):
        self._check(g)
        return tuple(f.fit_rows(part) for f, part in zip(self.factors, g))

    def _check(self, g) -> None:
        if not isinstance(g, tuple) or len(g) != len(self.factors):
            raise GroupElementError(
                f"elements of {self.name} are tuples of {len(self.factors)} batches, one per factor; "
                f"got {type(g).__name__}"
            )

    def sample(self, n, *, generator=None, device=None, dtype=None):
        return tuple(f.sample(n, generator=generator, device=device, dtype=dtype) for f in self.factors)

    def identity(self, n, *, device=None, dtype=None):
        return tuple(f.identity(n, device=device, dtype=dtype) for f in self.factors)

    def compose(self, g, h):
        self._check(g)
        self._check(h)
        return tuple(f.compose(a, b) for f, a, b in zip(self.factors, g, h))

    def inverse(self, g):
        self._check(g)
        return tuple(f.inverse(a) for f, a in zip(self.factors, g))

    def elements(self, *, device=None, dtype=None):
        per_factor = [f.elements(device=device, dtype=dtype) for f in self.factors]
        sizes = [element_batch_size(e) for e in per_factor]
        grids = torch.meshgrid(*[torch.arange(s, device=device) for s in sizes], indexing="ij")
        return tuple(e[grid.reshape(-1)] for e, grid in zip(per_factor, grids))

    def index(self, g):
        self._check(g)
        index = torch.zeros(element_batch_size(g), dtype=torch.long, device=g[0].device)
        for factor, part in zip(self.factors, g):
            index = index * factor.order + factor.index(part)
        return index

    def _part(self, kind: str, g, **kwargs):
        self._check(g)
        for factor, part in zip(self.factors, g):
            value = getattr(factor, kind)(part, **kwargs)
            if value is not None:
                return value
        return None

    def linear_part(self, g, dtype=None):
        return self._part("linear_part", g, dtype=dtype)

    def translation_part(self, g, dtype=None):
        return self._part("translation_part", g, dtype=dtype)

    def permutation_part(self, g):
        return self._part("permutation_part", g)

    def from_parts(self, linear=None, translation=None, permutation=None):
        given = {"linear": linear, "translation": translation, "permutation": permutation}
        n = next(v.shape[0] for v in given.values() if v is not None)
        out = []
        for factor in self.factors:
            mine = {
                "linear": linear if factor.has_linear else None,
                "translation": translation if factor.has_translation else None,
                "permutation": permutation if factor.has_permutation else None,
            }
            if all(v is None for v in mine.values()):
                reference = next(v for v in given.values() if v is not None)
                dtype = reference.dtype if reference.is_floating_point() else None  # not a permutation's long
                out.append(factor.identity(n, device=reference.device, dtype=dtype))
            else:
                out.append(factor.from_parts(**mine))
        return tuple(out)

    def allclose(self, g, h, atol=1e-5):
        return all(f.allclose(a, b, atol) for f, a, b in zip(self.factors, g, h))

    def check_element(self, g):
        self._check(g)
        for factor, part in zip(self.factors, g):
            factor.check_element(part)
