"""Permutation groups S_n. An element is a (B, n) long tensor ``p``: set member
``i`` moves to position ``p[i]`` (the permutation matrix has ``P[p[i], i] = 1``)."""

from __future__ import annotations

import itertools
import math

import torch

from ..errors import GroupElementError
from .base import Group

MAX_ENUMERABLE_SET_SIZE = 8  # 8! = 40,320 elements


class PermutationGroup(Group):
    """S_n, or ``S`` with the set size taken from the data (see :meth:`sized`)."""

    has_permutation = True
    special = False

    def __init__(self, n: int | None = None, lengths: torch.Tensor | None = None) -> None:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise GroupElementError(f"S_n needs an integer n >= 1; got n={n!r}")
        if n is None and lengths is not None:
            raise GroupElementError("per-set lengths need a set size n: PermutationGroup(n, lengths)")
        self.n = n
        self.lengths = _ragged_lengths(n, lengths)
        self.name = "S" if n is None else f"S{n}"
        # bound to sets of different sizes, the elements are still those of S_n (see fit_rows)
        self.order = None if n is None else math.factorial(n)

    @property
    def needs_size(self) -> bool:
        return self.n is None

    @property
    def ragged(self) -> bool:
        return self.lengths is not None

    def fit_rows(self, g):
        if self.lengths is None:
            return g
        self.check_element(g)
        rows, size = g.shape
        keys = torch.where(_inside(self.lengths, rows, size, g.device), g, size + torch.arange(size, device=g.device))
        return torch.argsort(torch.argsort(keys, dim=1), dim=1)  # each entry's rank: relative order kept

    def sized(self, n, lengths=None):
        if self.n is not None and self.n != n and lengths is None:
            raise GroupElementError(f"{self.name} acts on sets of {self.n} members; the data has {n}")
        group = PermutationGroup(n, lengths)
        group.name = self.name  # S stays S: the size is a property of the data
        return group

    def _size(self) -> int:
        if self.n is None:
            raise GroupElementError(
                "the group 'S' takes its set size from the data: call group.sized(N) "
                "(wrap() and the metrics do it for you)"
            )
        return self.n

    def sample(self, n, *, generator=None, device=None, dtype=None):
        size = self._size()
        keys = torch.rand(n, size, generator=generator, device=device)
        if self.lengths is not None:
            position = torch.arange(size, device=keys.device).to(keys.dtype)
            keys = torch.where(_inside(self.lengths, n, size, keys.device), keys, 2.0 + position)
        return torch.argsort(keys, dim=1)

    def identity(self, n, *, device=None, dtype=None):
        return torch.arange(self._size(), device=device).expand(n, -1).clone()

    def compose(self, g, h):
        return torch.gather(g, 1, h)

    def inverse(self, g):
        return torch.argsort(g, dim=1)

    def elements(self, *, device=None, dtype=None):
        size = self._size()
        if size > MAX_ENUMERABLE_SET_SIZE:
            raise GroupElementError(
                f"S_{size} has {math.factorial(size):,} elements, too many to enumerate "
                f"(the limit is S_{MAX_ENUMERABLE_SET_SIZE}); sample it instead"
            )
        return torch.tensor(list(itertools.permutations(range(size))), dtype=torch.long, device=device)

    def index(self, g):
        self.check_element(g)
        size = g.shape[1]
        # Lehmer code, which is the lexicographic rank used by elements()
        smaller_after = (g.unsqueeze(2) > g.unsqueeze(1)).triu(1).sum(dim=2)
        weights = torch.tensor([math.factorial(size - 1 - i) for i in range(size)], device=g.device)
        return (smaller_after * weights).sum(dim=1)

    def permutation_part(self, g):
        self.check_element(g)
        return g

    def matrix(self, g):
        self.check_element(g)
        return torch.nn.functional.one_hot(g, g.shape[1]).transpose(-1, -2).to(torch.get_default_dtype())

    def from_parts(self, linear=None, translation=None, permutation=None):
        if permutation is None or linear is not None or translation is not None:
            raise GroupElementError(f"{self.name} elements are built from a permutation part only")
        return permutation

    def check_element(self, g):
        if not isinstance(g, torch.Tensor) or g.ndim != 2 or g.dtype not in (torch.int32, torch.int64):
            shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
            raise GroupElementError(f"elements of {self.name} are (B, N) integer permutations; got {shape}")
        if self.n is not None and g.shape[1] != self.n:
            raise GroupElementError(f"elements of {self.name} permute {self.n} members; got {g.shape[1]}")


def _ragged_lengths(n: int | None, lengths: torch.Tensor | None) -> torch.Tensor | None:
    """``lengths`` checked against the set size ``n``; ``None`` when every set has all ``n`` members."""
    if lengths is None:
        return None
    if not isinstance(lengths, torch.Tensor) or lengths.ndim != 1 or lengths.numel() == 0 \
            or lengths.dtype not in (torch.int32, torch.int64):
        given = f"shape {tuple(lengths.shape)}, dtype {lengths.dtype}" if isinstance(lengths, torch.Tensor) \
            else type(lengths).__name__
        raise GroupElementError(f"set lengths must be a non-empty 1-D integer tensor; got {given}")
    if bool((lengths < 0).any()) or bool((lengths > n).any()):
        raise GroupElementError(f"set lengths must lie in [0, {n}] for sets of {n} members; got {lengths.tolist()}")
    return None if bool((lengths == n).all()) else lengths


def _inside(lengths: torch.Tensor, rows: int, size: int, device: torch.device) -> torch.Tensor:
    """(rows, size) mask of the members row ``r`` may move: its first ``lengths[r % len(lengths)]``."""
    lengths = lengths.to(device)
    row_length = lengths[torch.arange(rows, device=device) % lengths.numel()]
    return torch.arange(size, device=device).expand(rows, size) < row_length[:, None]
