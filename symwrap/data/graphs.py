"""Graph data sets on which 1-WL message passing fails, and real molecular graphs.

* :func:`csl`: the Circular Skip-Link graphs of Murphy et al. (2019, "Relational Pooling for
  Graph Representations"): 10 classes of 4-regular graphs on 41 nodes that 1-WL color
  refinement, and so every message-passing GNN, cannot tell apart.
* :func:`exp_pairs`: an EXP-style generator (after Abboud et al., 2021): pairs of graphs that
  are 1-WL-equivalent but not isomorphic, one connected (label 0) and one disconnected (label 1).
* :func:`esol` and :func:`solubility`: molecular graphs with a water-solubility regression
  label, read with ``datamol`` / RDKit (optional extra ``data``).
* :func:`wl_colors` and :func:`wl_equivalent`: 1-WL color refinement, which documents (and
  the tests check) the claims above.

Every data set is a :class:`GraphDataset`: dense adjacency matrices zero-padded to the largest
graph, node features, a node mask and graph labels, so that an MLP can read the flattened
adjacency matrix and a GNN can read :meth:`GraphDataset.to_pyg`. The generated graphs are
unattributed (every node feature is 1) and their node order is randomly permuted with a
seeded generator: with a fixed node order an MLP could read the class off fixed positions.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch

from ..errors import ConfigError, MissingDependencyError, ShapeError, SymwrapError
from .images import DatasetNotFoundError

__all__ = [
    "CSL_SKIPS",
    "ESOL_ATOM_TYPES",
    "GraphDataset",
    "csl",
    "esol",
    "exp_pairs",
    "solubility",
    "wl_colors",
    "wl_equivalent",
]

#: the skip lengths of the 10 CSL classes of Murphy et al. (2019)
CSL_SKIPS: tuple[int, ...] = (2, 3, 4, 5, 6, 9, 11, 12, 13, 16)
#: elements one-hot encoded by :func:`esol` and :func:`solubility`; any other element sets the last, "other" slot
ESOL_ATOM_TYPES: tuple[str, ...] = ("C", "N", "O", "S", "F", "Cl", "Br", "I", "P")
#: MoleculeNet's file name for ESOL and the columns :func:`esol` reads
ESOL_FILE = "delaney-processed.csv"
_ESOL_SMILES_COLUMN = "smiles"
_ESOL_TARGET_COLUMN = "measured log solubility in mols per litre"
_EXP_FAMILIES = ("lift", "regular")


def _pyg_data():
    try:
        import torch_geometric.data as pyg_data
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("torch_geometric", "pyg", "GraphDataset.to_pyg") from error
    return pyg_data


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False, repr=False)
class GraphDataset:
    """``G`` graphs as dense, zero-padded tensors.

    Attributes:
        adjacency: (G, N, N) float adjacency matrices, symmetric, zero on the diagonal and outside
            each graph's first ``num_nodes`` rows and columns; ``N`` is the largest graph's size.
        features: (G, N, F) node features, zero on padding nodes.
        mask: (G, N) bool, True on the real nodes (the first ``num_nodes[g]`` of graph ``g``).
        labels: (G,) long class labels, or float targets for regression.
        num_nodes: (G,) long node counts.
        num_classes: number of classes, or ``None`` for regression.
        name: the data set's name.

    ``len(data)`` is ``G``; ``data[idx]`` (an int, slice, list, index or bool tensor) gives a
    :class:`GraphDataset` of the selected graphs, an int a data set of one graph.
    """

    adjacency: torch.Tensor
    features: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    num_nodes: torch.Tensor
    num_classes: int | None
    name: str

    def __post_init__(self) -> None:
        for field in fields(self)[:5]:
            if not isinstance(getattr(self, field.name), torch.Tensor):
                raise ShapeError(
                    f"GraphDataset.{field.name} must be a tensor; got {type(getattr(self, field.name)).__name__}"
                )
        adjacency = self.adjacency
        if adjacency.ndim != 3 or adjacency.shape[1] != adjacency.shape[2]:
            raise ShapeError(f"GraphDataset.adjacency must be (G, N, N); got shape {tuple(adjacency.shape)}")
        g, n = adjacency.shape[:2]
        if self.features.ndim != 3 or self.features.shape[:2] != (g, n):
            raise ShapeError(f"GraphDataset.features must be ({g}, {n}, F); got shape {tuple(self.features.shape)}")
        expected = {"mask": (g, n), "labels": (g,), "num_nodes": (g,)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ShapeError(f"GraphDataset.{name} must have shape {shape}; got {tuple(getattr(self, name).shape)}")
        if self.mask.dtype != torch.bool:
            raise ShapeError(f"GraphDataset.mask must be a bool tensor; got {self.mask.dtype}")
        if self.num_classes is not None:
            _check_int("GraphDataset.num_classes", self.num_classes, 1)
            out_of_range = g > 0 and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes)
            if self.labels.is_floating_point() or out_of_range:
                raise ConfigError(
                    f"GraphDataset.labels must be integers in [0, {self.num_classes}) for {self.num_classes} classes; "
                    f"got {self.labels.dtype} labels from {self.labels.min().item() if g else None} "
                    f"to {self.labels.max().item() if g else None}"
                )

    # --- container ---------------------------------------------------------------------
    def __len__(self) -> int:
        return self.adjacency.shape[0]

    def __getitem__(self, idx: int | slice | Sequence[int] | np.ndarray | torch.Tensor) -> GraphDataset:
        if isinstance(idx, torch.Tensor) and idx.ndim == 0 or isinstance(idx, np.integer):
            idx = int(idx)
        if isinstance(idx, int) and not isinstance(idx, bool):
            if not -len(self) <= idx < len(self):
                raise IndexError(f"index {idx} is out of range for {len(self)} graphs")
            idx = slice(idx % len(self), idx % len(self) + 1)
        elif not isinstance(idx, slice):
            idx = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
            if idx.dtype != torch.bool:
                idx = idx.long()
        return GraphDataset(
            self.adjacency[idx], self.features[idx], self.mask[idx], self.labels[idx], self.num_nodes[idx],
            self.num_classes, self.name,
        )

    def __repr__(self) -> str:
        task = f"classes={self.num_classes}" if self.num_classes is not None else "regression"
        return (
            f"GraphDataset(name={self.name!r}, graphs={len(self)}, max_nodes={self.max_nodes}, "
            f"features={self.num_features}, {task})"
        )

    @property
    def max_nodes(self) -> int:
        """``N``, the padded number of nodes."""
        return self.adjacency.shape[1]

    @property
    def num_features(self) -> int:
        """``F``, the number of node features."""
        return self.features.shape[2]

    def to(self, *args: Any, **kwargs: Any) -> GraphDataset:
        """Every tensor moved with ``Tensor.to(*args, **kwargs)``; only floating tensors are cast to a dtype."""

        def move(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.is_floating_point():
                return tensor.to(*args, **kwargs)
            moved = tensor.to(*args, **kwargs)
            return moved if moved.dtype == tensor.dtype else moved.to(tensor.dtype)

        return GraphDataset(
            move(self.adjacency), move(self.features), move(self.mask), move(self.labels), move(self.num_nodes),
            self.num_classes, self.name,
        )

    # --- splits ------------------------------------------------------------------------
    def split(
        self, sizes: Sequence[float] | Sequence[int], seed: int = 0, stratify: bool | None = None
    ) -> tuple[GraphDataset, ...]:
        """Disjoint random subsets, the same for the same ``seed``.

        Args:
            sizes: fractions of the data set (floats in (0, 1], summing to at most 1) or numbers of
                graphs (ints >= 1, summing to at most ``len(self)``). Fractions that sum to 1 use
                every graph (sizes rounded by largest remainder); otherwise the rest is left out.
            seed: seed of the shuffle.
            stratify: keep the class proportions of every split close to the whole data set's
                (within one graph per class); ``None`` means yes for classification, no for regression.

        Returns:
            One :class:`GraphDataset` per entry of ``sizes``, in that order.

        Raises:
            ConfigError: sizes that are empty, mixed, negative, too large or give an empty split,
                or ``stratify=True`` for a regression data set.
        """
        counts = self._split_counts(sizes)
        _check_int("split: seed", seed, 0)
        if stratify is None:
            stratify = self.num_classes is not None
        if stratify and self.num_classes is None:
            raise ConfigError(f"split: stratify=True needs class labels; {self.name!r} is a regression data set")
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=generator)
        if stratify:
            # Give each graph the quantile of its rank within its class: sorting by it interleaves the
            # classes, so that every contiguous block of the order holds each class in proportion.
            labels = self.labels[order]
            quantile = torch.empty(len(self), dtype=torch.float64)
            for label in labels.unique():
                members = (labels == label).nonzero().flatten()
                quantile[members] = (torch.arange(len(members), dtype=torch.float64) + 0.5) / len(members)
            order = order[torch.sort(quantile, stable=True).indices]
        bounds = np.cumsum([0, *counts])
        return tuple(self[order[start:stop]] for start, stop in zip(bounds[:-1], bounds[1:]))

    def _split_counts(self, sizes: Sequence[float] | Sequence[int]) -> list[int]:
        total = len(self)
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
            raise ConfigError(f"split: sizes must be a non-empty list of fractions or of graph counts; got {sizes!r}")
        if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sizes):
            counts = [int(s) for s in sizes]
            if min(counts) < 1 or sum(counts) > total:
                raise ConfigError(
                    f"split: graph counts must be >= 1 and sum to at most {total} (the data set's size); got {sizes!r}"
                )
            return counts
        if not all(isinstance(s, float) and 0 < s <= 1 for s in sizes) or sum(sizes) > 1 + 1e-9:
            raise ConfigError(
                "split: sizes must be all ints (graph counts) or all floats in (0, 1] summing to at most 1 "
                f"(fractions); got {sizes!r}"
            )
        exact = [s * total for s in sizes]
        counts = [math.floor(x + 1e-9) for x in exact]
        if math.isclose(sum(sizes), 1.0, abs_tol=1e-9):
            remainders = sorted(range(len(sizes)), key=lambda i: counts[i] - exact[i])
            for i in remainders[: total - sum(counts)]:
                counts[i] += 1
        if min(counts) < 1:
            raise ConfigError(f"split: fractions {sizes!r} of {total} graphs give an empty split {counts}")
        return counts

    # --- conversion --------------------------------------------------------------------
    def to_pyg(self) -> list[Any]:
        """The graphs as ``torch_geometric.data.Data`` objects, for message-passing baselines.

        Each has ``x`` (n, F), ``edge_index`` (2, E) with both directions of every edge (E is the
        number of nonzero adjacency entries), ``y`` of shape (1,) and ``num_nodes``; padding is dropped.

        Raises:
            MissingDependencyError: ``torch_geometric`` is not installed (extra ``pyg``).
        """
        pyg_data = _pyg_data()
        graphs = []
        for g in range(len(self)):
            n = int(self.num_nodes[g])
            edge_index = self.adjacency[g, :n, :n].nonzero().t().contiguous()
            graphs.append(pyg_data.Data(
                x=self.features[g, :n], edge_index=edge_index, y=self.labels[g : g + 1], num_nodes=n,
            ))
        return graphs

    @classmethod
    def from_networkx(
        cls,
        graphs: Sequence[nx.Graph],
        labels: Sequence[int] | Sequence[float] | torch.Tensor,
        *,
        num_classes: int | None,
        name: str,
        max_nodes: int | None = None,
        permute: bool = False,
        seed: int = 0,
    ) -> GraphDataset:
        """Unattributed graphs (every node feature 1) as a :class:`GraphDataset`.

        Args:
            graphs: undirected networkx graphs; self-loops are dropped and node ``i`` of the
                result is the ``i``-th node of ``graph.nodes``.
            labels: one label per graph.
            num_classes: number of classes, or ``None`` for float regression labels.
            name: the data set's name.
            max_nodes: ``N``, the padded size (default: the largest graph's).
            permute: shuffle each graph's node order with a seeded generator.
            seed: seed of the permutations.

        Raises:
            ConfigError: no graphs, a label count that differs from the graph count, or a graph
                larger than ``max_nodes``.
        """
        matrices = []
        for graph in graphs:
            matrix = nx.to_numpy_array(graph, nodelist=list(graph.nodes), weight=None, dtype=np.float32)
            np.fill_diagonal(matrix, 0.0)
            matrices.append(matrix)
        return _build(matrices, None, labels, num_classes=num_classes, name=name, max_nodes=max_nodes,
                      permute=permute, seed=seed)


def _build(
    matrices: Sequence[np.ndarray],
    node_features: Sequence[np.ndarray] | None,
    labels: Sequence[int] | Sequence[float] | torch.Tensor,
    *,
    num_classes: int | None,
    name: str,
    max_nodes: int | None,
    permute: bool,
    seed: int,
) -> GraphDataset:
    """Pad per-graph adjacency matrices (and features, default all ones) into a :class:`GraphDataset`."""
    if not matrices:
        raise ConfigError(f"{name}: no graphs given")
    labels = torch.as_tensor(labels, dtype=torch.float32 if num_classes is None else torch.long)
    if labels.shape != (len(matrices),):
        raise ConfigError(f"{name}: {len(matrices)} graphs need as many labels; got shape {tuple(labels.shape)}")
    largest = max(m.shape[0] for m in matrices)
    if max_nodes is None:
        max_nodes = largest
    elif _check_int(f"{name}: max_nodes", max_nodes, 1) < largest:
        raise ConfigError(f"{name}: max_nodes={max_nodes} is smaller than the largest graph ({largest} nodes)")
    num_features = 1 if node_features is None else node_features[0].shape[1]
    adjacency = torch.zeros(len(matrices), max_nodes, max_nodes)
    features = torch.zeros(len(matrices), max_nodes, num_features)
    mask = torch.zeros(len(matrices), max_nodes, dtype=torch.bool)
    num_nodes = torch.tensor([m.shape[0] for m in matrices], dtype=torch.long)
    generator = torch.Generator().manual_seed(_check_int(f"{name}: seed", seed, 0))
    for g, matrix in enumerate(matrices):
        n = matrix.shape[0]
        a = torch.as_tensor(matrix, dtype=torch.float32)
        x = torch.ones(n, 1) if node_features is None else torch.as_tensor(node_features[g], dtype=torch.float32)
        if permute:
            perm = torch.randperm(n, generator=generator)
            a, x = a[perm][:, perm], x[perm]
        adjacency[g, :n, :n] = a
        features[g, :n] = x
        mask[g, :n] = True
    return GraphDataset(adjacency, features, mask, labels, num_nodes, num_classes, name)


# --- CSL --------------------------------------------------------------------------------
def csl(
    num_per_class: int = 15,
    num_nodes: int = 41,
    skips: Sequence[int] = CSL_SKIPS,
    seed: int = 0,
    permute: bool = True,
) -> GraphDataset:
    """The Circular Skip-Link data set (Murphy et al., 2019).

    Graph ``G(n, R)`` is the cycle ``0 - 1 - ... - (n-1) - 0`` plus the skip links
    ``i - (i + R) mod n``; class ``c`` is ``G(num_nodes, skips[c])``. The defaults give the
    original 150 graphs: 10 classes of 15, on 41 nodes. Every graph is 4-regular, so 1-WL color
    refinement gives all nodes of all graphs one color and no message-passing GNN can tell
    the classes apart; yet the default classes are pairwise non-isomorphic (for prime ``n``,
    ``G(n, R) ≅ G(n, R')`` only when ``R' ≡ ±R`` or ``±R⁻¹`` mod ``n``, which no two default
    skips satisfy). Graphs are ordered by class.

    Args:
        num_per_class: graphs per class (copies of the class's graph, each with its own node order).
        num_nodes: nodes per graph, ``n >= 5``.
        skips: one skip length per class, distinct, each in ``[2, (n - 1) // 2]``. Other choices
            than the default may give isomorphic classes; that is not checked.
        seed: seed of the node permutations.
        permute: randomly permute each graph's node order; without it the copies of a class are
            identical and the class can be read off fixed adjacency entries.

    Returns:
        A :class:`GraphDataset` named ``"csl"`` with ``len(skips)`` classes and feature 1 on every node.

    Raises:
        ConfigError: a count, size, skip or seed out of range.
    """
    num_per_class = _check_int("csl: num_per_class", num_per_class, 1)
    num_nodes = _check_int("csl: num_nodes", num_nodes, 5)
    if isinstance(skips, (str, bytes)) or not isinstance(skips, Sequence) or not skips:
        raise ConfigError(f"csl: skips must be a non-empty sequence of skip lengths; got {skips!r}")
    top = (num_nodes - 1) // 2
    for skip in skips:
        _check_int("csl: each skip", skip, 2)
        if skip > top:
            raise ConfigError(
                f"csl: each skip must be in [2, {top}] for {num_nodes} nodes (longer skips repeat shorter ones "
                f"or make the graph non-4-regular); got {skip!r} in {tuple(skips)!r}"
            )
    if len(set(skips)) != len(skips):
        raise ConfigError(f"csl: skips must be distinct (one per class); got {tuple(skips)!r}")
    graphs, labels = [], []
    for label, skip in enumerate(skips):
        graph = nx.circulant_graph(num_nodes, [1, int(skip)])
        graphs += [graph] * num_per_class
        labels += [label] * num_per_class
    return GraphDataset.from_networkx(graphs, labels, num_classes=len(skips), name="csl", permute=permute, seed=seed)


# --- EXP-style pairs --------------------------------------------------------------------
def _connected_regular(degree: int, n: int, rng: np.random.Generator) -> nx.Graph:
    if degree == 2:
        return nx.cycle_graph(n)
    while True:  # random d-regular graphs with d >= 3 are connected with high probability
        graph = nx.random_regular_graph(degree, n, seed=int(rng.integers(2**31)))
        if nx.is_connected(graph):
            return graph


def _regular_pair(degree: int, n: int, rng: np.random.Generator) -> tuple[nx.Graph, nx.Graph]:
    """A connected d-regular graph on n nodes and the disjoint union of two connected d-regular graphs."""
    # each part needs >= d + 1 nodes, and n_part * d even for a d-regular graph to exist
    parts = [k for k in range(degree + 1, n - degree) if (k * degree) % 2 == 0]
    first = int(rng.choice(parts))
    union = nx.disjoint_union(_connected_regular(degree, first, rng), _connected_regular(degree, n - first, rng))
    return _connected_regular(degree, n, rng), union


def _base_graph(m: int, rng: np.random.Generator) -> tuple[nx.Graph, list[tuple[int, int]]]:
    """A random connected graph on m nodes with at least one cycle, and its edges outside a spanning tree."""
    graph = nx.Graph()
    graph.add_nodes_from(range(m))
    for v in range(1, m):  # random recursive tree
        graph.add_edge(v, int(rng.integers(v)))
    non_edges = [(u, v) for u in range(m) for v in range(u + 1, m) if not graph.has_edge(u, v)]
    count = int(rng.integers(1, max(1, m // 2) + 1))
    extra = [non_edges[i] for i in sorted(rng.choice(len(non_edges), size=count, replace=False))]
    graph.add_edges_from(extra)
    return graph, extra


def _two_lift(base: nx.Graph, crossed: set[tuple[int, int]]) -> nx.Graph:
    """The 2-lift of ``base``: nodes v and v + m; a crossed edge u-v (u < v) joins u-(v+m) and (u+m)-v."""
    m = base.number_of_nodes()
    lift = nx.Graph()
    lift.add_nodes_from(range(2 * m))
    for u, v in base.edges:
        shift = m if (min(u, v), max(u, v)) in crossed else 0
        lift.add_edge(u, v + shift)
        lift.add_edge(u + m, (v + m + shift) % (2 * m))
    return lift


def _lift_pair(n: int, rng: np.random.Generator) -> tuple[nx.Graph, nx.Graph]:
    """A connected 2-lift of a random base graph on n / 2 nodes and the trivial lift (two copies of the base)."""
    base, extra = _base_graph(n // 2, rng)
    crossed = {(min(u, v), max(u, v)) for u, v in base.edges if rng.random() < 0.5}
    connected = _two_lift(base, crossed)
    if not nx.is_connected(connected):
        # The lift is disconnected iff every cycle crosses an even number of times; flipping one
        # non-tree edge makes its fundamental cycle odd.
        crossed ^= {extra[0]}
        connected = _two_lift(base, crossed)
    return connected, _two_lift(base, set())


def exp_pairs(
    num_pairs: int = 100,
    min_nodes: int = 10,
    max_nodes: int = 30,
    degrees: Sequence[int] = (2, 3, 4),
    families: Sequence[str] = _EXP_FAMILIES,
    seed: int = 0,
    permute: bool = True,
) -> GraphDataset:
    """Pairs of 1-WL-equivalent, non-isomorphic graphs, in the spirit of EXP (Abboud et al., 2021).

    Graphs ``2i`` and ``2i + 1`` form pair ``i``: the first is connected (label 0), the second is
    the disjoint union of two connected graphs (label 1), so the label says whether the graph is
    disconnected and the two graphs of a pair are not isomorphic. Both have the same number of
    nodes and edges and the same 1-WL color-refinement histogram, so a message-passing GNN gives
    them the same output and stays at chance. Pair ``i`` comes from family
    ``families[i % len(families)]``:

    * ``"lift"``: a random connected base graph ``B`` on ``n / 2`` nodes with at least one cycle
      (a random tree plus extra edges, so degrees vary); the pair is a connected 2-lift of ``B``
      and ``B ⊔ B``. Both cover ``B`` twice, so color refinement gives each the histogram of
      ``B`` doubled. ``B`` a cycle ``C_k`` gives the classic ``C_2k`` vs ``C_k ⊔ C_k``.
    * ``"regular"``: for a degree ``d`` from ``degrees``, a connected random ``d``-regular graph on
      ``n`` nodes and the union of two connected random ``d``-regular graphs of sizes adding to ``n``
      (``d = 2``: ``C_n`` vs ``C_a ⊔ C_b``). All nodes of both get one color.

    Sizes ``n`` are drawn uniformly among the feasible ones in ``[min_nodes, max_nodes]`` (even for
    ``"lift"``, ``n * d`` even for ``"regular"``); the padded size is ``max_nodes``.

    Args:
        num_pairs: number of pairs (the data set has ``2 * num_pairs`` graphs, half of each label).
        min_nodes: smallest graph size, >= 6.
        max_nodes: largest graph size (and the padded size ``N``).
        degrees: node degrees of the ``"regular"`` family, each >= 2 with a feasible size in range
            (>= 2 (d + 1) nodes, so that both parts have d + 1).
        families: which constructions to use, from ``"lift"`` and ``"regular"``.
        seed: seed of the graphs and the node permutations.
        permute: randomly permute each graph's node order.

    Returns:
        A :class:`GraphDataset` named ``"exp"`` with 2 classes (0 connected, 1 disconnected).

    Raises:
        ConfigError: a count, size range, degree, family or seed that is invalid or infeasible.
    """
    num_pairs = _check_int("exp_pairs: num_pairs", num_pairs, 1)
    min_nodes = _check_int("exp_pairs: min_nodes", min_nodes, 6)
    max_nodes = _check_int("exp_pairs: max_nodes", max_nodes, min_nodes)
    seed = _check_int("exp_pairs: seed", seed, 0)
    if isinstance(families, (str, bytes)) or not isinstance(families, Sequence) or not families:
        raise ConfigError(f"exp_pairs: families must be a non-empty sequence from {_EXP_FAMILIES}; got {families!r}")
    for family in families:
        if family not in _EXP_FAMILIES:
            raise ConfigError(f"exp_pairs: unknown family {family!r}; expected one of {_EXP_FAMILIES}")
    sizes: dict[tuple[str, int], list[int]] = {}
    if "lift" in families:
        sizes["lift", 0] = [n for n in range(min_nodes, max_nodes + 1) if n % 2 == 0]
        if not sizes["lift", 0]:
            raise ConfigError(f"exp_pairs: the 'lift' family needs an even size in [{min_nodes}, {max_nodes}]")
    if "regular" in families:
        if isinstance(degrees, (str, bytes)) or not isinstance(degrees, Sequence) or not degrees:
            raise ConfigError(f"exp_pairs: degrees must be a non-empty sequence of integers >= 2; got {degrees!r}")
        for degree in degrees:
            degree = _check_int("exp_pairs: each degree", degree, 2)
            feasible = [n for n in range(max(min_nodes, 2 * degree + 2), max_nodes + 1) if n * degree % 2 == 0]
            if not feasible:
                raise ConfigError(
                    f"exp_pairs: degree {degree} has no feasible size in [{min_nodes}, {max_nodes}] "
                    f"(needs n >= {2 * degree + 2} and n * {degree} even)"
                )
            sizes["regular", degree] = feasible
    rng = np.random.default_rng(seed)
    graphs = []
    for i in range(num_pairs):
        family = families[i % len(families)]
        if family == "lift":
            pair = _lift_pair(int(rng.choice(sizes["lift", 0])), rng)
        else:
            degree = int(rng.choice(list(degrees)))
            pair = _regular_pair(degree, int(rng.choice(sizes["regular", degree])), rng)
        graphs += pair
    labels = [0, 1] * num_pairs
    return GraphDataset.from_networkx(
        graphs, labels, num_classes=2, name="exp", max_nodes=max_nodes, permute=permute, seed=seed
    )


# --- 1-WL color refinement --------------------------------------------------------------
def _refine(neighbors: list[list[int]], iterations: int | None) -> list[int]:
    """Color refinement of one graph (possibly a disjoint union), starting from one color."""
    colors = [0] * len(neighbors)
    count = 1 if neighbors else 0
    rounds = 0
    while iterations is None or rounds < iterations:
        signatures = [(colors[v], tuple(sorted(colors[u] for u in nbrs))) for v, nbrs in enumerate(neighbors)]
        # ids by sorted signature: once the partition is stable the ids no longer change
        palette = {signature: i for i, signature in enumerate(sorted(set(signatures)))}
        colors = [palette[signature] for signature in signatures]
        rounds += 1
        if len(palette) == count:
            break
        count = len(palette)
    return colors


def _as_dense(
    adjacency: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(G, N, N) adjacency and (G, N) node mask as numpy arrays, a single graph as a batch of one."""
    array = np.asarray(adjacency.detach().cpu() if isinstance(adjacency, torch.Tensor) else adjacency)
    if array.ndim not in (2, 3) or array.shape[-1] != array.shape[-2]:
        raise ShapeError(f"wl_colors: adjacency must be (N, N) or (G, N, N); got shape {array.shape}")
    batched = array.reshape(-1, *array.shape[-2:])
    if mask is None:
        keep = np.ones(batched.shape[:2], dtype=bool)
    else:
        keep = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask).astype(bool)
        if keep.shape != array.shape[:-1]:
            raise ShapeError(f"wl_colors: mask must have shape {array.shape[:-1]}; got {keep.shape}")
        keep = keep.reshape(batched.shape[:2])
    return batched, keep


def wl_colors(
    adjacency: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    iterations: int | None = None,
) -> torch.Tensor:
    """1-WL color refinement (the color-refinement algorithm) of one graph or a batch.

    All real nodes start with one color; each round a node's new color is its old color and the
    multiset of its neighbors' colors. The batch is refined as one disjoint union, so colors are
    comparable across its graphs (but not across calls): two graphs that 1-WL cannot tell apart
    end with the same color histogram, and every message-passing GNN (with unattributed nodes)
    gives nodes of one color the same embedding.

    Args:
        adjacency: (N, N) or (G, N, N) adjacency matrices; nonzero entries are edges.
        mask: (N,) or (G, N) bool, the real nodes (default: all); padding nodes get color -1.
        iterations: rounds of refinement (default: until the partition is stable, at most ``N``
            rounds per graph).

    Returns:
        A long tensor of the shape of ``mask``: the color of each node.

    Raises:
        ShapeError: an adjacency matrix that is not square or a mask of the wrong shape.
        ConfigError: ``iterations`` is not ``None`` or an integer >= 0.
    """
    if iterations is not None:
        iterations = _check_int("wl_colors: iterations", iterations, 0)
    batched, keep = _as_dense(adjacency, mask)
    index = -np.ones(keep.shape, dtype=np.int64)
    index[keep] = np.arange(int(keep.sum()))
    neighbors: list[list[int]] = []
    for g, v in zip(*np.nonzero(keep)):
        row = np.nonzero(batched[g, v] != 0)[0]
        neighbors.append([int(index[g, u]) for u in row if keep[g, u] and u != v])
    colors = np.full(keep.shape, -1, dtype=np.int64)
    colors[keep] = _refine(neighbors, iterations)
    return torch.from_numpy(colors[0] if np.ndim(adjacency) == 2 else colors)


def _as_graph_matrix(graph: object) -> np.ndarray:
    if isinstance(graph, GraphDataset):
        if len(graph) != 1:
            raise ConfigError(f"wl_equivalent: a GraphDataset argument must hold one graph; got {len(graph)}")
        n = int(graph.num_nodes[0])
        return graph.adjacency[0, :n, :n].numpy()
    if isinstance(graph, nx.Graph):
        return nx.to_numpy_array(graph, weight=None)
    if isinstance(graph, (torch.Tensor, np.ndarray)):
        array = np.asarray(graph.detach().cpu() if isinstance(graph, torch.Tensor) else graph)
        if array.ndim != 2 or array.shape[0] != array.shape[1]:
            raise ShapeError(f"wl_equivalent: an adjacency matrix must be (N, N); got shape {array.shape}")
        return array
    raise ConfigError(
        "wl_equivalent: graphs must be adjacency matrices (tensor or array), networkx graphs or one-graph "
        f"GraphDatasets; got {type(graph).__name__}"
    )


def wl_equivalent(a: object, b: object, iterations: int | None = None) -> bool:
    """Whether 1-WL color refinement cannot tell two graphs apart (equal color histograms).

    Args:
        a: a graph: an (N, N) adjacency matrix (every row a node), a networkx graph or a
            one-graph :class:`GraphDataset` (its padding dropped).
        b: the other graph, in any of those forms.
        iterations: rounds of refinement (default: until the joint partition is stable).

    Returns:
        True when both graphs end with the same multiset of colors. Isomorphic graphs always do;
        non-isomorphic ones that do cannot be separated by any message-passing GNN.
    """
    first, second = _as_graph_matrix(a), _as_graph_matrix(b)
    if first.shape != second.shape:
        return False
    colors = wl_colors(np.stack([first, second]), iterations=iterations)
    return bool(torch.equal(colors[0].sort().values, colors[1].sort().values))


# --- molecules --------------------------------------------------------------------------
def _datamol(purpose: str):
    try:
        import datamol
    except ImportError as error:
        raise MissingDependencyError("datamol", "molecules", purpose) from error
    return datamol


def _molecule_graph(mol: Any) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-atom adjacency (bond order ignored) and atom-type one-hot features of an RDKit molecule."""
    n = mol.GetNumAtoms()
    adjacency = np.zeros((n, n), dtype=np.float32)
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        adjacency[i, j] = adjacency[j, i] = 1.0
    features = np.zeros((n, len(ESOL_ATOM_TYPES) + 1), dtype=np.float32)
    for atom in mol.GetAtoms():
        symbol = atom.GetSymbol()
        slot = ESOL_ATOM_TYPES.index(symbol) if symbol in ESOL_ATOM_TYPES else len(ESOL_ATOM_TYPES)
        features[atom.GetIdx(), slot] = 1.0
    return adjacency, features


def _molecules(mols: Sequence[Any], targets: Sequence[float], name: str, permute: bool, seed: int) -> GraphDataset:
    matrices, features = [], []
    for mol in mols:
        adjacency, x = _molecule_graph(mol)
        matrices.append(adjacency)
        features.append(x)
    return _build(matrices, features, targets, num_classes=None, name=name, max_nodes=None, permute=permute,
                  seed=seed)


def esol(root: str | Path | None = None, *, permute: bool = True, seed: int = 0) -> GraphDataset:
    """ESOL (Delaney, 2004): 1,128 molecules and their measured log water solubility (log mol/L).

    Read from MoleculeNet's ``delaney-processed.csv`` (columns ``smiles`` and ``measured log
    solubility in mols per litre``); molecules are parsed with ``datamol`` (RDKit). ``datamol``
    does not ship ESOL and symwrap downloads nothing, so the file must be local; see
    :func:`solubility` for a solubility set that ``datamol`` ships.

    Graphs have one node per heavy atom (hydrogens implicit), an edge per bond (bond order
    ignored) and node features one-hot over :data:`ESOL_ATOM_TYPES` plus "other".

    Args:
        root: the CSV file, or a folder holding ``delaney-processed.csv``.
        permute: randomly permute each molecule's atom order (RDKit's order follows the SMILES
            string, which an MLP over the adjacency matrix could exploit).
        seed: seed of the permutations.

    Returns:
        A regression :class:`GraphDataset` named ``"esol"`` (float labels, ``num_classes=None``).

    Raises:
        MissingDependencyError: ``datamol`` is not installed.
        DatasetNotFoundError: ``root`` is ``None`` or the file does not exist.
        SymwrapError: the file lacks the columns, or a SMILES string or target cannot be parsed.
    """
    dm = _datamol("the ESOL data set")
    if root is None:
        raise DatasetNotFoundError(
            f"esol: datamol does not ship ESOL; pass root= the path of MoleculeNet's {ESOL_FILE!r} (1,128 rows), "
            "or use symwrap.data.solubility() for the solubility set that datamol ships"
        )
    path = Path(root)
    if path.is_dir():
        path = path / ESOL_FILE
    if not path.is_file():
        raise DatasetNotFoundError(f"esol: no ESOL file at {str(path)!r}; expected MoleculeNet's {ESOL_FILE!r}")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0]) if rows else set()
    if not {_ESOL_SMILES_COLUMN, _ESOL_TARGET_COLUMN} <= columns:
        raise SymwrapError(
            f"esol: {str(path)!r} must have the columns {_ESOL_SMILES_COLUMN!r} and {_ESOL_TARGET_COLUMN!r}; "
            f"got {sorted(columns)}"
        )
    mols, targets = [], []
    for line, row in enumerate(rows, start=2):
        mol = dm.to_mol(row[_ESOL_SMILES_COLUMN])
        try:
            target = float(row[_ESOL_TARGET_COLUMN])
        except ValueError:
            target = math.nan
        if mol is None or not math.isfinite(target):
            raise SymwrapError(
                f"esol: line {line} of {str(path)!r} has an unreadable SMILES or target: "
                f"{row[_ESOL_SMILES_COLUMN]!r}, {row[_ESOL_TARGET_COLUMN]!r}"
            )
        mols.append(mol)
        targets.append(target)
    return _molecules(mols, targets, "esol", permute, seed)


def solubility(*, permute: bool = True, seed: int = 0) -> GraphDataset:
    """The aqueous solubility set that ``datamol`` ships (``datamol.data.solubility()``).

    These are RDKit's ``solubility.train.sdf`` and ``solubility.test.sdf`` (Huuskonen's data),
    train molecules first; the label is the ``SOL`` field, log solubility in mol/L. This is not
    ESOL (see :func:`esol`), but a real molecular regression set available offline. Graphs are
    built as in :func:`esol`.

    Args:
        permute: randomly permute each molecule's atom order.
        seed: seed of the permutations.

    Returns:
        A regression :class:`GraphDataset` named ``"solubility"``.

    Raises:
        MissingDependencyError: ``datamol`` is not installed.
    """
    dm = _datamol("the datamol solubility data set")
    frame = dm.data.solubility(as_df=True, mol_column="mol")
    return _molecules(list(frame["mol"]), [float(v) for v in frame["SOL"]], "solubility", permute, seed)
