"""Training terms more than one strategy uses: the equivariance loss of REMUL, which
symmetry cloning also keeps a symmetry with.

``f(g·x)`` is compared with ``g·y``, where ``y`` is a label (label-anchored, as in REMUL)
or the model's own prediction ``f(x)`` (self-consistency, which needs no labels). The
``num_samples`` transformed copies of a batch are one model call on a bigger batch.
"""

from __future__ import annotations

import math
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
from .errors import ConfigError, InputDtypeError, ShapeError


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


def gaussian_nll(
    mean: torch.Tensor,
    std: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mean negative log-likelihood of ``y`` under independent Gaussians ``N(mean, std²)``.

    Args:
        mean: predicted means, the shape of ``y``.
        std: predicted standard deviations (> 0 everywhere), broadcastable to ``y``.
        y: observations.
        mask: optional bool tensor whose shape is the leading dimensions of ``y`` (e.g. (B, N) for
            ``y`` of shape (B, N, 1)); only entries where it is ``True`` count.

    Returns:
        A scalar: the mean over the (selected) entries, differentiable in ``mean`` and ``std``.

    Raises:
        ShapeError: shapes that do not match, or a mask that selects nothing.
        InputDtypeError: a non-floating-point ``mean``, ``std`` or ``y``, or a mask that is not bool.
        ConfigError: a ``std`` that is not > 0 everywhere (or is NaN).
    """
    for name, value in (("mean", mean), ("std", std), ("y", y)):
        if not isinstance(value, torch.Tensor):
            raise ShapeError(f"gaussian_nll: {name} must be a tensor; got {type(value).__name__}")
        if not value.is_floating_point():
            raise InputDtypeError(f"gaussian_nll: {name} must be a floating-point tensor; got {value.dtype}")
    if mean.shape != y.shape:
        raise ShapeError(f"gaussian_nll: mean must have y's shape {tuple(y.shape)}; got {tuple(mean.shape)}")
    try:
        broadcast = torch.broadcast_shapes(std.shape, y.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != y.shape:
        raise ShapeError(f"gaussian_nll: std must broadcast to y's shape {tuple(y.shape)}; got {tuple(std.shape)}")
    if not bool((std > 0).all()):
        raise ConfigError(f"gaussian_nll: std must be > 0 everywhere; got min {std.min().item()!r}")
    nll = 0.5 * math.log(2 * math.pi) + std.log() + 0.5 * ((y - mean) / std).square()
    nll = nll.expand(y.shape)
    if mask is None:
        return nll.mean()
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        given = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InputDtypeError(f"gaussian_nll: mask must be a bool tensor; got {given}")
    if mask.shape != y.shape[: mask.ndim]:
        raise ShapeError(
            f"gaussian_nll: mask must have the leading dimensions of y's shape {tuple(y.shape)}; "
            f"got {tuple(mask.shape)}"
        )
    weight = mask.reshape(*mask.shape, *(1,) * (y.ndim - mask.ndim)).expand(y.shape)
    count = weight.sum()
    if count == 0:
        raise ShapeError("gaussian_nll: mask selects no entries; expected at least one True")
    return torch.where(weight, nll, 0.0).sum() / count
