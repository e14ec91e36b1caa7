"""Configuration of the REMUL strategy."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ...errors import ConfigError
from ..base import StrategyConfig

WEIGHTINGS = ("constant", "gradnorm")
TARGETS = ("label", "prediction")


@dataclasses.dataclass
class RemulConfig(StrategyConfig):
    """REMUL: loss = α·ℓ(f(x), y) + β·ℓ_equi (Elhag et al., arXiv 2410.17878).

    Attributes:
        alpha: weight of the task loss.
        beta: weight of the equivariance loss: a number; a dict ``{group name: β}`` when
            the model is wrapped for several groups; or ``"auto"`` to tune one weight per
            group during training from how strongly the data breaks each symmetry (the
            rule of Kim et al., arXiv 2306.00356, below).
        weighting: ``"constant"`` (α and β as given) or ``"gradnorm"``: α and β (and one β
            per group) adapted every training step so that the gradient norms of the
            weighted losses on the last shared layer track each loss's relative progress
            (Chen et al. 2018). The weights keep the sum α + Σβ.
        target: ``"label"``: ℓ_equi = ℓ(f(g·x), g·y), the task loss on transformed inputs
            and labels (the paper's choice; α = 0 is training on augmented data only);
            ``"prediction"``: ℓ_equi = ‖f(g·x) − g·f(x)‖² (mean squared), self-consistency,
            which also trains on unlabelled inputs through :meth:`auxiliary_loss`.
        num_samples_train: group elements sampled per input for the equivariance term in training mode; the
            transformed copies are one backbone call on a ``num_samples_train``-times bigger batch. Formerly
            ``num_samples`` (still accepted, with a :class:`DeprecationWarning`).
        num_samples_eval: the same in evaluation mode (a validation loss); ``None``: ``num_samples_train``.
        gradnorm_asymmetry: GradNorm's α, how strongly a loss that lags behind is pushed.
        gradnorm_lr: step size of the GradNorm weight update.
        shared_layer: name of the backbone submodule whose parameters GradNorm measures
            gradient norms on (``model.backbone.get_submodule(name)``); default: the last
            submodule that holds parameters.
        auto_warmup_steps: training steps with equal weights before ``beta="auto"`` starts
            scaling them.
        auto_power: p in β_i = β · (R_i / min_j R_j)^(−p), R_i the running mean of group i's
            equivariance loss: a symmetry the data breaks more gets a smaller weight.
        auto_momentum: momentum of the running means R_i.
        auto_beta: the weight β of the least broken symmetry under ``beta="auto"``.
    """

    strategy: ClassVar[str] = "remul"
    #: deprecated field names -> their new names (see :func:`symwrap.saving.upgrade_config_fields`)
    renamed_fields: ClassVar[dict[str, str]] = {"num_samples": "num_samples_train"}
    alpha: float = 1.0
    beta: float | str | dict[str, float] = 1.0
    weighting: str = "constant"
    target: str = "label"
    num_samples_train: int = 1
    num_samples_eval: int | None = None
    gradnorm_asymmetry: float = 1.5
    gradnorm_lr: float = 0.025
    shared_layer: str | None = None
    auto_warmup_steps: int = 100
    auto_power: float = 1.0
    auto_momentum: float = 0.9
    auto_beta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}; got {self.weighting!r}")
        if self.target not in TARGETS:
            raise ConfigError(f"target must be one of {TARGETS}; got {self.target!r}")
        if isinstance(self.beta, str):
            if self.beta != "auto":
                raise ConfigError(f"beta must be a number, a dict of numbers per group or 'auto'; got {self.beta!r}")
            if self.weighting == "gradnorm":
                raise ConfigError("beta='auto' and weighting='gradnorm' both set the weights; choose one")
        elif isinstance(self.beta, dict):
            for name, value in self.beta.items():
                _check_weight(f"beta[{name!r}]", value)
        else:
            _check_weight("beta", self.beta)
        _check_weight("alpha", self.alpha)
        for name in ("num_samples_train", "num_samples_eval", "auto_warmup_steps"):
            value = getattr(self, name)
            if name == "num_samples_eval" and value is None:
                continue
            positive = name.startswith("num_samples")
            if not isinstance(value, int) or value < (1 if positive else 0):
                raise ConfigError(f"{name} must be a {'positive' if positive else 'non-negative'} "
                                  f"integer; got {value!r}")
        for name in ("gradnorm_asymmetry", "gradnorm_lr", "auto_power", "auto_beta"):
            _check_weight(name, getattr(self, name))
        if not 0.0 <= self.auto_momentum < 1.0:
            raise ConfigError(f"auto_momentum must be in [0, 1); got {self.auto_momentum}")

    def samples_for(self, training: bool) -> int:
        """The group elements sampled per input in training mode (``training``) or in evaluation mode."""
        if training or self.num_samples_eval is None:
            return self.num_samples_train
        return self.num_samples_eval


def _check_weight(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number >= 0; got {value!r}")
