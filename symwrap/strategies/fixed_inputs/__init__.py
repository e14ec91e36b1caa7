"""Approximate equivariance by fixed, learnable inputs (arXiv 2406.13488)."""

from .config import FixedInputsConfig
from .model import FixedInputs, PositionNetwork, grid_positions

__all__ = ["FixedInputs", "FixedInputsConfig", "PositionNetwork", "grid_positions"]
