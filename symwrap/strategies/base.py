"""What every strategy shares: the config base class and :class:`SymmetricModel`."""

from __future__ import annotations

import dataclasses
import json
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..actions import Action
from ..errors import ConfigError
from ..groups import Group
from .checks import check_backbone_output, check_target
from .fields import check_field_types

CONFIG_FILE = "symwrap_config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclasses.dataclass
class StrategyConfig:
    """Fields every strategy has.

    Attributes:
        validate: check every input's shape, dtype and finiteness (NaN/inf) before the
            backbone sees it, raising a :class:`~symwrap.errors.SymwrapError` subclass.
        task_loss: ``"cross_entropy"``, ``"mse"`` or ``"auto"`` (cross-entropy for
            integer targets, mean squared error otherwise).
        seed: seed of the generator used for sampled group elements (``None``: torch's
            global generator).
    """

    strategy: ClassVar[str] = ""
    validate: bool = True
    task_loss: str = "auto"
    seed: int | None = None

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.task_loss not in ("auto", "cross_entropy", "mse"):
            raise ConfigError(f"task_loss must be 'auto', 'cross_entropy' or 'mse'; got {self.task_loss!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StrategyConfig:
        values = {k: v for k, v in values.items() if k != "strategy"}
        return build_config(cls, values)


def _floating_target(target: Any) -> bool:
    """Whether ``task_loss="auto"`` reads ``target`` as a regression target (floats, or a dict of them)."""
    if isinstance(target, Mapping):
        return all(_floating_target(value) for value in target.values())
    return isinstance(target, torch.Tensor) and torch.is_floating_point(target)


def build_config(config_class: type[StrategyConfig], values: dict[str, Any]) -> StrategyConfig:
    """``config_class(**values)`` with an error that lists the valid fields."""
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{config_class.__name__} has no field(s) {unknown}; valid fields: {sorted(names)}"
        )
    return config_class(**values)


class SymmetricModel(nn.Module):
    """A backbone made (approximately) equivariant by a strategy.

    Built by :func:`symwrap.wrap`; holds the backbone (``self.backbone``), the group,
    the input and output actions and the strategy's config.
    """

    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig
    #: keyword arguments of ``wrap()`` that are modules, not config fields (a teacher, a network)
    module_arguments: ClassVar[tuple[str, ...]] = ()
    #: the config field that takes per-group weights when ``wrap()`` gets a dict of groups;
    #: ``None`` for strategies that take one group only
    group_weights_field: ClassVar[str | None] = None

    def __init__(
        self,
        backbone: nn.Module,
        group: Group,
        input_action: Action,
        output_action: Action,
        config: StrategyConfig,
    ) -> None:
        super().__init__()
        input_action.check_group(group)
        output_action.check_group(group)
        self.backbone = backbone
        self.group = group
        self.input_action = input_action
        self.output_action = output_action
        self.config = config
        self._generator: torch.Generator | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(strategy={self.config.strategy!r}, group={self.group.name!r}, "
            f"input={self.input_action.spec()!r}, output={self.output_action.spec()!r},\n"
            f"  backbone={self.backbone!r})"
        )

    @abstractmethod
    def forward(self, x: Any) -> Any:
        """The (approximately) equivariant prediction."""

    def run_backbone(self, x: Any) -> Any:
        """The backbone on ``x``, its output checked against the output action while ``config.validate``
        is on: a tensor (or dict of them) of floats, one row per input, in the output's layout."""
        y = self.backbone(x)
        if self.config.validate:
            check_backbone_output(y, self.output_action, self.group, self.input_action.batch_size(x),
                                  type(self.backbone).__name__)
        return y

    # --- training terms ------------------------------------------------------------------
    def task_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The task term: cross-entropy or mean squared error (``config.task_loss``), summed over the fields
        of dict outputs. Raises :class:`~symwrap.errors.TargetError` for a target that does not fit ``pred``."""
        kind = self.config.task_loss
        if kind == "auto":
            kind = "mse" if _floating_target(target) else "cross_entropy"
        check_target(pred, target, kind)
        if isinstance(pred, Mapping):
            return sum(self._task_term(kind, pred[key], target[key]) for key in pred)
        return self._task_term(kind, pred, target)

    @staticmethod
    def _task_term(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if kind == "cross_entropy":
            return F.cross_entropy(pred, target)
        return F.mse_loss(pred, target)

    def auxiliary_loss(self, x: Any) -> dict[str, torch.Tensor]:
        """The strategy's extra training terms, already weighted (none by default)."""
        return {}

    def loss(self, pred: torch.Tensor, target: torch.Tensor, x: Any = None) -> dict[str, torch.Tensor]:
        """Named training terms: ``task``, the strategy's auxiliary terms, and their sum ``total``."""
        terms = {"task": self.task_loss(pred, target)}
        if x is not None:
            terms.update(self.auxiliary_loss(x))
        terms["total"] = sum(terms.values())
        return terms

    def is_exact(self, x: Any) -> bool:
        """Whether this model promises exact equivariance on ``x`` (up to float round-off: relative error
        ≤ 1e-5 in float32), which the contract tests check with :func:`symwrap.metrics.assert_equivariant`.

        ``False`` (the default) promises no bound: the model is approximately equivariant, or equivariant
        in distribution only.
        """
        return False

    # --- measuring ---------------------------------------------------------------------------
    def equivariance_error(self, x: Any, n: int | None = None, generator: torch.Generator | None = None) -> float:
        """:func:`symwrap.metrics.equivariance_error` of this model under its own group and actions."""
        from ..metrics import equivariance_error

        return equivariance_error(
            self, x, self.group, input=self.input_action, output=self.output_action, n=n, generator=generator
        )

    # --- saving --------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``symwrap_config.json`` and the weights as ``model.safetensors``."""
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        description = {
            "strategy": self.config.strategy,
            "group": self.group_spec(),
            "input": self.input_action.spec(),
            "output": self.output_action.spec(),
            "config": self.config.to_dict(),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(description, indent=2))
        save_model(self, str(directory / WEIGHTS_FILE))

    def group_spec(self) -> str | list[str]:
        """The group as ``wrap()`` takes it back: its name (a list of names for several groups)."""
        return self.group.name

    # --- helpers for subclasses -------------------------------------------------------------------
    def _check_input(self, x: Any) -> None:
        if self.config.validate:
            self.input_action.validate(x, self.group, check_finite=True)

    def generator_for(self, device: torch.device) -> torch.Generator | None:
        """The generator seeded once from ``config.seed`` (``None`` without a seed): two
        models with the same seed sample the same elements call after call."""
        if self.config.seed is None:
            return None
        if self._generator is None or self._generator.device != torch.device(device):
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.config.seed)
        return self._generator
