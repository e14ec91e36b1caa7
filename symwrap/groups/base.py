"""The :class:`Group` interface: batched, differentiable group operations in torch.

An *element* is a batch of group elements: a tensor whose first dimension is the
batch (matrices for rotation groups, integer indices for C_n and D_n, permutation
tensors for S_n) or a tuple of such tensors for direct products.

Actions never special-case a group by name. They ask it for the three *parts*
an element can have on data living in R^d:

* ``linear_part(g)``: an orthogonal (B, d, d) matrix, or ``None``;
* ``translation_part(g)``: a (B, d) vector, or ``None``;
* ``permutation_part(g)``: a (B, N) permutation of N set members, or ``None``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Union

import torch

from ..errors import GroupElementError

Element = Union[torch.Tensor, tuple["Element", ...]]  # noqa: UP007 - the forward reference needs Union


def tree_map(fn: Callable[[torch.Tensor], torch.Tensor], g: Element) -> Element:
    """Apply ``fn`` to every tensor of an element (tuples for products)."""
    if isinstance(g, tuple):
        return tuple(tree_map(fn, part) for part in g)
    return fn(g)


def element_batch_size(g: Element) -> int:
    """Number of elements in a batch of elements (symbolic while torch.export traces a free batch size)."""
    if isinstance(g, tuple):
        return element_batch_size(g[0])
    return g.shape[0]


def select(g: Element, index: torch.Tensor) -> Element:
    """Elements ``g[index]`` along the batch dimension."""
    return tree_map(lambda t: t[index], g)


def repeat_each(g: Element, times: int) -> Element:
    """Each element repeated ``times`` times in a row: ``[a, a, b, b]`` for ``[a, b]`` and 2."""
    return tree_map(lambda t: t.repeat_interleave(times, dim=0), g)


def tile(g: Element, times: int) -> Element:
    """The whole batch repeated ``times`` times: ``[a, b, a, b]`` for ``[a, b]`` and 2."""
    return tree_map(lambda t: t.repeat(times, *([1] * (t.ndim - 1))), g)


def cat(elements: list[Element]) -> Element:
    """Concatenate batches of elements."""
    first = elements[0]
    if isinstance(first, tuple):
        return tuple(cat([e[i] for e in elements]) for i in range(len(first)))
    return torch.cat(elements, dim=0)


class Group(ABC):
    """A group with batched torch operations.

    Subclasses set the class attributes and implement the group law. Elements
    are batched: every method takes and returns a batch of ``B`` elements.

    Attributes:
        name: the registry name (``"SO3"``, ``"C4"``, ``"E3xS"``).
        dim: dimension of the space the group acts on linearly or by
            translation (``None`` for pure permutation groups).
        order: number of elements, ``None`` for infinite groups (and for ``S``
            before a set size is bound).
        has_linear / has_translation / has_permutation: which parts an element has.
        special: ``True`` when the linear part always has determinant +1.
    """

    name: str = "group"
    dim: int | None = None
    order: int | None = None
    has_linear: bool = False
    has_translation: bool = False
    has_permutation: bool = False
    special: bool = True

    # --- identity of the group -------------------------------------------------
    @property
    def is_finite(self) -> bool:
        return self.order is not None

    @property
    def needs_size(self) -> bool:
        """True for groups whose size comes from the data (``S``): bind with :meth:`sized`."""
        return False

    def sized(self, n: int, lengths: torch.Tensor | None = None) -> Group:
        """The group made concrete for sets of ``n`` members.

        ``lengths`` (optional, one per element row) restricts row ``r`` of permutations
        to its first ``lengths[r % len(lengths)]`` members, as needed for batches of
        graphs of different sizes (see :attr:`ragged`). Groups without permutations
        return themselves.
        """
        return self

    @property
    def ragged(self) -> bool:
        """True for a group bound to sets of different sizes: row ``r`` of a batch of elements
        may only move the first ``lengths[r]`` members. :meth:`sample` draws such elements;
        :meth:`elements` lists the group of the largest set, which :meth:`fit_rows` restricts."""
        return False

    def fit_rows(self, g: Element) -> Element:
        """Elements ``g`` (row ``r`` acts on sample ``r`` of the bound batch) restricted to act within
        each row's own set. The identity for groups that are not :attr:`ragged`.

        A ragged permutation group keeps, in row ``r``, the relative order of the first ``lengths[r]``
        entries and fixes the rest: over :meth:`elements` (all of S_n), each permutation of S_{lengths[r]}
        then appears ``n! / lengths[r]!`` times, so an average over :meth:`elements` stays exact.
        """
        return g

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Group) and type(self) is type(other) and self.name == other.name

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))

    # --- group law ---------------------------------------------------------------
    @abstractmethod
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Element:
        """``n`` elements drawn from the Haar measure (Gaussian translations for
        non-compact factors)."""

    @abstractmethod
    def identity(
        self, n: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Element:
        """``n`` copies of the identity element."""

    @abstractmethod
    def compose(self, g: Element, h: Element) -> Element:
        """The products ``g·h`` (first ``h``, then ``g``), elementwise over the batch."""

    @abstractmethod
    def inverse(self, g: Element) -> Element:
        """The inverses ``g⁻¹``."""

    def elements(self, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Element:
        """All elements of a finite group, identity first."""
        raise GroupElementError(
            f"group {self.name!r} is infinite and has no element list; "
            "use group.sample(n) for Monte Carlo averaging instead."
        )

    def matrix(self, g: Element) -> torch.Tensor:
        """The defining representation as a (B, d, d) matrix."""
        linear = self.linear_part(g)
        if linear is None:
            raise GroupElementError(f"group {self.name!r} has no matrix representation")
        return linear

    # --- parts used by actions -------------------------------------------------------
    def linear_part(self, g: Element, dtype: torch.dtype | None = None) -> torch.Tensor | None:
        return None

    def translation_part(self, g: Element, dtype: torch.dtype | None = None) -> torch.Tensor | None:
        return None

    def permutation_part(self, g: Element) -> torch.Tensor | None:
        return None

    def from_parts(
        self,
        linear: torch.Tensor | None = None,
        translation: torch.Tensor | None = None,
        permutation: torch.Tensor | None = None,
    ) -> Element:
        """Build elements from their parts (the inverse of the ``*_part`` methods).

        Used by frame averaging and canonicalization, which compute a rotation and
        a translation from the data and need them as elements of this group.
        """
        raise GroupElementError(f"group {self.name!r} cannot build elements from parts")

    # --- helpers ---------------------------------------------------------------------
    def index(self, g: Element) -> torch.Tensor:
        """Position of each element in :meth:`elements` (finite groups only)."""
        if not self.is_finite:
            raise GroupElementError(f"group {self.name!r} is infinite: its elements have no index")
        table = self.elements(device=_device_of(g))
        flat_all = _flatten(table).to(torch.float64)
        flat_g = _flatten(g).to(torch.float64)
        distance = torch.cdist(flat_g, flat_all)
        best = distance.min(dim=1)
        if bool((best.values > 1e-4).any()):
            raise GroupElementError(f"tensor is not an element of {self.name!r}")
        return best.indices

    def allclose(self, g: Element, h: Element, atol: float = 1e-5) -> bool:
        """Whether two batches of elements are equal up to ``atol``."""
        return bool(torch.allclose(_flatten(g).double(), _flatten(h).double(), atol=atol))

    def lie_algebra(
        self, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """A basis (k, m, m) of the Lie algebra, in the same matrix form as the elements."""
        raise GroupElementError(
            f"group {self.name!r} is not a matrix Lie group; lie_derivative supports SO2, O2, SO3, O3, SE3 and E3"
        )

    def exp(self, algebra: torch.Tensor) -> Element:
        """Elements ``exp(A)`` for a batch (B, m, m) of Lie algebra matrices."""
        if algebra.dtype in (torch.float16, torch.bfloat16):  # torch's matrix_exp is wrong there (exp(0) != I)
            return torch.linalg.matrix_exp(algebra.float()).to(algebra.dtype)
        return torch.linalg.matrix_exp(algebra)

    def check_element(self, g: Element) -> None:  # noqa: B027 - optional hook
        """Raise :class:`GroupElementError` if ``g`` does not look like a batch of elements."""


def _flatten(g: Element) -> torch.Tensor:
    if isinstance(g, tuple):
        return torch.cat([_flatten(part) for part in g], dim=1)
    return g.reshape(g.shape[0], math.prod(g.shape[1:])).to(torch.float64)  # not -1: empty batches too


def _device_of(g: Element) -> torch.device:
    return g[0].device if isinstance(g, tuple) else g.device  # type: ignore[union-attr]


def default_dtype(dtype: torch.dtype | None) -> torch.dtype:
    return dtype if dtype is not None else torch.get_default_dtype()


def rotation_2d(angle: torch.Tensor) -> torch.Tensor:
    """(B, 2, 2) counter-clockwise rotation matrices for a batch of angles."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def exact_cos_sin(k: torch.Tensor, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of 2πk/n, computed in float64 with multiples of π/2 made exact."""
    angle = 2 * math.pi * k.to(torch.float64) / n
    cos, sin = torch.cos(angle), torch.sin(angle)
    quarter = (4 * k) % n == 0  # the angle is a multiple of 90°
    cos = torch.where(quarter, cos.round(), cos)
    sin = torch.where(quarter, sin.round(), sin)
    return cos.to(dtype), sin.to(dtype)
