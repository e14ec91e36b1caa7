"""Where inside a model the symmetry breaks: for every layer (or block), how much it breaks the symmetry of what
it is given.

Two methods, chosen by ``method=`` in :func:`diagnose`:

* ``"elements"``: the model runs on x and on g·x for group elements g (all of a finite group of at most 16, else
  ``n`` samples) with forward hooks; each layer's input and output errors are compared in the representation
  they carry, and a layer's contribution is the error it adds (:class:`Diagnosis`).
* ``"lie"``: the layer-wise Lie derivative of Gruver et al. (ICLR 2023) for continuous groups: each layer's own
  Lie derivative, pushed to the model's output with forward-mode autodiff; the contributions add up to the
  model's Lie derivative (:class:`LieDiagnosis`).

``method="auto"`` (the default) takes the Lie derivative for continuous groups and the elements otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..actions import ActionSpec, get_action
from ..errors import ConfigError
from ..groups import Group, get_group
from .elements import Diagnosis, LayerDiagnosis, diagnose_by_elements
from .layers import choose_layers
from .lie import LieDiagnosis, LieLayerDiagnosis, diagnose_lie

__all__ = ["LayerDiagnosis", "Diagnosis", "LieLayerDiagnosis", "LieDiagnosis", "diagnose", "METHODS"]

#: the values ``diagnose(method=)`` takes
METHODS = ("auto", "elements", "lie")


def diagnose(
    model: Callable[[Any], Any] | nn.Module,
    x: Any,
    group: str | Group,
    *,
    input: ActionSpec,
    output: ActionSpec = "invariant",
    layers: str | list[str] = "leaves",
    method: str = "auto",
    n: int = 8,
    generator: torch.Generator | None = None,
) -> Diagnosis | LieDiagnosis:
    """Per-layer symmetry breaking of ``model`` on ``x`` under ``group`` (see the module docstring).

    Layers' inputs and outputs are compared as escnn fields, feature maps or ViT patch tokens that move with the
    image, Vector-Neuron features that rotate with the points, tensors shaped like the input or the output, or
    else as invariant (``symwrap.diagnosis.layers``).

    Args:
        layers: ``"leaves"`` (modules without submodules, and escnn modules as a whole), ``"blocks"`` (the
            model's direct children, a ``Sequential`` or ``ModuleList`` child opened one level), or a list of
            submodule names.
        method: ``"auto"``, ``"elements"`` or ``"lie"`` (continuous matrix Lie groups only).
        n: sampled elements for ``"elements"`` on groups with more than 16 elements or infinitely many.

    Returns:
        a :class:`Diagnosis` (``"elements"``) or a :class:`LieDiagnosis` (``"lie"``); both have ``ranked()``,
        ``table()`` and ``plot(path)``.

    Raises:
        ConfigError: ``model`` is not an ``nn.Module``, a layer name or the method is unknown, ``"lie"`` is asked
            of a finite group, or no chosen layer ran once per forward pass.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"diagnose needs an nn.Module to hook its layers; got {type(model).__name__}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    group = get_group(group) if isinstance(group, str) else group
    input_action, output_action = get_action(input), get_action(output)
    if method == "auto":
        method = "elements" if group.is_finite else "lie"
    if method == "lie" and group.is_finite:
        raise ConfigError(f"the Lie derivative needs a continuous group; {group.name} is finite. "
                          "Use method='elements'.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n, the number of sampled group elements, must be an integer >= 1; got {n!r}")
    chosen = choose_layers(model, layers)
    input_action.check_group(group)
    input_action.validate(x, group, check_finite=True)
    was_training = model.training
    model.eval()
    try:
        if method == "lie":
            result = diagnose_lie(model, x, group, input_action, output_action, chosen)
        else:
            result = diagnose_by_elements(model, x, group, input_action.bind(group, x), input_action,
                                          output_action, chosen, n, generator)
    finally:
        model.train(was_training)
    if not result.layers:
        raise ConfigError("none of the chosen layers ran once per forward pass; pick layers= by name")
    return result
