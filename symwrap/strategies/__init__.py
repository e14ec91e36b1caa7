"""Strategies: how a backbone is made symmetric. One sub-package per strategy."""

import warnings
from typing import Any

from . import canonicalization, cloning, fixed_inputs, relaxation, remul, symmetrization
from .base import StrategyConfig, SymmetricModel
from .canonicalization import Canonicalization, CanonicalizationConfig
from .cloning import Cloning, CloningConfig
from .fixed_inputs import FixedInputs, FixedInputsConfig
from .registry import get_strategy, list_strategies, register_strategy
from .relaxation import Relaxation, RelaxationConfig
from .remul import Remul, RemulConfig
from .symmetrization import (
    Averaging,
    AveragingConfig,
    Frames,
    FramesConfig,
    Symmetrization,
    SymmetrizationConfig,
)

__all__ = [
    "StrategyConfig",
    "SymmetricModel",
    "get_strategy",
    "list_strategies",
    "register_strategy",
    "symmetrization",
    "canonicalization",
    "Canonicalization",
    "CanonicalizationConfig",
    "cloning",
    "CloningConfig",
    "Cloning",
    "fixed_inputs",
    "FixedInputs",
    "FixedInputsConfig",
    "relaxation",
    "Relaxation",
    "RelaxationConfig",
    "remul",
    "Remul",
    "RemulConfig",
    "AveragingConfig",
    "Averaging",
    "FramesConfig",
    "Frames",
    "Symmetrization",
    "SymmetrizationConfig",
]

#: old class name -> new one: each strategy's class is now named after its registry name
_DEPRECATED_NAMES = {"GroupAveraging": "Averaging", "FrameAveraging": "Frames",
                     "ProbabilisticSymmetrization": "Symmetrization", "SymmetryCloning": "Cloning"}


def __getattr__(name: str) -> Any:
    """An old class name of ``_DEPRECATED_NAMES`` gives its new class, with a :class:`DeprecationWarning`."""
    if name in _DEPRECATED_NAMES:
        new = _DEPRECATED_NAMES[name]
        warnings.warn(f"{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
