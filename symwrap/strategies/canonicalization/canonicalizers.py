"""Canonicalizers: what picks the canonical group element of an input.

Finite groups use *element scorers*: ``scores[b, g]`` rates element ``g`` as the one
that brought ``x_b`` out of its canonical pose, with the equivariance property
``scores(h·x)[g] = scores(x)[h⁻¹g]``, so that the arg-max is an equivariant choice.
Continuous groups use *frame makers*: an orthogonal matrix per input that turns
with it, ``F(h·x) = h·F(x)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ShapeError
from ...geometry import principal_axes

#: frame vectors shorter than this (the Vector-Neuron network scales points to unit RMS radius) leave the
#: frame undetermined up to round-off: Gram–Schmidt divides by them
DEGENERATE_NORM = 1e-4
#: a third moment along a principal axis below this fraction of Σ|projection|³ leaves the axis's sign to
#: round-off (a set symmetric about the plane normal to the axis, such as the corners of a box)
DEGENERATE_MOMENT = 1e-4


class ContrastiveScorer(nn.Module):
    """Scores each transformed copy with ANY network (arXiv 2405.14089).

    The network embeds copy ``g⁻¹·x``; its score is the cosine similarity with a
    learned reference vector (times ``scale``). The equivariance of the arg-max holds
    by construction, since copy ``g`` of ``h·x`` is copy ``h⁻¹g`` of ``x``.
    """

    uses_copies = True

    def __init__(self, network: nn.Module, embedding_dim: int, scale: float = 10.0) -> None:
        super().__init__()
        self.network = network
        self.reference = nn.Parameter(torch.randn(1, embedding_dim))
        self.scale = scale

    def forward(self, x, copies, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (B, k) and embeddings (B, k, D) of the k copies (copy-major, k·B)."""
        embeddings = self.network(copies)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.reference.shape[1]:
            raise ShapeError(
                f"the contrastive network {type(self.network).__name__} must return (N, {self.reference.shape[1]}) "
                f"embeddings (embedding_dim={self.reference.shape[1]}); got {tuple(embeddings.shape)}"
            )
        cosine = F.cosine_similarity(embeddings, self.reference.to(embeddings.dtype), dim=1)
        batch = embeddings.shape[0] // k
        return self.scale * cosine.reshape(k, batch).T, embeddings.reshape(k, batch, -1).transpose(0, 1)


class EquivariantScorer(nn.Module):
    """Scores from a network whose output transforms in the regular representation
    (an escnn steerable CNN): one call on the input itself."""

    uses_copies = False

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x, copies, k: int) -> tuple[torch.Tensor, None]:
        return self.network(x), None


def orthonormal_frame(vectors: torch.Tensor, *, special: bool) -> torch.Tensor:
    """Orthogonal (B, d, d) matrices from d column vectors (d = 2 or 3), by Gram–Schmidt.

    With ``special`` the result is a rotation; otherwise the handedness follows the
    vectors, so reflected inputs give determinant −1. Degenerate vectors give a finite,
    valid matrix.
    """
    d = vectors.shape[-1]
    if d == 3:
        from ...nn import gram_schmidt

        return gram_schmidt(vectors, special=special)
    first, second = vectors[..., 0], vectors[..., 1]
    norm = first.norm(dim=-1, keepdim=True)
    fallback = torch.zeros_like(first)
    fallback[..., 0] = 1.0
    u = torch.where(norm > 1e-12, first / norm.clamp_min(1e-12), fallback)
    w = torch.stack([-u[..., 1], u[..., 0]], dim=-1)
    if not special:
        sign = torch.where((second * w).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(w)
        w = w * sign
    return torch.stack([u, w], dim=-1)


class PCAFrame(nn.Module):
    """Principal axes of a point set, with signs fixed by the third moment along each axis.

    Not learned. ``F(R·x + t) = R·F(x)`` whenever the eigenvalues are distinct and the
    third moments non-zero; otherwise the frame is still a finite, valid matrix.
    """

    def __init__(self, special: bool) -> None:
        super().__init__()
        self.special = special

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        axes, centroid, _ = principal_axes(points)
        centred = points.to(torch.float64) - centroid.unsqueeze(1)
        moments = ((centred @ axes) ** 3).sum(dim=1)  # (B, d)
        axes = axes * torch.where(moments < 0, -1.0, 1.0).to(axes).unsqueeze(1)
        if self.special:
            flip = torch.linalg.det(axes) < 0
            axes[..., -1] = torch.where(flip[:, None], -axes[..., -1], axes[..., -1])
        return axes.to(points.dtype)

    @torch.no_grad()
    def degenerate(self, points: torch.Tensor) -> torch.Tensor:
        """(B,) ``True`` where the frame is not determined, and so not equivariant: two principal variances
        alike (their axes are not unique), or a vanishing third moment along an axis whose sign it fixes (all
        axes, or all but the last one, which a rotation frame orients by the handedness)."""
        axes, centroid, degenerate = principal_axes(points)
        projected = (points.to(torch.float64) - centroid.unsqueeze(1)) @ axes
        moments = (projected**3).sum(dim=1).abs()
        scale = (projected.abs() ** 3).sum(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
        weak = moments <= DEGENERATE_MOMENT * scale
        if self.special:
            weak = weak[:, :-1]
        return degenerate | weak.any(dim=1)


class VectorNeuronFrame(nn.Module):
    """An O(d)-equivariant Vector-Neuron network giving d vectors (d = 3, or 2 in the plane), made orthogonal.

    ``F(R·x + t) = R·F(x)`` exactly for every rotation (and, unless ``special``, reflection) ``R``, on point
    sets whose vectors determine a frame (see :meth:`degenerate`). Like :class:`PCAFrame`, the frame is
    computed in float64 and returned in the points' dtype: the network's pooled vectors are short sums of
    long terms, and in float32 their rounding alone would move the frame by about 1e-5.
    """

    def __init__(self, special: bool, hidden: int = 64, dim: int = 3) -> None:
        super().__init__()
        from ...nn import VNFrameNet

        self.network = VNFrameNet(hidden=hidden, dim=dim)
        self.special = special

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return orthonormal_frame(self._vectors(points), special=self.special).to(points.dtype)

    def _vectors(self, points: torch.Tensor) -> torch.Tensor:
        """The network's d vectors, in float64 where the device has it (differentiable in the parameters)."""
        if points.dtype == torch.float64 or points.device.type == "mps":
            return self.network(points)
        state = {name: value.double() if value.is_floating_point() else value
                 for name, value in [*self.network.named_parameters(), *self.network.named_buffers()]}
        return torch.func.functional_call(self.network, state, (points.double(),))

    @torch.no_grad()
    def degenerate(self, points: torch.Tensor) -> torch.Tensor:
        """(B,) ``True`` where the network's vectors do not determine the frame, which is then a fixed fallback
        and not equivariant: a vanishing first vector, a second one parallel to it, or (with reflections) a
        last vector that does not tell the handedness. Symmetric point sets give these (a centrally symmetric
        cloud has no equivariant frame)."""
        vectors = self._vectors(points)
        frame = orthonormal_frame(vectors, special=self.special)
        dim = vectors.shape[-1]
        weak = [vectors[..., 0].norm(dim=-1)]
        if dim == 3 or not self.special:  # the second vector orients a 3-D frame, or the handedness of a 2-D one
            weak.append((frame[..., 1] * vectors[..., 1]).sum(-1).abs())
        if dim == 3 and not self.special:
            weak.append((frame[..., 2] * vectors[..., 2]).sum(-1).abs())
        return torch.stack(weak, dim=-1).amin(dim=-1) < DEGENERATE_NORM


class VectorImageFrame(nn.Module):
    """An escnn network giving a 2-D vector that turns with the image: the SO(2) frame."""

    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        from ...nn import VectorCanonicalizerCNN

        self.network = VectorCanonicalizerCNN(in_channels, hidden=hidden)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vector = self.network(images)
        return orthonormal_frame(torch.stack([vector, torch.zeros_like(vector)], dim=-1), special=True)


class RegressedFrame(nn.Module):
    """ANY network regressing d frame vectors, made orthogonal: the continuous variant of the
    contrastive canonicalizer, trained to map augmented copies to transformed frames."""

    def __init__(self, network: nn.Module, dim: int, special: bool) -> None:
        super().__init__()
        self.network = network
        self.dim = dim
        self.special = special

    def forward(self, x) -> torch.Tensor:
        out = self.network(x)
        if not isinstance(out, torch.Tensor) or out.ndim < 2 or out[0].numel() != self.dim * self.dim:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ShapeError(
                f"the frame network {type(self.network).__name__} must return (N, {self.dim * self.dim}) frame "
                f"vectors ({self.dim} vectors of {self.dim} coordinates per input); got {shape}"
            )
        return orthonormal_frame(out.reshape(out.shape[0], self.dim, self.dim), special=self.special)
