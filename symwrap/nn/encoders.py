"""Small non-equivariant encoders: (N, ...) inputs to (N, out_features) vectors.

The default networks of the contrastive canonicalizer and of the copy-scoring interfaces (see
:mod:`symwrap.nn.defaults`): they run on every transformed copy of an input, so they are small. Any network
with the same input and output shapes can replace them (``canonicalizer_network=``, ``interface_network=``).
"""

from __future__ import annotations

import torch
from torch import nn

from .escnn_canonicalizers import check_image_channels


class ImageEncoder(nn.Module):
    """Two stride-2 convolutions, average pooling to a ``grid`` x ``grid`` layout and a linear head:
    (B, in_channels, H, W) -> (B, out_features).

    The coarse grid keeps where things are in the image, which is what tells one pose from
    another; a global average would leave only the orientation of local edges. Striding from
    the first layer keeps the cost low: the network runs on all |G| copies of each input.
    Every layer is built here, so the parameters exist (and can be saved) before the first call.
    """

    def __init__(self, in_channels: int, out_features: int, hidden: int = 16, grid: int = 4) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 2 * hidden, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(grid),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * hidden * grid * grid, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_channels(x, self.in_channels, type(self).__name__)
        return self.head(self.features(x))


class PointEncoder(nn.Module):
    """A PointNet-style encoder: a shared MLP per point, max over points, a linear head.

    (B, N, d) -> (B, out); permutation-invariant, not rotation-equivariant.
    """

    def __init__(self, dim: int, out_features: int, hidden: int = 64) -> None:
        super().__init__()
        self.per_point = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, out_features)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        centred = points - points.mean(dim=1, keepdim=True)
        return self.head(self.per_point(centred).amax(dim=1))
