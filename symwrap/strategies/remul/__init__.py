"""REMUL: multitask fine-tuning towards equivariance (arXiv 2410.17878), with GradNorm and
automatically tuned weights for several symmetries at once (arXiv 2306.00356)."""

from .config import RemulConfig
from .model import Remul
from .weighting import GradNorm, SymmetryLevels

__all__ = ["RemulConfig", "Remul", "GradNorm", "SymmetryLevels"]
