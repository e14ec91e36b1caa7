"""Constraint relaxation (arXiv 2408.13242): an equivariant network trained through relaxed layers whose
unconstrained terms are scheduled away, ending exactly equivariant."""

from .adapters import RelaxationAdapter, list_relaxation_adapters, register_relaxation_adapter
from .config import RelaxationConfig, theta_at
from .model import Relaxation

__all__ = ["Relaxation", "RelaxationAdapter", "RelaxationConfig", "list_relaxation_adapters",
           "register_relaxation_adapter", "theta_at"]
