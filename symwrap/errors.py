"""The exceptions symwrap raises.

Every failure a user can cause is a :class:`SymwrapError` subclass whose message
says what was given, what was expected and what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable


class SymwrapError(Exception):
    """Base class of every error symwrap raises on purpose."""


class UnknownNameError(SymwrapError, KeyError):
    """A registry look-up by name found nothing."""

    kind = "name"

    def __init__(self, given: object, valid: Iterable[str], hint: str = "") -> None:
        self.given = given
        self.valid = sorted(valid)
        message = f"unknown {self.kind} {given!r}; expected one of: {', '.join(self.valid)}."
        if hint:
            message += f" {hint}"
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class UnknownGroupError(UnknownNameError):
    """`get_group` was given a name that no registered group has."""

    kind = "group"


class UnknownActionError(UnknownNameError):
    """`get_action` was given a name that no registered action has."""

    kind = "action"


class UnknownStrategyError(UnknownNameError):
    """`wrap` was given a strategy that is not registered."""

    kind = "strategy"


class RegistryError(SymwrapError):
    """Registering a group, action or strategy under a name that is taken or malformed."""


class ActionError(SymwrapError, ValueError):
    """Data that does not fit an action: wrong shape, wrong type, wrong size."""


class InputDtypeError(ActionError, TypeError):
    """A tensor of the wrong dtype (integers where floats are needed, ...)."""


class NonFiniteInputError(ActionError):
    """NaN or inf found in an input while validation is on."""


class ShapeError(SymwrapError, ValueError):
    """A tensor given to a symwrap module with the wrong shape, or an input it needs that is missing."""


class IncompatibleGroupError(SymwrapError, ValueError):
    """A group that an action or a strategy cannot use (SO3 on images, ...)."""


class GroupElementError(SymwrapError, ValueError):
    """A tensor that is not a valid element (or batch of elements) of a group."""


class ConfigError(SymwrapError, ValueError):
    """A strategy configuration with an invalid field or value."""


class MissingDependencyError(SymwrapError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the optional package {package!r}, which is not installed. "
            f"Install it with: pip install 'symwrap[{extra}]'"
        )


class WeightLoadingError(SymwrapError, ValueError):
    """Pretrained weights that do not fit a model: tensors left unused, missing or of the wrong shape."""


class WeightFileNotFoundError(WeightLoadingError, FileNotFoundError):
    """A weights file that does not exist (or is not a file)."""


class UnknownBackboneError(UnknownNameError):
    """`load_backbone` was given a source prefix (or a model name) that it does not know."""

    kind = "backbone"


class WeightsUnavailableError(WeightFileNotFoundError):
    """Pretrained weights that are not on this machine and could not be downloaded (offline, not on the hub)."""


class EmptyInputError(ActionError):
    """An input with nothing in it: a batch of zero samples, a point cloud of zero points."""


class DeviceError(SymwrapError, ValueError):
    """A tensor on a device that cannot hold data (``meta``) or on a different device than the model."""


class BackboneOutputError(SymwrapError, TypeError):
    """A backbone that returned something a strategy cannot use: not a tensor, integers, another batch size,
    or a shape that does not fit the output action."""


class BackboneError(SymwrapError, RuntimeError):
    """The backbone (or a measured model) raised on the batch a strategy gave it; the original exception is
    chained as ``__cause__``."""


class TargetError(SymwrapError, ValueError):
    """A training target given to ``loss`` that is missing or does not fit the prediction."""


class SaveError(SymwrapError, OSError):
    """``save_pretrained`` could not write a model (the folder already holds one, it is not writable, ...)."""


class ModelFileError(SymwrapError, ValueError):
    """A saved model whose files are missing, corrupt, incomplete or do not belong together."""


class CheckpointError(SymwrapError, ValueError):
    """A training checkpoint that is missing, corrupt, or written for another model or optimizer."""


class DataError(SymwrapError, ValueError):
    """A data loader or data set that yields nothing, or batches of an unexpected form."""


class ApproximationWarning(UserWarning):
    """A model that is only approximately equivariant and measurably far from exact (a Monte Carlo average with
    few samples, an untrained learned frame): warned once per model."""


class EquivarianceAssertionError(SymwrapError, AssertionError):
    """:func:`symwrap.metrics.assert_equivariant` found a model further from equivariant than the tolerance."""


class ExportError(SymwrapError, ValueError):
    """:func:`symwrap.export` cannot give a plain module that computes the model's function (a sampled forward,
    data ``torch.export`` cannot trace), or the module it built does not reproduce the model's outputs."""
