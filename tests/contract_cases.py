"""The input kinds of the contract suite: for each, a group, the actions, a small backbone that is NOT
equivariant (so an exactness check can fail), a batch and a training target.

``tests/test_contract.py`` runs every registered strategy over every kind; ``hints`` are the sizes that the
data's layout cannot tell a strategy (node features of a graph), passed only to strategies whose config has
that field. A strategy that refuses a kind must do so with a ``SymwrapError`` at ``wrap()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

PARTICLES = {"pos": "points", "vel": "vectors", "charge": "scalars"}


class TinyCNN(nn.Module):
    """One-channel images to 3 logits; the 2x2 pooling grid keeps where things are, so it is not invariant."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))


class PointMLP(nn.Module):
    """(B, 6, 3) points to one 3-vector, reading the coordinates in order: neither rotation- nor
    permutation-equivariant."""

    def __init__(self, points: int = 6) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * points, 32), nn.Tanh(), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ParticleMLP(nn.Module):
    """A dict of positions, velocities and charges of 5 particles to 5 predicted positions."""

    def __init__(self, particles: int = 5) -> None:
        super().__init__()
        self.particles = particles
        self.net = nn.Sequential(nn.Linear(7 * particles, 32), nn.Tanh(), nn.Linear(32, 3 * particles))

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        flat = torch.cat([x["pos"].flatten(1), x["vel"].flatten(1), x["charge"].flatten(1)], dim=1)
        return x["pos"] + self.net(flat).reshape(-1, self.particles, 3)


class AdjacencyMLP(nn.Module):
    """(B, 5, 5) adjacency matrices to 2 outputs, reading the entries in order."""

    def __init__(self, nodes: int = 5) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(nodes * nodes, 16), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class OrderSensitiveGNN(nn.Module):
    """A torch_geometric-style model ``(x, edge_index, batch)`` whose readout weights each node by its position
    in its graph: message passing, but not invariant to relabelling the nodes."""

    def __init__(self, features: int = 2) -> None:
        super().__init__()
        self.message = nn.Linear(features, 8)
        self.update = nn.Linear(features + 8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        source, target = edge_index
        messages = torch.zeros(x.shape[0], 8, dtype=x.dtype, device=x.device)
        messages = messages.index_add(0, target, torch.tanh(self.message(x[source])))
        h = torch.tanh(self.update(torch.cat([x, messages], dim=1)))
        graphs = int(batch.max()) + 1 if batch.numel() else 0
        counts = torch.bincount(batch, minlength=graphs)
        position = torch.arange(x.shape[0], device=x.device) - (torch.cumsum(counts, 0) - counts)[batch]
        weighted = h * (1.0 + position.to(h.dtype)).unsqueeze(1)
        pooled = torch.zeros(graphs, 8, dtype=h.dtype, device=h.device).index_add(0, batch, weighted)
        return self.head(pooled)


class VNPointNet(nn.Module):
    """(B, 6, 3) points to one 3-vector with Vector-Neuron layers: exactly O(3)-equivariant."""

    def __init__(self) -> None:
        super().__init__()
        from symwrap.nn import VNLinear, VNLinearLeakyReLU

        self.first = VNLinearLeakyReLU(1, 4)
        self.out = VNLinear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.first(x.transpose(1, 2).unsqueeze(1))).mean(-1)[:, 0]


def _steerable_cnn() -> nn.Module:
    from symwrap.nn import SteerableCNN

    return SteerableCNN("C4", in_channels=1, num_classes=3, hidden=2, layers=2)


def _egnn_dynamics() -> nn.Module:
    from symwrap.nn import EGNNDynamics

    return EGNNDynamics(hidden=8, layers=2)


def _graphs(dtype: torch.dtype) -> Any:
    from torch_geometric.data import Batch, Data

    generator = torch.Generator().manual_seed(3)
    graphs = []
    for size in (3, 4, 5):
        edges = torch.tensor([[i, (i + 1) % size] for i in range(size)] + [[0, size - 1]]).T
        edge_index = torch.cat([edges, edges.flip(0)], dim=1)
        x = torch.randn(size, 2, generator=generator, dtype=torch.float64).to(dtype)
        graphs.append(Data(x=x, edge_index=edge_index, num_nodes=size))
    return Batch.from_data_list(graphs)


def _randn(*shape: int) -> Callable[[torch.dtype], torch.Tensor]:
    def make(dtype: torch.dtype) -> torch.Tensor:
        generator = torch.Generator().manual_seed(1)
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    return make


def _particles(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return {key: torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)
            for key, shape in (("pos", (3, 5, 3)), ("vel", (3, 5, 3)), ("charge", (3, 5)))}


def _adjacency(dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(4)
    upper = (torch.rand(3, 5, 5, generator=generator) < 0.5).triu(1)
    return (upper | upper.transpose(1, 2)).to(dtype)


def regression_target(pred: torch.Tensor) -> torch.Tensor:
    return torch.randn(pred.shape, generator=torch.Generator().manual_seed(5), dtype=pred.dtype)


def class_target(pred: torch.Tensor) -> torch.Tensor:
    return torch.randint(0, pred.shape[1], (pred.shape[0],), generator=torch.Generator().manual_seed(5))


@dataclasses.dataclass(frozen=True)
class InputKind:
    """One kind of input the contract suite wraps every strategy for."""

    name: str
    group: str
    input: Any
    output: str
    backbone: Callable[[], nn.Module]
    data: Callable[[torch.dtype], Any]
    target: Callable[[torch.Tensor], torch.Tensor]
    hints: dict[str, Any] = dataclasses.field(default_factory=dict)
    needs: str | None = None  # an optional package the kind needs
    #: an exactly equivariant backbone, for strategies that take one (``takes_equivariant_backbone``)
    equivariant_backbone: Callable[[], nn.Module] | None = None
    #: an optional package the equivariant backbone needs
    equivariant_needs: str | None = None


KINDS = [
    InputKind("image", "C4", "image", "invariant", TinyCNN, _randn(3, 1, 8, 8), class_target,
              equivariant_backbone=_steerable_cnn, equivariant_needs="escnn"),
    InputKind("points", "SO3", "points", "vector", PointMLP, _randn(3, 6, 3), regression_target,
              equivariant_backbone=VNPointNet),
    InputKind("dict", "E3", PARTICLES, "points", ParticleMLP, _particles, regression_target,
              equivariant_backbone=_egnn_dynamics),
    InputKind("adjacency", "S", "adjacency", "invariant", AdjacencyMLP, _adjacency, regression_target),
    InputKind("graph", "S", "graph", "invariant", OrderSensitiveGNN, _graphs, regression_target,
              hints={"in_features": 2}, needs="torch_geometric"),
]
