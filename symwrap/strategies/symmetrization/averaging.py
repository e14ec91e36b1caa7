"""Group averaging: f(x) = E_g g·φ(g⁻¹·x), exact over all elements of a finite group,
Monte Carlo over Haar samples for an infinite one."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from ...actions import group_copies
from ...actions.tracing import is_tracing
from ...errors import ConfigError
from ..approximation import warn_approximation
from ..base import StrategyConfig, SymmetricModel
from ..registry import register_strategy

#: a Monte Carlo average whose standard error (over its copies) is above this fraction of its norm is reported
#: with an :class:`~symwrap.errors.ApproximationWarning`; its equivariance error is then at least about √2 as large
MONTE_CARLO_WARNING_THRESHOLD = 0.05


@dataclasses.dataclass
class AveragingConfig(StrategyConfig):
    """Group averaging.

    Exact for finite groups of order up to ``max_exhaustive_order`` (every element is averaged over).
    Otherwise (SO2, SO3, E3, ... and large finite groups) it is a Monte Carlo estimate over
    ``num_samples_train`` (``num_samples_eval`` in evaluation) Haar samples, only approximately equivariant:
    its error falls as 1/√num_samples_train, and slowly for a backbone far from invariant. The model measures
    the estimate's standard error from the copies it already computed and warns
    (:class:`~symwrap.errors.ApproximationWarning`, once per sample count) when it is above
    ``MONTE_CARLO_WARNING_THRESHOLD`` (5%) of the estimate. For point sets, ``strategy="frames"`` is
    exact at a cost of a few copies.

    Attributes:
        num_samples_train: Haar samples per input for infinite groups (and for finite
            groups larger than ``max_exhaustive_order``) during training. Formerly ``num_samples``
            (still accepted, with a :class:`DeprecationWarning`).
        num_samples_eval: the same at evaluation (``model.eval()``); ``None``: ``num_samples_train``.
        max_exhaustive_order: finite groups up to this order are averaged over every
            element, which makes the model exactly equivariant.
    """

    strategy: ClassVar[str] = "averaging"
    #: deprecated field names -> their new names (see :func:`symwrap.saving.upgrade_config_fields`)
    renamed_fields: ClassVar[dict[str, str]] = {"num_samples": "num_samples_train"}
    num_samples_train: int = 16
    num_samples_eval: int | None = None
    max_exhaustive_order: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_samples_train", "max_exhaustive_order"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.num_samples_eval is not None and self.num_samples_eval < 1:
            raise ConfigError(f"num_samples_eval must be >= 1; got {self.num_samples_eval}")

    def samples_for(self, training: bool) -> int:
        """The group elements sampled per input in training mode (``training``) or in evaluation mode."""
        if training or self.num_samples_eval is None:
            return self.num_samples_train
        return self.num_samples_eval


@register_strategy("averaging")
class Averaging(SymmetricModel):
    """Averages the backbone over the group, all copies in one backbone call.

    ``wrap(backbone, group="C4", strategy="averaging", input="image", output="invariant")``

    Exact over every element of a small finite group; a Monte Carlo estimate otherwise, which warns (once
    per sample count) when its measured standard error is large (see :class:`AveragingConfig`).
    """

    config_class = AveragingConfig
    config: AveragingConfig
    #: the sample counts the Monte Carlo warning was given for: once per model and count (training and
    #: evaluation may use different ones)
    _monte_carlo_warned: frozenset[int] = frozenset()

    def forward(self, x: Any) -> Any:
        self._check_input(x)
        samples = self.config.samples_for(self.training)
        probe = self.input_action.probe(x)
        group, x_rep, g, k = group_copies(
            self.input_action,
            self.group,
            x,
            samples=samples,
            max_exhaustive_order=self.config.max_exhaustive_order,
            generator=self.generator_for(probe.device),
        )
        y = self.run_backbone(self.input_action.act(group, group.inverse(g), x_rep))
        copies = self.output_action.act(group, g, y)
        mean = self.output_action.mean(copies, k)
        if k > 1 and k not in self._monte_carlo_warned and not is_tracing() and not self._enumerates(x):
            self._warn_if_uncertain(copies, mean, k)
        return mean

    def export_obstacle(self, x: Any) -> str | None:
        if self._enumerates(x):
            return None
        samples = self.config.samples_for(False)
        return (f"over {self.group.name} it averages {samples} Haar-sampled elements per input, drawn afresh on "
                "every call, which no fixed module reproduces. Use a finite group (averaged over every element), "
                "strategy='frames' for point sets, or strategy='canonicalization'")

    def _enumerates(self, x: Any) -> bool:
        """Whether every element of the group bound to ``x`` is averaged over (no Monte Carlo estimate, so no
        standard error to warn about: C8 on images is enumerated though its rotations are interpolated)."""
        bound = self.input_action.bind(self.group, x)
        return bound.is_finite and bound.order <= self.config.max_exhaustive_order

    def is_exact(self, x: Any) -> bool:
        """Exact when the group, bound to ``x``, is finite and small enough to average over every element, and
        its elements move the input and the output exactly (C8 on images interpolates: not exact)."""
        bound = self.input_action.bind(self.group, x)
        return (bound.is_finite and bound.order <= self.config.max_exhaustive_order
                and self.input_action.acts_exactly(bound) and self.output_action.acts_exactly(bound))

    @torch.no_grad()
    def monte_carlo_error(self, copies: Any, mean: Any, k: int) -> float:
        """The standard error of the average of ``k`` sampled copies (copy-major, as the output action moved
        them back), relative to the norm of the average, both over the whole batch: how far the estimate is
        from the exact group average, measured from the copies alone (no extra backbone call)."""
        second = self.output_action.mean(_squared(copies), k)
        mean_flat = self.output_action.flatten(mean).double()
        spread = (self.output_action.flatten(second).double() - mean_flat**2).clamp_min(0)
        standard_error = math.sqrt(float(spread.sum()) / (k - 1))  # unbiased variance of the mean of k copies
        norm = float(mean_flat.norm())
        if standard_error == 0.0:
            return 0.0
        return standard_error / norm if norm > 0 else math.inf

    def _warn_if_uncertain(self, copies: Any, mean: Any, k: int) -> None:
        error = self.monte_carlo_error(copies, mean, k)
        if not error > MONTE_CARLO_WARNING_THRESHOLD:
            return
        self._monte_carlo_warned = self._monte_carlo_warned | {k}
        field = "num_samples_train" if self.training or self.config.num_samples_eval is None else "num_samples_eval"
        estimate = ""
        if math.isfinite(error):  # the norm of the mean shrinks towards the exact average's: a lower bound
            needed = math.ceil(k * (error / MONTE_CARLO_WARNING_THRESHOLD) ** 2)
            estimate = f"; it takes at least about {needed} to bring it under {MONTE_CARLO_WARNING_THRESHOLD}"
        warn_approximation(
            f"group averaging over {self.group.name} is a Monte Carlo estimate from {field}={k} sampled elements "
            f"per input, and on this batch its standard error is {error:.2g} of its norm (warned above "
            f"{MONTE_CARLO_WARNING_THRESHOLD}), so the model is far from equivariant. "
            f"Raise {field} (the error falls as 1/sqrt({field}){estimate}), or use a strategy that is exact: "
            "strategy='frames' for point sets, strategy='canonicalization' (its default canonicalizer is exact "
            "for point sets and finite groups)."
        )


def _squared(y: Any) -> Any:
    """``y * y``, field by field for dict outputs."""
    if isinstance(y, Mapping):
        return {key: _squared(value) for key, value in y.items()}
    return y * y
