"""The default equivariant frames of canonicalization, registered as ``"frame"`` networks of
:func:`symwrap.nn.register_default_network`; each entry asks what the group and the data are made of."""

from __future__ import annotations

from typing import Any

from torch import nn

from ...errors import ConfigError
from ...nn import register_default_network
from ...nn.defaults import image_grid, needs_in_channels, planar_linear
from .canonicalizers import VectorImageFrame, VectorNeuronFrame


def _continuous_rotations(group: Any) -> bool:
    return bool(group.has_linear and not group.is_finite and not group.needs_size)


@register_default_network("frame", "vector-neurons",
                          applies=lambda group, input, output: input.has_positions and _continuous_rotations(group),
                          needs="point positions (B, N, d) under rotations of R^2 or R^3 (with reflections, "
                                "translations)")
def _vector_neuron_frame(group: Any, input: Any, output: Any, *, hidden: int = 16, **options: Any) -> nn.Module:
    if group.dim not in (2, 3):
        raise ConfigError(
            f"the Vector-Neuron canonicalizer works in 2-D and 3-D; {group.name} acts on R^{group.dim}. "
            "Use canonicalizer='contrastive' or 'pca'"
        )
    return VectorNeuronFrame(group.special, dim=group.dim)


@register_default_network("frame", "escnn-vector-image",
                          applies=lambda group, input, output: (image_grid(input) and planar_linear(group)
                                                                and _continuous_rotations(group) and group.special),
                          needs="images under SO2 (escnn)", requires="escnn")
def _vector_image_frame(group: Any, input: Any, output: Any, *, hidden: int = 16, **options: Any) -> nn.Module:
    return VectorImageFrame(needs_in_channels(options, "equivariant image canonicalizer"), hidden)
