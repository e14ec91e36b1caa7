"""Learned canonicalization: equivariant, contrastive and PCA canonicalizers with the identity prior."""

from .canonicalizers import (
    ContrastiveScorer,
    EquivariantScorer,
    PCAFrame,
    RegressedFrame,
    VectorImageFrame,
    VectorNeuronFrame,
    orthonormal_frame,
)
from .config import DEFAULT_HIDDEN, DEFAULT_IMAGE_INPUT_SIZE, CanonicalizationConfig
from .model import Canonicalization
from .networks import ImageEncoder, PointEncoder

__all__ = [
    "DEFAULT_HIDDEN",
    "DEFAULT_IMAGE_INPUT_SIZE",
    "Canonicalization",
    "CanonicalizationConfig",
    "ContrastiveScorer",
    "EquivariantScorer",
    "ImageEncoder",
    "PCAFrame",
    "PointEncoder",
    "RegressedFrame",
    "VectorImageFrame",
    "VectorNeuronFrame",
    "orthonormal_frame",
]
