"""Configuration of constraint relaxation."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ...errors import ConfigError
from ..base import StrategyConfig

SCHEDULES = ("triangle", "constant")
INITS = ("zero", "normal")


@dataclasses.dataclass
class RelaxationConfig(StrategyConfig):
    """Constraint relaxation (Pertigkiozoglou et al., NeurIPS 2024, arXiv 2408.13242).

    Attributes:
        schedule: how θ, the weight of every relaxation term, moves over ``total_steps`` training steps:
            ``"triangle"`` (the paper's: 0 → 1 at half the steps → 0 at the end, 0 afterwards) or
            ``"constant"`` (``theta`` throughout: the paper's ablation).
        total_steps: the training steps the schedule spans; the model counts its steps (``step()``, or
            every ``loss()`` while training) and keeps the count in its state (saved and loaded).
        theta: θ of the constant schedule.
        reg_weight: λ of the regulariser λ·(sqrt(Σ_layers LD) + sqrt(Σ_layers N)).
        lie_derivative: include the Lie-derivative term LD (``False``: the ablation without it, only the norm).
        init: initial weights of the relaxation terms: ``"zero"`` (Vector Neurons in the paper) or ``"normal"``
            with standard deviation ``init_std`` (SEGNN in the paper).
        init_std: standard deviation of the ``"normal"`` initialisation.
        max_generators: finite groups: the LD sums over at most this many group elements (the generators
            of escnn groups, otherwise the non-identity elements in order).
    """

    strategy: ClassVar[str] = "relaxation"
    schedule: str = "triangle"
    total_steps: int = 1000
    theta: float = 0.1
    reg_weight: float = 0.01
    lie_derivative: bool = True
    init: str = "zero"
    init_std: float = 1e-4
    max_generators: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}")
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {INITS}; got {self.init!r}")
        for name in ("total_steps", "max_generators"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1; got {value!r}")
        for name in ("theta", "reg_weight", "init_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)}")


def theta_at(step: int, config: RelaxationConfig) -> float:
    """θ after ``step`` training steps: the triangle 2s/T up to T/2, then 1 − 2(s − T/2)/T, and 0 from T on;
    or the constant ``theta``."""
    if config.schedule == "constant":
        return float(config.theta)
    total = config.total_steps
    if step >= total:
        return 0.0
    half = total / 2
    return 2 * step / total if step <= half else 1 - 2 * (step - half) / total
