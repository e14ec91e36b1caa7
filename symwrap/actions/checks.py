"""Checks of what a model returns, against the output action that will move it. Strategies run them on
their backbone's output and the metrics on the measured model's, so both live here, below both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import ActionError, BackboneError, BackboneOutputError, SymwrapError
from ..groups import Group
from .base import Action
from .structured import DictAction


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages: type, dtype and shape."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return f"a dict with keys {sorted(map(str, value))}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    return "None" if value is None else f"a {type(value).__name__}"


#: errors a model call lets through untouched: symwrap's own, and running out of memory (a resource, not a misuse)
_PASSED_THROUGH = (SymwrapError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))


def call_model(model: Any, x: Any, name: str, *, role: str = "backbone") -> Any:
    """``model(x)``; an exception raised inside the model becomes a :class:`BackboneError` that says what the
    model was given (strategies feed it transformed and repeated batches the user never built), chained to the
    original so its traceback is kept."""
    try:
        return model(x)
    except _PASSED_THROUGH:
        raise
    except Exception as error:
        raise BackboneError(f"the {role} {name} raised {type(error).__name__} on {describe(x)}: {error}") from error


def check_backbone_output(y: Any, output_action: Action, group: Group | None, batch: int, backbone_name: str,
                          *, role: str = "backbone") -> None:
    """Raise :class:`BackboneOutputError` unless ``y`` is what ``output_action`` acts on, with ``batch`` rows.

    ``role`` names what returned ``y`` in the message (``"backbone"``, ``"model"``).
    """
    who = f"the {role} {backbone_name}"
    expected = f"output={output_action.spec()!r} expects {output_action.layout}"
    if isinstance(output_action, DictAction):
        if not isinstance(y, Mapping):
            raise BackboneOutputError(f"{who} returned {describe(y)}; {expected}")
    elif not isinstance(y, torch.Tensor):
        hint = ""
        if isinstance(y, (tuple, list)):
            hint = (f" To use one of its items, wrap the {role} first: "
                    f"symwrap.backbones.OutputAdapter({role}, key=0).")
        elif isinstance(y, Mapping):
            hint = (f" To use one of its entries, wrap the {role} first: "
                    f"symwrap.backbones.OutputAdapter({role}, key='logits'), or declare a dict output.")
        raise BackboneOutputError(f"{who} returned {describe(y)}; {expected} (a tensor)." + hint)
    elif not (torch.is_floating_point(y) or torch.is_complex(y)):
        raise BackboneOutputError(
            f"{who} returned {describe(y)}; outputs are averaged and moved, so they must be floating point "
            "(logits or scores, not class indices: return the logits and take argmax after)"
        )
    try:
        output_action.validate(y, group)
        rows = output_action.batch_size(y)
    except ActionError as error:
        raise BackboneOutputError(f"{who} returned {describe(y)}, which does not fit "
                                  f"output={output_action.spec()!r}: {error}") from None
    if rows != batch:
        raise BackboneOutputError(
            f"{who} returned {rows} rows for a batch of {batch} inputs ({describe(y)}); "
            "it must return one row per input"
        )
