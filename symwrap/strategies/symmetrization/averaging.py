"""Group averaging: f(x) = E_g g·φ(g⁻¹·x), exact over all elements of a finite group,
Monte Carlo over Haar samples for an infinite one."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ...actions import group_copies
from ...errors import ConfigError
from ..base import StrategyConfig, SymmetricModel
from ..registry import register_strategy


@dataclasses.dataclass
class AveragingConfig(StrategyConfig):
    """Group averaging.

    Attributes:
        num_samples: Haar samples per input for infinite groups (and for finite
            groups larger than ``max_exhaustive_order``) during training.
        num_samples_eval: the same at evaluation (``model.eval()``); defaults to ``num_samples``.
        max_exhaustive_order: finite groups up to this order are averaged over every
            element, which makes the model exactly equivariant.
    """

    strategy: ClassVar[str] = "averaging"
    num_samples: int = 16
    num_samples_eval: int | None = None
    max_exhaustive_order: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_samples", "max_exhaustive_order"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.num_samples_eval is not None and self.num_samples_eval < 1:
            raise ConfigError(f"num_samples_eval must be >= 1; got {self.num_samples_eval}")


@register_strategy("averaging")
class GroupAveraging(SymmetricModel):
    """Averages the backbone over the group, all copies in one backbone call.

    ``wrap(backbone, group="C4", strategy="averaging", input="image", output="invariant")``
    """

    config_class = AveragingConfig
    config: AveragingConfig

    def forward(self, x: Any) -> Any:
        self._check_input(x)
        samples = self.config.num_samples
        if not self.training and self.config.num_samples_eval is not None:
            samples = self.config.num_samples_eval
        probe = self.input_action.probe(x)
        group, x_rep, g, k = group_copies(
            self.input_action,
            self.group,
            x,
            samples=samples,
            exhaustive_up_to=self.config.max_exhaustive_order,
            generator=self.generator_for(probe.device),
        )
        y = self.run_backbone(self.input_action.act(group, group.inverse(g), x_rep))
        return self.output_action.mean(self.output_action.act(group, g, y), k)

    def is_exact(self, x: Any) -> bool:
        """Exact when the group, bound to ``x``, is finite and small enough to average over every element."""
        bound = self.input_action.bind(self.group, x)
        return bound.is_finite and bound.order <= self.config.max_exhaustive_order
