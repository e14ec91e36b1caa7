"""Symmetrization: learned probabilistic symmetrization, and the exact baselines of the same
room, group averaging and frame averaging."""

from .averaging import AveragingConfig, GroupAveraging
from .config import SymmetrizationConfig
from .frames import FrameAveraging, FramesConfig, pca_frames
from .interfaces import FiniteInterface, PermutationInterface, RotationInterface, Sample
from .probabilistic import ProbabilisticSymmetrization

__all__ = [
    "AveragingConfig",
    "GroupAveraging",
    "FrameAveraging",
    "FramesConfig",
    "pca_frames",
    "SymmetrizationConfig",
    "ProbabilisticSymmetrization",
    "PermutationInterface",
    "RotationInterface",
    "FiniteInterface",
    "Sample",
]
