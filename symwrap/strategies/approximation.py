"""Warning that a model is measurably far from equivariant, pointed at the user's line."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

from ..errors import ApproximationWarning

_LIBRARY_ROOTS = (str(Path(__file__).resolve().parents[1]), str(Path(torch.__file__).resolve().parent))


def warn_approximation(message: str) -> None:
    """Issue an :class:`ApproximationWarning` attributed to the first caller outside symwrap and torch (the line
    that called the model), not to a line inside ``nn.Module.__call__``."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_LIBRARY_ROOTS):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, ApproximationWarning, stacklevel=level + 1)
