"""Training terms more than one strategy uses: the equivariance loss of REMUL, which
symmetry cloning also keeps a symmetry with.

``f(g·x)`` is compared with ``g·y``, where ``y`` is a label (label-anchored, as in REMUL)
or the model's own prediction ``f(x)`` (self-consistency, which needs no labels). The
``num_samples`` transformed copies of a batch are one model call on a bigger batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from .actions import Action
from .actions.batching import (  # noqa: F401 - defined here before; batching helpers live with the actions
    TransformedPredictions,
    concat_batches,
    concatenable,
    predict_transformed,
    predict_transformed_many,
    split_outputs,
)


def equivariance_loss(
    moved: TransformedPredictions,
    target: Any,
    output_action: Action,
    distance: Callable[[Any, Any], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``distance(f(g·x), g·target)`` averaged over the batch and the sampled elements.

    ``target`` has the model's output layout (a label or the prediction ``f(x)``); it is
    repeated over the copies and moved by each copy's element. The default distance is the
    mean squared error over the flattened outputs.
    """
    expected = output_action.act(moved.group, moved.elements, output_action.repeat(target, moved.k))
    if distance is not None:
        return distance(moved.predictions, expected)
    return F.mse_loss(output_action.flatten(moved.predictions), output_action.flatten(expected))


def __getattr__(name: str) -> Any:
    # metric code moved to symwrap.metrics; imported lazily (metrics imports this module's neighbours)
    if name in ("residual_norms", "errors_from_copies"):
        from . import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
