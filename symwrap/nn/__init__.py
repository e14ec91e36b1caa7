"""Equivariant building blocks for canonicalizers and baselines, and a plain particle transformer.

E(n)-equivariant graph networks for particle systems (:class:`EGNN`, :class:`EGNNDynamics`), Vector Neurons
for point clouds (both plain torch) and :func:`gram_schmidt` frames; steerable image CNNs
(:class:`RegularCanonicalizerCNN`, :class:`VectorCanonicalizerCNN`) and the invariant classifier
:class:`SteerableCNN`, which need the optional ``escnn`` package and are imported on first use, so
``import symwrap.nn`` works without it.
"""

from __future__ import annotations

from typing import Any

from .defaults import (
    DefaultNetwork,
    NoDefaultNetworkError,
    default_network,
    find_default_network,
    list_default_networks,
    register_default_network,
)
from .egnn import EGNN, EGNNDynamics, EGNNLayer, EGNNReadout
from .encoders import ImageEncoder, PointEncoder
from .introspection import image_channels
from .neural_processes import ConvCNP1d, SetConvDecoder1d, SetConvEncoder1d, TaskDictNP, TransformerNP1d
from .permutation_interface import (
    GINInterface,
    hard_permutation,
    permutation_penalty,
    sinkhorn,
    soft_sort,
    straight_through_permutation,
)
from .scoring import CopyScores
from .transformer import ParticleTransformer
from .vector_neurons import (
    VNEdgeConv,
    VNFrameNet,
    VNLeakyReLU,
    VNLinear,
    VNLinearLeakyReLU,
    VNMeanPool,
    complete_frame,
    gram_schmidt,
    knn_edge_features,
    vn_mean_pool,
)

_ESCNN_NAMES = ("RegularCanonicalizerCNN", "VectorCanonicalizerCNN", "ExportedCanonicalizerCNN",
                "symmetric_downsample")
_STEERABLE_NAMES = ("SteerableCNN", "ExportedSteerableCNN", "GroupPool")


def __getattr__(name: str) -> Any:
    if name in _ESCNN_NAMES:
        from . import escnn_canonicalizers

        return getattr(escnn_canonicalizers, name)
    if name in _STEERABLE_NAMES:
        from . import steerable

        return getattr(steerable, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EGNN",
    "ParticleTransformer",
    "EGNNLayer",
    "EGNNDynamics",
    "EGNNReadout",
    "ImageEncoder",
    "PointEncoder",
    "CopyScores",
    "image_channels",
    "ConvCNP1d",
    "TaskDictNP",
    "TransformerNP1d",
    "SetConvEncoder1d",
    "SetConvDecoder1d",
    "DefaultNetwork",
    "NoDefaultNetworkError",
    "default_network",
    "find_default_network",
    "list_default_networks",
    "register_default_network",
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
    "GINInterface",
    "soft_sort",
    "sinkhorn",
    "hard_permutation",
    "straight_through_permutation",
    "permutation_penalty",
    *_ESCNN_NAMES,
    *_STEERABLE_NAMES,
]
