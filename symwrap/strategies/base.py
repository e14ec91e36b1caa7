"""What every strategy shares: the config base class and :class:`SymmetricModel`."""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..actions import Action
from ..actions.checks import call_model
from ..errors import ConfigError, DeviceError, InputDtypeError
from ..groups import Group
from ..saving import CONFIG_FILE, WEIGHTS_FILE  # noqa: F401  (the names were defined here before)
from ..steps import default_task_loss
from .checks import check_backbone_output, check_target
from .fields import check_field_types
from .keywords import keyword_forward


@dataclasses.dataclass
class StrategyConfig:
    """Fields every strategy has.

    Attributes:
        validate: check every input's shape, dtype and finiteness (NaN/inf) before the
            backbone sees it, raising a :class:`~symwrap.errors.SymwrapError` subclass.
        task_loss: ``"cross_entropy"``, ``"mse"``, ``"gaussian_nll"`` (a Gaussian predictive
            ``{"mean", "std"}``, as neural processes give, scored on the target values) or ``"auto"``
            (cross-entropy for integer targets, mean squared error otherwise).
        seed: seed of the generator used for sampled group elements (``None``: torch's
            global generator).
    """

    strategy: ClassVar[str] = ""
    validate: bool = True
    task_loss: str = "auto"
    seed: int | None = None

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.task_loss not in ("auto", "cross_entropy", "mse", "gaussian_nll"):
            raise ConfigError(f"task_loss must be 'auto', 'cross_entropy', 'mse' or 'gaussian_nll'; got "
                              f"{self.task_loss!r}")

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

    The contract every strategy honours (checked for every registered strategy by
    ``tests/test_contract.py``; see the docs page "The contract"):

    1. ``wrap()`` with default settings builds every network at once, on the backbone's device and
       dtype: no lazy parameters, so the model can be counted, moved and saved before its first forward.
       What the input's layout cannot tell (image channels of an MLP backbone, node features of a graph)
       is asked for with a :class:`~symwrap.errors.ConfigError` at ``wrap()``.
    2. ``forward(x)`` validates ``x`` (while ``config.validate``) and gives one output row per input in the
       output action's layout; a backbone that returns anything else raises
       :class:`~symwrap.errors.BackboneOutputError`.
    3. ``loss(pred, target, x)`` returns a dict of named scalar terms with their sum ``total``; a target that
       does not fit raises :class:`~symwrap.errors.TargetError`.
    4. ``save_pretrained(dir)`` is atomic, and ``symwrap.load(dir, backbone)`` gives the same outputs bit for
       bit, before and after a first forward.
    5. ``is_exact(x)`` says whether the model promises exactness on ``x``; where it does,
       :func:`symwrap.metrics.assert_equivariant` holds at the round-off of the dtype.
    6. Every misuse raises a :class:`~symwrap.errors.SymwrapError` subclass that says what was given and
       what was expected.
    """

    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig
    #: keyword arguments of ``wrap()`` that are modules, not config fields (a teacher, a network)
    module_arguments: ClassVar[tuple[str, ...]] = ()
    #: the module arguments that, like the backbone, ``wrap()`` passes through the output adapters first (a
    #: Hugging Face or PyG teacher): the strategy sees a module mapping the input to tensors
    adapted_module_arguments: ClassVar[tuple[str, ...]] = ()
    #: whether the strategy takes an equivariant backbone and keeps it equivariant (relaxation) rather than making
    #: an arbitrary backbone symmetric
    takes_equivariant_backbone: ClassVar[bool] = False
    #: the config field that takes per-group weights when ``wrap()`` gets a dict of groups;
    #: ``None`` for strategies that take one group only
    group_weights_field: ClassVar[str | None] = None
    #: read by ``transformers.Trainer``: ``forward`` takes no loss keywords (``num_items_in_batch``)
    accepts_loss_kwargs: ClassVar[bool] = False
    #: whether ``forward`` is the backbone's prediction untouched (REMUL, cloning): :meth:`export` gives the backbone
    predicts_with_backbone: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__:  # Hugging Face's keywords (pixel_values=, labels=) on every strategy
            cls.forward = keyword_forward(cls.__dict__["forward"])

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
        #: every group the model is made symmetric to, by name (one, except for REMUL with several groups)
        self.groups: dict[str, Group] = {group.name: group}
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
        is on: a tensor (or dict of them) of floats, one row per input, in the output's layout. An exception
        inside the backbone becomes a :class:`~symwrap.errors.BackboneError` naming the batch it was given."""
        name = display_name(self.backbone)
        y = call_model(self.backbone, x, name)
        if self.config.validate:
            check_backbone_output(y, self.output_action, self.group, self.input_action.batch_size(x), name)
        return y

    # --- training terms ------------------------------------------------------------------
    def task_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The task term: cross-entropy or mean squared error (``config.task_loss``), summed over the fields
        of dict outputs. Raises :class:`~symwrap.errors.TargetError` for a target that does not fit ``pred``."""
        kind = self.config.task_loss
        if kind == "gaussian_nll":
            return _gaussian_task_loss(pred, target)
        if kind == "auto":
            kind = "mse" if _floating_target(target) else "cross_entropy"
        check_target(pred, target, kind)
        return default_task_loss(pred, target, kind)

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
    def equivariance_error(self, x: Any, n: int | None = None, generator: torch.Generator | None = None, *,
                           group: str | None = None) -> float:
        """:func:`symwrap.metrics.equivariance_error` of this model under its group (``group=``: the named one of
        :attr:`groups`, which a model with several groups needs) and its actions."""
        from ..metrics import equivariance_error

        return equivariance_error(self, x, self._measured_group(group), input=self.input_action,
                                  output=self.output_action, n=n, generator=generator)

    def equivariance_errors(self, x: Any, n: int | None = None,
                            generator: torch.Generator | None = None) -> dict[str, dict[str, float]]:
        """E′ (``relative``) and E (``averaged``, :func:`symwrap.metrics.equivariance_errors`) on ``x`` for every
        group of :attr:`groups`, by name."""
        from ..metrics import equivariance_errors

        return {name: equivariance_errors(self, x, group, input=self.input_action, output=self.output_action, n=n,
                                          generator=generator)
                for name, group in self.groups.items()}

    def _measured_group(self, name: str | None) -> Group:
        if name is None:
            if len(self.groups) > 1:
                raise ConfigError(f"this model has several groups {list(self.groups)}: pass group= one of them, or "
                                  "use equivariance_errors(x) for all of them")
            return self.group
        if name not in self.groups:
            raise ConfigError(f"group {name!r} is not one of this model's groups {list(self.groups)}")
        return self.groups[name]

    # --- what it is made of ----------------------------------------------------------------------
    def print_trainable_parameters(self) -> None:
        """Print ``trainable params: N || all params: M || trainable%: P`` (peft's line), counting the backbone
        and the strategy's own modules."""
        from ..summary import trainable_parameters_line

        print(trainable_parameters_line(self))

    def summary(self) -> str:
        """A table of the backbone and each of the strategy's modules (class, trainable and total parameters),
        then the totals."""
        from ..summary import summary

        return summary(self)

    # --- exporting -------------------------------------------------------------------------------
    def export(self, example_input: Any, *, check: bool = True) -> nn.Module:
        """A plain ``nn.Module`` computing this model's evaluation-mode function with no symwrap import at run time:
        the backbone for REMUL and cloning, a ``torch.export`` graph otherwise (see :func:`symwrap.export`)."""
        from ..export import export

        return export(self, example_input, check=check)

    def export_obstacle(self, x: Any) -> str | None:
        """Why the evaluation-mode forward on inputs like ``x`` is no fixed function that :meth:`export` could give
        (it samples, say), with what to set instead; ``None`` (the default) when it is one."""
        return None

    # --- saving --------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, *, overwrite: bool = False, trainable_only: bool = False,
                        safe_serialization: bool = True) -> None:
        """Write ``symwrap_config.json`` (strategy, group, actions, config, and the size and SHA-256 of the
        weights) and the weights as ``model.safetensors`` to ``directory``; :func:`symwrap.load` reads them back.

        ``trainable_only=True`` writes only what training changes: the parameters that require gradients (the
        LoRA matrices of a peft backbone) and every tensor of the strategy's own modules, not the frozen
        backbone; :func:`symwrap.load` puts them back onto a fresh wrap of the same base model.
        ``safe_serialization`` is Hugging Face's keyword: the weights are always safetensors.

        The save is atomic: both files are written to a temporary folder inside ``directory`` and moved into
        place together, so a save that fails leaves a previous one untouched. Other files in ``directory``
        are left alone.

        Raises:
            SaveError: ``directory`` already holds a saved model and ``overwrite`` is false (pass
                ``overwrite=True`` to replace it), or it cannot be written, or the model has lazy parameters
                that no forward pass has initialised yet; ``safe_serialization=False`` (not supported).
        """
        from ..saving import save_model

        save_model(self, directory, overwrite=overwrite, trainable_only=trainable_only,
                   safe_serialization=safe_serialization)

    @classmethod
    def from_pretrained(cls, backbone: nn.Module, directory: str | Path, **modules: nn.Module) -> SymmetricModel:
        """:func:`symwrap.load` in peft's argument order: the model saved in ``directory``, rebuilt around
        ``backbone`` (same architecture) with its weights, bit for bit. Called on a strategy class, the save must
        be of that strategy."""
        from ..wrap import load

        model = load(directory, backbone, **modules)
        if not isinstance(model, cls):
            raise ConfigError(f"{str(directory)!r} holds a {model.config.strategy!r} model "
                              f"({type(model).__name__}), not a {cls.__name__}; use symwrap.load or "
                              f"{type(model).__name__}.from_pretrained")
        return model

    def group_spec(self) -> str | list[str]:
        """The group as ``wrap()`` takes it back: its name (a list of names for several groups)."""
        return self.group.name

    # --- helpers for subclasses -------------------------------------------------------------------
    def _check_input(self, x: Any) -> None:
        if self.config.validate:
            self.input_action.validate(x, self.group, check_finite=True)
            self._check_placement(x)
        else:  # shapes only, cheap: an empty input would otherwise give NaN or a raw error deep inside
            self.input_action.check_nonempty(x)

    def _check_placement(self, x: Any) -> None:
        """The input's floating-point data must be on the model's device and, outside autocast, of its dtype."""
        probe = self.input_action.probe(x)
        parameter = next((p for p in self.parameters() if p.is_floating_point()), None)
        if parameter is None or not isinstance(probe, torch.Tensor) or not torch.is_floating_point(probe):
            return
        if probe.device != parameter.device:
            raise DeviceError(f"the input is on {probe.device} and the model on {parameter.device}; move one of "
                              f"them: x.to({str(parameter.device)!r}) or model.to({str(probe.device)!r})")
        if probe.dtype != parameter.dtype and not torch.is_autocast_enabled(probe.device.type):
            raise InputDtypeError(f"the input is {probe.dtype} and the model's parameters are {parameter.dtype}; "
                                  f"convert one of them (x.to({parameter.dtype}) or model.to({probe.dtype})), or "
                                  "run under torch.autocast")

    def generator_for(self, device: torch.device) -> torch.Generator | None:
        """The generator seeded once from ``config.seed`` (``None`` without a seed): two
        models with the same seed sample the same elements call after call."""
        if self.config.seed is None:
            return None
        if self._generator is None or self._generator.device != torch.device(device):
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.config.seed)
        return self._generator


def display_name(module: Any) -> str:
    """What messages call a backbone: the user's model's class name, under the adapter ``wrap()`` may have put
    around it (adapters say it as ``display_name``)."""
    name = getattr(module, "display_name", None)
    return name if isinstance(name, str) else type(module).__name__


def _gaussian_task_loss(pred: Any, target: Any) -> torch.Tensor:
    """``task_loss="gaussian_nll"``: a Gaussian predictive ``{"mean", "std"}`` scored on the target values."""
    from ..errors import TargetError
    from ..losses import gaussian_nll

    if not isinstance(pred, Mapping) or not {"mean", "std"} <= set(pred):
        keys = f" with keys {sorted(pred)}" if isinstance(pred, Mapping) else ""
        raise TargetError(f"task_loss='gaussian_nll' scores a prediction {{'mean': ..., 'std': ...}}; got "
                          f"{type(pred).__name__}{keys}")
    if not isinstance(target, torch.Tensor) or target.shape != pred["mean"].shape:
        shape = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise TargetError(f"task_loss='gaussian_nll' needs a target shaped like the mean {tuple(pred['mean'].shape)}; "
                          f"got {shape}")
    return gaussian_nll(pred["mean"], pred["std"], target)
