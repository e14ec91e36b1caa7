"""Vector Neurons (Deng et al. 2021, "Vector Neurons: A General Framework for SO(3)-Equivariant Networks").

Features are lists of 3-D vectors shaped ``(B, C, 3, N, ...)``: batch, channels, coordinates, points (and
any further dimensions, such as neighbours). Every layer here is linear in the coordinates or gated by
rotation-invariant scalars, so it commutes with every ``R`` in O(3): ``f(R x) = R f(x)``. Biases would
break that, so there are none. The cross-product features of the paper's DGCNN variant are left out: they
are pseudo-vectors, equivariant under SO(3) only. Nothing but the cross product is particular to 3-D: the
layers take vectors of 2 coordinates alike (O(2)), and :class:`VNFrameNet` has a planar variant (``dim=2``).

:class:`VNFrameNet` maps a point cloud to three equivariant vectors and :func:`gram_schmidt` turns them into
an orthonormal frame, the building blocks of an SO(3)/O(3) canonicalizer.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, ShapeError

__all__ = [
    "VNLinear",
    "VNLeakyReLU",
    "VNLinearLeakyReLU",
    "VNMeanPool",
    "VNEdgeConv",
    "VNFrameNet",
    "vn_mean_pool",
    "knn_edge_features",
    "complete_frame",
    "gram_schmidt",
]

#: added to squared norms of learned directions, as in the paper
_DIRECTION_EPS = 1e-6


def _vn_linear(in_channels: int, out_channels: int) -> nn.Linear:
    """A bias-free channel mixer whose output vectors have, on average, the norm of the input vectors
    (PyTorch's default ``nn.Linear`` init shrinks them by ``sqrt(3)`` per layer)."""
    layer = nn.Linear(in_channels, out_channels, bias=False)
    nn.init.normal_(layer.weight, std=in_channels**-0.5)
    return layer


def _channels_last(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Apply a bias-free linear map to the channel dimension (dim 1) of ``x``."""
    return layer(x.transpose(1, -1)).transpose(1, -1)


class VNLinear(nn.Module):
    """Vector-neuron linear layer: mixes channels, ``(B, C_in, 3, ...) -> (B, C_out, 3, ...)``.

    Every output vector is a learned linear combination of the input vectors, so the layer commutes with
    any linear map of the coordinates (O(3) in particular).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.map = _vn_linear(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _channels_last(self.map, x)


def _vn_leaky_relu(q: torch.Tensor, k: torch.Tensor, negative_slope: float) -> torch.Tensor:
    """The paper's nonlinearity: keep ``q`` where ``<q, k> >= 0``, otherwise remove its component along ``k``;
    then mix with ``q`` itself by ``negative_slope``."""
    dot = (q * k).sum(2, keepdim=True)
    k_norm_sq = (k * k).sum(2, keepdim=True)
    projected = q - (dot / (k_norm_sq + _DIRECTION_EPS)) * k
    rectified = torch.where(dot >= 0, q, projected)
    return negative_slope * q + (1 - negative_slope) * rectified


class VNLeakyReLU(nn.Module):
    """Vector-neuron leaky ReLU with a learned direction, ``(B, C, 3, ...) -> (B, C, 3, ...)``.

    A direction ``k = U x`` is learned per channel (or one for all channels with
    ``share_nonlinearity=True``); each vector ``x_c`` keeps its value if ``<x_c, k_c> >= 0`` and loses its
    component along ``k_c`` otherwise, blended with the identity by ``negative_slope``.
    """

    def __init__(self, channels: int, negative_slope: float = 0.2, share_nonlinearity: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.direction = _vn_linear(channels, 1 if share_nonlinearity else channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _vn_leaky_relu(x, _channels_last(self.direction, x), self.negative_slope)


class VNLinearLeakyReLU(nn.Module):
    """:class:`VNLinear` followed by the VN leaky ReLU, both directions learned from the same input
    (the paper's ``VNLinearLeakyReLU``): ``q = W x``, ``k = U x``."""

    def __init__(
        self, in_channels: int, out_channels: int, negative_slope: float = 0.2, share_nonlinearity: bool = False
    ) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.map = _vn_linear(in_channels, out_channels)
        self.direction = _vn_linear(in_channels, 1 if share_nonlinearity else out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = _channels_last(self.map, x)
        k = _channels_last(self.direction, x)
        return _vn_leaky_relu(q, k, self.negative_slope)


def vn_mean_pool(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """Mean over points (the last dimension by default): equivariant and permutation invariant."""
    return x.mean(dim=dim, keepdim=keepdim)


class VNMeanPool(nn.Module):
    """Mean over the points dimension, ``(B, C, 3, N) -> (B, C, 3)``."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return vn_mean_pool(x, self.dim)


def knn_edge_features(x: torch.Tensor, k: int) -> torch.Tensor:
    """DGCNN-style edge features ``[x_j - x_i, x_i]`` over the ``k`` nearest neighbours ``j`` of each point ``i``.

    ``x`` is ``(B, C, d, N)`` (d = 3, or 2 in the plane); neighbours are found by the Euclidean distance between
    the points' whole feature lists (rotation invariant, so the neighbourhoods turn with the input). The point
    itself is its own nearest neighbour; ``k`` is capped at ``N``. Returns ``(B, 2C, d, N, k)``.
    """
    b, c, d, n = x.shape
    k = min(k, n)
    flat = x.reshape(b, c * d, n).transpose(1, 2)  # (B, N, dC)
    with torch.no_grad():  # only the indices are needed; cdist has no finite gradient at coincident points
        index = torch.cdist(flat, flat).topk(k, dim=-1, largest=False).indices  # (B, N, k)
    neighbours = torch.gather(flat.unsqueeze(1).expand(b, n, n, c * d), 2,
                              index.unsqueeze(-1).expand(b, n, k, c * d))  # (B, N, k, dC)
    neighbours = neighbours.reshape(b, n, k, c, d).permute(0, 3, 4, 1, 2)  # (B, C, d, N, k)
    centre = x.unsqueeze(-1).expand(b, c, d, n, k)
    return torch.cat([neighbours - centre, centre], dim=1)


class VNEdgeConv(nn.Module):
    """Edge convolution on vector features: :func:`knn_edge_features`, a :class:`VNLinearLeakyReLU`, then the
    mean over the ``k`` neighbours, ``(B, C_in, 3, N) -> (B, C_out, 3, N)``. Costs ``O(N^2)`` for the distances."""

    def __init__(self, in_channels: int, out_channels: int, k: int = 16, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.k = k
        self.layer = VNLinearLeakyReLU(2 * in_channels, out_channels, negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(knn_edge_features(x, self.k)).mean(-1)


class VNFrameNet(nn.Module):
    """Three O(3)-equivariant vectors from a point cloud: ``(B, N, 3) -> (B, 3, 3)``, the vectors as columns.

    With ``dim=2`` it is the same network in the plane, two O(2)-equivariant vectors from ``(B, N, 2)``
    points: every layer is linear in the coordinates or gated by invariant scalars, in any dimension.

    ``f(x R^T + t) = R f(x)`` for every ``R`` in O(3) and translation ``t``; the output is also invariant to
    the order of the points and to a uniform scaling of the cloud. The points are centred and divided by their
    RMS radius; each point starts with two vectors, its position ``x_i`` and ``C x_i`` with ``C`` the
    (normalised) second-moment matrix of the cloud, so that a point's features are not all parallel even
    without neighbours. ``layers`` VN layers follow, each after the first seeing its input concatenated
    with the cloud's mean feature (PointNet-style global context); then a mean over points and a
    :class:`VNLinear` to three vectors. With ``k_neighbors`` the first layer is a :class:`VNEdgeConv`.

    Degenerate clouds (one point, coincident points) give zero vectors, collinear clouds give vectors
    along the line: finite, and exactly what equivariance allows. Any O(3)-equivariant map is odd,
    ``f(-x) = -f(x)``, so a cloud symmetric under ``x -> -x`` (about its centroid) gives zero vectors too;
    :func:`gram_schmidt` turns such outputs into a fixed valid frame. (In the plane ``x -> -x`` is the
    half turn, so centrally symmetric clouds, which no rotation frame can tell from their half turn, give zero.)
    """

    def __init__(
        self, hidden: int = 64, layers: int = 3, k_neighbors: int | None = None, negative_slope: float = 0.2,
        eps: float = 1e-6, dim: int = 3,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ConfigError(f"VNFrameNet needs layers >= 1; got {layers}")
        if dim not in (2, 3):
            raise ConfigError(f"VNFrameNet builds frames of points in 2 or 3 dimensions; got dim={dim}")
        self.dim = dim
        self.eps = eps
        self.k_neighbors = k_neighbors
        if k_neighbors is None:
            first: nn.Module = VNLinearLeakyReLU(2, hidden, negative_slope)
        else:
            first = VNEdgeConv(2, hidden, k_neighbors, negative_slope)
        self.layers = nn.ModuleList(
            [first] + [VNLinearLeakyReLU(2 * hidden, hidden, negative_slope) for _ in range(layers - 1)]
        )
        self.pool = VNMeanPool()
        self.head = VNLinear(hidden, dim)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.ndim != 3 or points.shape[-1] != self.dim:
            raise ShapeError(f"VNFrameNet takes points (B, N, {self.dim}); got shape {tuple(points.shape)}")
        x = points - points.mean(1, keepdim=True)
        mean_square = x.pow(2).sum(-1).mean(1)  # (B,), rotation invariant
        # clamped before the square root: finite value and gradient when every point coincides
        x = x / mean_square.clamp_min(self.eps**2).sqrt()[:, None, None]
        second_moment = x.transpose(1, 2) @ x / x.shape[1]  # (B, d, d), trace 1 unless degenerate
        features = torch.stack([x.transpose(1, 2), second_moment @ x.transpose(1, 2)], dim=1)  # (B, 2, d, N)
        h = self.layers[0](features)
        for layer in self.layers[1:]:
            context = self.pool(h).unsqueeze(-1).expand_as(h)
            h = layer(torch.cat([h, context], dim=1))
        vectors = self.head(self.pool(h))  # (B, d vectors, d coordinates)
        return vectors.transpose(1, 2)


def _unit(v: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``v / |v|`` and ``|v|^2``; the norm is clamped at ``eps`` so that value and gradient stay finite."""
    sq = (v * v).sum(-1, keepdim=True)
    return v / sq.clamp_min(eps**2).sqrt(), sq


def complete_frame(first: torch.Tensor) -> torch.Tensor:
    """A deterministic orthonormal frame ``(..., 3, 3)`` (columns, det +1) whose first column is the unit
    vector ``first`` ``(..., 3)``.

    The second column is the coordinate axis least aligned with ``first``, made orthogonal to it; the third
    is the cross product. This is a fallback: it is not equivariant (no choice from one vector can be).
    """
    axis = torch.nn.functional.one_hot(first.abs().argmin(-1), 3).to(first)
    # |axis - <axis, e1> e1| >= sqrt(2/3): the least aligned axis is never close to parallel
    second, _ = _unit(axis - (axis * first).sum(-1, keepdim=True) * first, 1e-12)
    return torch.stack([first, second, torch.linalg.cross(first, second, dim=-1)], dim=-1)


def gram_schmidt(vectors: torch.Tensor, *, special: bool, eps: float = 1e-6) -> torch.Tensor:
    """An orthonormal frame from three vectors given as columns, ``(..., 3, 3) -> (..., 3, 3)``.

    The first column is normalised, the second is made orthogonal to it and normalised, and the third is
    their cross product. With ``special=True`` the frame is a rotation (det +1) and the map is
    SO(3)-equivariant: ``gram_schmidt(R V) = R gram_schmidt(V)``. With ``special=False`` the third column is
    flipped to point to the same side as the third input vector, so the map is O(3)-equivariant and a
    reflected input gives det -1 (an input whose third vector is orthogonal to the first two keeps det +1).

    Equivariance holds on non-degenerate inputs. Degenerate rows still give a finite, valid orthogonal
    matrix (and finite gradients): if the first vector vanishes (norm <= ``eps``) the frame is the
    identity; if the second is parallel to the first (its orthogonal part has norm
    <= ``eps * max(1, |second|)``) the frame is :func:`complete_frame` of the first vector.
    """
    if vectors.shape[-2:] != (3, 3):
        raise ShapeError(f"gram_schmidt takes (..., 3, 3) matrices of column vectors; got {tuple(vectors.shape)}")
    a, b, c = vectors.unbind(-1)
    e1, a_sq = _unit(a, eps)
    b_perp = b - (b * e1).sum(-1, keepdim=True) * e1
    e2, b_perp_sq = _unit(b_perp, eps)
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    frame = torch.stack([e1, e2, e3], dim=-1)

    b_sq = (b * b).sum(-1, keepdim=True)
    parallel = b_perp_sq <= eps**2 * b_sq.clamp_min(1.0)  # relative: rounding leaves ~1e-7 |b| in float32
    frame = torch.where(parallel.unsqueeze(-1), complete_frame(e1), frame)
    if not special:
        sign = torch.where((c * frame[..., 2]).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(frame)
        frame = torch.cat([frame[..., :2], frame[..., 2:] * sign.unsqueeze(-1)], dim=-1)
    vanishing = (a_sq <= eps**2).unsqueeze(-1)
    identity = torch.eye(3, dtype=frame.dtype, device=frame.device).expand_as(frame)
    return torch.where(vanishing, identity, frame)
