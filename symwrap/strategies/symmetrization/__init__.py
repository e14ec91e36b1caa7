"""Symmetrization: learned probabilistic symmetrization, and the exact baselines of the same
room, group averaging and frame averaging."""

import warnings
from typing import Any

from .averaging import Averaging, AveragingConfig
from .config import SymmetrizationConfig
from .frames import Frames, FramesConfig, pca_frames
from .interfaces import FiniteInterface, PermutationInterface, RotationInterface, Sample
from .probabilistic import Symmetrization

__all__ = [
    "AveragingConfig",
    "Averaging",
    "Frames",
    "FramesConfig",
    "pca_frames",
    "SymmetrizationConfig",
    "Symmetrization",
    "PermutationInterface",
    "RotationInterface",
    "FiniteInterface",
    "Sample",
]

#: old class name -> new one (the class names now match the registry names)
_DEPRECATED_NAMES = {"GroupAveraging": "Averaging", "FrameAveraging": "Frames",
                     "ProbabilisticSymmetrization": "Symmetrization"}


def __getattr__(name: str) -> Any:
    """An old class name of ``_DEPRECATED_NAMES`` gives its new class, with a :class:`DeprecationWarning`."""
    if name in _DEPRECATED_NAMES:
        new = _DEPRECATED_NAMES[name]
        warnings.warn(f"{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
