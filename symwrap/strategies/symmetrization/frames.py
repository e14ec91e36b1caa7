"""Frame averaging with PCA frames (Puny et al., "Frame Averaging for Invariant and
Equivariant Network Design", ICLR 2022) for point sets under O(d), SO(d), E(d), SE(d).

The frame of a point set is built from the eigenvectors of its covariance, one
element per choice of eigenvector signs (2^d for O(d), the 2^(d−1) with det +1 for
SO(d)), centred at the centroid when the group has translations. Because
F(h·x) = h·F(x), averaging g·φ(g⁻¹·x) over the frame is exactly equivariant.
When two eigenvalues (nearly) coincide the eigenvectors are not unique; those
samples are averaged over as many Haar-random elements instead, which keeps the
model equivariant in distribution and never produces NaN.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, ClassVar

import torch

from ...actions.tracing import is_tracing
from ...errors import ActionError, ConfigError, IncompatibleGroupError
from ...geometry import principal_axes
from ...groups import Group, haar_rotations
from ..base import StrategyConfig, SymmetricModel
from ..registry import register_strategy


@dataclasses.dataclass
class FramesConfig(StrategyConfig):
    """PCA frame averaging.

    Attributes:
        degenerate_tol: two eigenvalues whose gap is below this fraction of the
            largest one count as equal; such samples fall back to Haar averaging.
    """

    strategy: ClassVar[str] = "frames"
    degenerate_tol: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.degenerate_tol < 1:
            raise ConfigError(f"degenerate_tol must be in [0, 1); got {self.degenerate_tol}")


def pca_frames(
    points: torch.Tensor,
    *,
    special: bool,
    degenerate_tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA frames of point sets (B, N, d).

    Returns:
        rotations (B, F, d, d): one orthogonal matrix per frame element (columns are
            signed principal axes, largest variance first);
        centroids (B, d);
        degenerate (B,): samples whose spectrum was (nearly) degenerate and whose
            frame is Haar-random instead.
    """
    d = points.shape[-1]
    eigenvectors, centroid, degenerate = principal_axes(points, degenerate_tol)

    choices = list(itertools.product([1.0, -1.0], repeat=d))
    signs = torch.tensor(choices, dtype=torch.float64, device=points.device)
    frames = eigenvectors.unsqueeze(1) * signs[None, :, None, :]  # (B, 2^d, d, d)
    if special:  # keep the sign choices with det +1, in order: those of even parity where det(axes) > 0
        even = [i for i, choice in enumerate(choices) if math.prod(choice) > 0]
        odd = [i for i, choice in enumerate(choices) if math.prod(choice) < 0]
        positive = (torch.linalg.det(eigenvectors) > 0)[:, None, None, None]
        frames = torch.where(positive, frames[:, even], frames[:, odd])

    # a traced graph (torch.export) cannot branch on the data: there degenerate samples keep their coordinate-axes
    # frame, deterministic but not equivariant, where eager mode draws Haar-random ones (equivariant in distribution)
    if not is_tracing() and bool(degenerate.any()):
        count = int(degenerate.sum()) * frames.shape[1]
        random = haar_rotations(count, d, generator=generator, device=points.device, dtype=torch.float64)
        if not special:
            flip = torch.rand(count, generator=generator, device=points.device) < 0.5
            random = random * torch.where(flip, -1.0, 1.0).to(random)[:, None, None]
        frames = frames.clone()
        frames[degenerate] = random.reshape(-1, frames.shape[1], d, d)
    return frames.to(points.dtype), centroid.to(points.dtype), degenerate


@register_strategy("frames")
class Frames(SymmetricModel):
    """Averages the backbone over the input's PCA frame (|F| = 2^d or 2^(d−1) copies, one call).

    ``wrap(mlp, group="O3", strategy="frames", input="points", output="invariant")``
    """

    config_class = FramesConfig
    config: FramesConfig

    def __init__(self, backbone, group: Group, input_action, output_action, config) -> None:
        if not group.has_linear or group.is_finite or group.dim is None:
            raise IncompatibleGroupError(
                f"'frames' builds PCA frames for continuous orthogonal groups (O2, SO2, O3, SO3, E3, SE3); "
                f"got {group.name}. For finite groups use strategy='averaging', which is exact."
            )
        if group.has_permutation:  # a product: S alone has no linear part and was refused above
            geometric = "x".join(f.name for f in group.factors if not f.has_permutation)
            # a PCA frame does not depend on the order of the points, so it keeps a backbone's permutation
            # symmetry but cannot add one: promising exactness over the product would be false
            raise IncompatibleGroupError(
                f"'frames' averages over rotations and reflections only, so it cannot make the backbone "
                f"equivariant to the permutation part of {group.name}; got {group.name}. Use group="
                f"{geometric!r} with a permutation-equivariant backbone (PCA frames keep its "
                "permutation symmetry), or strategy='averaging' or 'canonicalization' for the product."
            )
        super().__init__(backbone, group, input_action, output_action, config)

    def forward(self, x: Any) -> Any:
        self._check_input(x)
        action = self.input_action
        points = action.positions(x)
        if points is None:
            raise ActionError(
                f"'frames' computes the frame from point positions, but input {action.spec()!r} has none; "
                "use input='points' or a dict with a 'points' field"
            )
        batch = action.batch_size(x)
        rotations, centroids, _ = pca_frames(
            points,
            special=self.group.special,
            degenerate_tol=self.config.degenerate_tol,
            generator=self.generator_for(points.device),
        )
        k = rotations.shape[1]
        linear = rotations.transpose(0, 1).reshape(k * batch, *rotations.shape[2:])  # copy-major
        translation = centroids.repeat(k, 1) if self.group.has_translation else None
        x_rep = action.repeat(x, k)
        group = action.bind(self.group, x_rep)
        g = group.from_parts(linear=linear, translation=translation)
        y = self.run_backbone(action.act(group, group.inverse(g), x_rep))
        return self.output_action.mean(self.output_action.act(group, g, y), k)

    def is_exact(self, x: Any) -> bool:
        """Exact unless a point set of ``x`` has a (nearly) degenerate spectrum, whose frame is Haar-random."""
        points = self.input_action.positions(x)
        if points is None:
            return False
        _, _, degenerate = principal_axes(points, self.config.degenerate_tol)
        return not bool(degenerate.any())
