"""Symmetry cloning (arXiv 2410.03989): a student of any architecture clones an equivariant teacher,
then is fine-tuned keeping or breaking the symmetry."""

import warnings
from typing import Any

from .config import CloningConfig
from .inputs import gaussian_like
from .model import Cloning, WeightAnchor
from .teachers import EGNNReadout, default_teacher, resample_parameters

__all__ = [
    "CloningConfig",
    "Cloning",
    "WeightAnchor",
    "EGNNReadout",
    "default_teacher",
    "gaussian_like",
    "resample_parameters",
]

#: old class name -> new one (the class name now matches the registry name)
_DEPRECATED_NAMES = {"SymmetryCloning": "Cloning"}


def __getattr__(name: str) -> Any:
    """An old class name of ``_DEPRECATED_NAMES`` gives its new class, with a :class:`DeprecationWarning`."""
    if name in _DEPRECATED_NAMES:
        new = _DEPRECATED_NAMES[name]
        warnings.warn(f"{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
