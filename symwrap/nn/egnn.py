"""E(n)-equivariant graph neural networks (Satorras, Hoogeboom, Welling 2021, "E(n) Equivariant Graph Neural
Networks").

Each particle carries invariant features ``h_i`` and a position ``x_i``. A layer computes messages from
invariants only, ``m_ij = φ_e(h_i, h_j, |x_i - x_j|^2, a_ij)``, moves every particle along the differences
``x_i - x_j`` weighted by the scalars ``φ_x(m_ij)``, and updates ``h_i`` from the summed messages. Differences
rotate with the input and scalars do not change, so the positions are E(n)-equivariant (rotations,
reflections, translations) and the features invariant; sums over particles make both permutation
equivariant. In the velocity variant of the paper's N-body experiment, each layer also moves a particle along
its initial velocity, scaled by ``φ_v(h_i)``.

Systems are dense and fully connected: tensors ``(B, N, ...)`` for batch and particles, every ordered pair
``i != j`` is an edge, and all pairs are processed at once (``O(B N^2 hidden)`` memory). An optional
``mask (B, N)`` marks the real particles of padded systems.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, ShapeError

__all__ = ["EGNNLayer", "EGNN", "EGNNDynamics"]

#: squared distances are clamped at this before a square root (normalized differences), so the
#: gradient stays finite on the diagonal and at coincident particles
_RADIAL_EPS = 1e-12


def _require_shape(
    where: str, name: str, x: object, labels: Sequence[str], sizes: Sequence[int | None]
) -> torch.Tensor:
    """Raise a :class:`ShapeError` unless ``x`` is a tensor with ``len(labels)`` dims whose sizes match
    ``sizes`` (None matches anything)."""
    layout = "(" + ", ".join(labels) + ")"
    if any(s is not None for s in sizes):
        layout += " = (" + ", ".join("?" if s is None else str(s) for s in sizes) + ")"
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{where} takes {name} as a torch.Tensor {layout}; got {type(x).__name__}")
    if x.ndim != len(sizes) or any(s is not None and s != actual for s, actual in zip(sizes, x.shape)):
        raise ShapeError(f"{where} takes {name} of shape {layout}; got shape {tuple(x.shape)}")
    return x


def _edge_mask(batch: int, n: int, mask: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """``(B, N, N, 1)`` booleans: True for every pair ``i != j`` of real particles."""
    edges = ~torch.eye(n, dtype=torch.bool, device=device).expand(batch, n, n)
    if mask is not None:
        edges = edges & mask[:, :, None] & mask[:, None, :]
    return edges.unsqueeze(-1)


def _near_zero_(linear: nn.Linear) -> None:
    """The last layer of φ_x starts close to zero, as in the reference code."""
    nn.init.xavier_uniform_(linear.weight, gain=0.001)


class EGNNLayer(nn.Module):
    """One equivariant graph convolution (E_GCL) on dense, fully connected systems.

    With ``x_ij = x_i - x_j`` and ``C`` one over the number of neighbours (``N - 1`` without padding)::

        m_ij = φ_e(h_i, h_j, |x_ij|^2, a_ij)
        Δ_i  = C Σ_j x_ij φ_x(m_ij)
        x_i <- x_i + Δ_i                            (no velocity)
        x_i <- x_i + φ_v(h_i) v_i + Δ_i             (velocity variant; v_i the initial velocity)
        h_i <- h_i + φ_h(h_i, Σ_j m_ij)

    φ_e, φ_x, φ_v and φ_h are two-layer MLPs with SiLU activations. φ_x ends in a bias-free linear map
    initialised close to zero, as in the reference code, so a fresh network barely moves the particles.

    Args:
        hidden: Width of the node features ``h`` and of the messages.
        edge_features: Number of edge attributes ``a_ij`` (0 for none).
        velocity: Build φ_v, for the velocity variant. Layers built with it still accept ``vel=None``.
        attention: Weight each message by ``sigmoid(φ_inf(m_ij))`` (the paper's edge inference).
        tanh: Bound φ_x to ``(-coords_range, coords_range)`` with a tanh, for stability.
        coords_range: Bound of φ_x when ``tanh`` is set.
        normalize: Use ``x_ij / (|x_ij| + 1)`` instead of ``x_ij`` in the coordinate update (the reference
            code's ``norm_diff``); the messages still see the plain squared distance.
        residual: Add φ_h's output to ``h`` (True, as in the N-body experiment) or replace ``h`` with it.
    """

    def __init__(
        self,
        hidden: int,
        edge_features: int = 0,
        *,
        velocity: bool = False,
        attention: bool = False,
        tanh: bool = False,
        coords_range: float = 3.0,
        normalize: bool = False,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if hidden < 1 or edge_features < 0:
            raise ConfigError(f"EGNNLayer needs hidden >= 1 and edge_features >= 0; got hidden={hidden}, "
                              f"edge_features={edge_features}")
        self.hidden = hidden
        self.edge_features = edge_features
        self.tanh = tanh
        self.coords_range = coords_range
        self.normalize = normalize
        self.residual = residual
        act = nn.SiLU
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * hidden + 1 + edge_features, hidden), act(), nn.Linear(hidden, hidden), act()
        )
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), act(), nn.Linear(hidden, hidden))
        coord_out = nn.Linear(hidden, 1, bias=False)
        _near_zero_(coord_out)  # drawn before φ_x's first layer, as always: seeded models keep their weights
        self.coord_mlp = nn.Sequential(nn.Linear(hidden, hidden), act(), coord_out)
        self.vel_mlp = (
            nn.Sequential(nn.Linear(hidden, hidden), act(), nn.Linear(hidden, 1)) if velocity else None
        )
        self.attention_mlp = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid()) if attention else None

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw new random weights as at construction: PyTorch's default for every linear map, then φ_x's
        last layer near zero again (random teachers of symmetry cloning are redrawn this way)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
        _near_zero_(self.coord_mlp[-1])

    def forward(
        self,
        h: torch.Tensor,
        pos: torch.Tensor,
        vel: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update node features and positions.

        Args:
            h: Node features ``(B, N, hidden)``.
            pos: Positions ``(B, N, D)``.
            vel: Initial velocities ``(B, N, D)`` for the velocity variant, or None.
            edge_attr: Edge attributes ``(B, N, N, edge_features)``; None when ``edge_features == 0``.
            mask: ``(B, N)`` booleans, True for real particles; padded ones neither send nor receive
                messages and keep their positions. None when every particle is real.

        Returns:
            The new features ``(B, N, hidden)`` and positions ``(B, N, D)``.
        """
        where = "EGNNLayer"
        pos = _require_shape(where, "pos", pos, ("B", "N", "D"), (None, None, None))
        b, n, d = pos.shape
        h = _require_shape(where, "h", h, ("B", "N", "hidden"), (b, n, self.hidden))
        if vel is not None:
            if self.vel_mlp is None:
                raise ShapeError(f"{where} was built with velocity=False and takes no vel; got a tensor of "
                                 f"shape {tuple(vel.shape)}. Build it with velocity=True or pass vel=None.")
            _require_shape(where, "vel", vel, ("B", "N", "D"), (b, n, d))
        if self.edge_features:
            if edge_attr is None:
                raise ShapeError(f"{where} was built with edge_features={self.edge_features} and needs edge_attr "
                                 f"(B, N, N, E) = ({b}, {n}, {n}, {self.edge_features}); got None")
            _require_shape(where, "edge_attr", edge_attr, ("B", "N", "N", "E"), (b, n, n, self.edge_features))
        elif edge_attr is not None:
            raise ShapeError(f"{where} was built with edge_features=0 and takes no edge_attr; got a tensor of "
                             f"shape {tuple(edge_attr.shape)}. Build it with edge_features=E to use them.")
        if mask is not None:
            _require_shape(where, "mask", mask, ("B", "N"), (b, n))
            mask = mask.bool()

        edges = _edge_mask(b, n, mask, pos.device)  # (B, N, N, 1)
        diff = pos[:, :, None, :] - pos[:, None, :, :]  # (B, N, N, D): x_i - x_j
        radial = diff.pow(2).sum(-1, keepdim=True)
        parts = [h[:, :, None, :].expand(b, n, n, self.hidden), h[:, None, :, :].expand(b, n, n, self.hidden), radial]
        if edge_attr is not None:
            parts.append(edge_attr.to(h.dtype))
        messages = self.edge_mlp(torch.cat(parts, dim=-1))
        if self.attention_mlp is not None:
            messages = messages * self.attention_mlp(messages)
        messages = torch.where(edges, messages, torch.zeros((), dtype=messages.dtype, device=messages.device))

        if self.normalize:
            diff = diff / (radial.clamp_min(_RADIAL_EPS).sqrt() + 1)
        weights = self.coord_mlp(messages)
        if self.tanh:
            weights = torch.tanh(weights) * self.coords_range
        weights = weights * edges
        neighbours = edges.sum(2).clamp_min(1).to(pos.dtype)  # (B, N, 1)
        step = (diff * weights).sum(2) / neighbours
        if vel is not None:
            step = step + self.vel_mlp(h) * vel
        if mask is not None:
            step = step * mask.unsqueeze(-1)
        pos = pos + step

        update = self.node_mlp(torch.cat([h, messages.sum(2)], dim=-1))
        h = h + update if self.residual else update
        return h, pos


class EGNN(nn.Module):
    """An E(n)-equivariant GNN mapping particle systems to predicted positions: ``(B, N, D) -> (B, N, D)``.

    Node features are embedded linearly to ``hidden`` channels, then ``layers`` :class:`EGNNLayer` update
    features and positions. ``f(g·x) = g·f(x)`` for every rotation, reflection and translation ``g`` of the
    positions (velocities are rotated, never translated; node features and edge attributes must be
    invariant), and for every permutation of the particles.

    Example::

        model = EGNN(in_node_features=1, hidden=64, layers=4, edge_features=1)
        predicted = model(pos, vel, speed, edge_attr=charge_products)  # (B, N, 3)

    Args:
        in_node_features: Number of invariant input features per particle ``F`` (0 for none).
        hidden: Width of the node features and messages.
        layers: Number of :class:`EGNNLayer`.
        edge_features: Number of invariant edge attributes ``E`` (0 for none).
        velocity: Build the velocity variant of the layers (the paper's N-body model); ``vel`` is then
            optional in :meth:`forward`.
        attention: Weight messages by learned gates (see :class:`EGNNLayer`).
        tanh: Bound the coordinate weights φ_x with a tanh.
        coords_range: Bound of φ_x when ``tanh`` is set.
        normalize: Normalize the coordinate differences in the position update.
        residual: Residual feature updates.
    """

    def __init__(
        self,
        in_node_features: int,
        hidden: int = 64,
        layers: int = 4,
        edge_features: int = 0,
        *,
        velocity: bool = True,
        attention: bool = False,
        tanh: bool = False,
        coords_range: float = 3.0,
        normalize: bool = False,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if in_node_features < 0 or hidden < 1 or layers < 1 or edge_features < 0:
            raise ConfigError(
                "EGNN needs in_node_features >= 0, hidden >= 1, layers >= 1 and edge_features >= 0; got "
                f"in_node_features={in_node_features}, hidden={hidden}, layers={layers}, "
                f"edge_features={edge_features}"
            )
        self.in_node_features = in_node_features
        self.hidden = hidden
        self.edge_features = edge_features
        self.velocity = velocity
        self.embedding = nn.Linear(in_node_features, hidden)
        self.layers = nn.ModuleList(
            EGNNLayer(hidden, edge_features, velocity=velocity, attention=attention, tanh=tanh,
                      coords_range=coords_range, normalize=normalize, residual=residual)
            for _ in range(layers)
        )

    def forward(
        self,
        pos: torch.Tensor,
        vel: torch.Tensor | None = None,
        node_features: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted positions ``(B, N, D)``.

        Args:
            pos: Positions ``(B, N, D)``.
            vel: Velocities ``(B, N, D)``, or None. Needs ``velocity=True``.
            node_features: Invariant features ``(B, N, F)``; may be None when ``in_node_features == 0``.
            edge_attr: Invariant edge attributes ``(B, N, N, E)``; None when ``edge_features == 0``.
            mask: ``(B, N)`` booleans, True for real particles, or None. Padded particles keep their positions
                and do not affect the others; their entries must still be finite.
        """
        return self.forward_with_features(pos, vel, node_features, edge_attr, mask)[0]

    def forward_with_features(
        self,
        pos: torch.Tensor,
        vel: torch.Tensor | None = None,
        node_features: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted positions ``(B, N, D)`` and the last layer's invariant node features ``(B, N, hidden)``
        (for distillation or readouts); the arguments are those of :meth:`forward`."""
        where = "EGNN"
        pos = _require_shape(where, "pos", pos, ("B", "N", "D"), (None, None, None))
        b, n, _ = pos.shape
        if node_features is None:
            if self.in_node_features:
                raise ShapeError(f"{where} was built with in_node_features={self.in_node_features} and needs "
                                 f"node_features (B, N, F) = ({b}, {n}, {self.in_node_features}); got None")
            node_features = pos.new_zeros(b, n, 0)
        _require_shape(where, "node_features", node_features, ("B", "N", "F"), (b, n, self.in_node_features))
        if vel is not None and not self.velocity:
            raise ShapeError(f"{where} was built with velocity=False and takes no vel; got a tensor of shape "
                             f"{tuple(vel.shape) if isinstance(vel, torch.Tensor) else type(vel).__name__}. "
                             "Build it with velocity=True or pass vel=None.")
        h = self.embedding(node_features.to(pos.dtype))
        for layer in self.layers:
            h, pos = layer(h, pos, vel, edge_attr, mask)
        return pos, h


class EGNNDynamics(nn.Module):
    """The paper's N-body model on a dict of charged particles: ``{"pos", "vel", "charge"} -> (B, N, D)``.

    An :class:`EGNN` in the velocity variant whose node feature is the speed ``|v_i|`` and whose edge
    attribute is the charge product ``q_i q_j``, both invariant. Predicts the positions after the simulated
    time step; E(n)- and permutation-equivariant with
    ``input={"pos": "points", "vel": "vectors", "charge": "scalars"}`` and ``output="points"``.

    Args:
        hidden: Width of the node features and messages.
        layers: Number of :class:`EGNNLayer`.
        attention: Weight messages by learned gates (see :class:`EGNNLayer`).
        tanh: Bound the coordinate weights φ_x with a tanh.
        coords_range: Bound of φ_x when ``tanh`` is set.
        normalize: Normalize the coordinate differences in the position update.
        residual: Residual feature updates.
    """

    keys = ("pos", "vel", "charge")

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 4,
        *,
        attention: bool = False,
        tanh: bool = False,
        coords_range: float = 3.0,
        normalize: bool = False,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.egnn = EGNN(1, hidden, layers, edge_features=1, velocity=True, attention=attention, tanh=tanh,
                         coords_range=coords_range, normalize=normalize, residual=residual)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Predicted positions ``(B, N, D)``.

        Args:
            inputs: ``pos`` ``(B, N, D)``, ``vel`` ``(B, N, D)`` and ``charge`` ``(B, N)`` or ``(B, N, 1)``;
                optionally ``mask`` ``(B, N)`` for padded systems. Other keys are ignored.
        """
        where = "EGNNDynamics"
        if not isinstance(inputs, Mapping):
            raise ShapeError(f"{where} takes a dict with keys {list(self.keys)}; got {type(inputs).__name__}")
        missing = [key for key in self.keys if key not in inputs]
        if missing:
            raise ShapeError(f"{where} takes a dict with keys {list(self.keys)}; missing {missing} "
                             f"(got keys {sorted(inputs)})")
        pos = _require_shape(where, "pos", inputs["pos"], ("B", "N", "D"), (None, None, None))
        b, n, d = pos.shape
        vel = _require_shape(where, "vel", inputs["vel"], ("B", "N", "D"), (b, n, d))
        charge = inputs["charge"]
        if isinstance(charge, torch.Tensor) and charge.ndim == 2:
            charge = charge.unsqueeze(-1)
        charge = _require_shape(where, "charge", charge, ("B", "N", "1"), (b, n, 1)).to(pos.dtype)
        speed = vel.pow(2).sum(-1, keepdim=True).clamp_min(_RADIAL_EPS).sqrt()
        charge_products = charge[:, :, None, :] * charge[:, None, :, :]  # (B, N, N, 1)
        return self.egnn(pos, vel, speed, charge_products, inputs.get("mask"))


class EGNNReadout(nn.Module):
    """An invariant EGNN for point clouds: ``(B, N, d) -> (B, out_features)``, a linear map of the mean
    over points of the last layer's invariant features. E(n)- and permutation-invariant."""

    def __init__(self, out_features: int = 1, hidden: int = 32, layers: int = 3, **egnn_kwargs: Any) -> None:
        super().__init__()
        self.egnn = EGNN(0, hidden, layers, velocity=False, **egnn_kwargs)
        self.head = nn.Linear(hidden, out_features)

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        _, features = self.egnn.forward_with_features(pos)
        return self.head(features.mean(dim=1))
