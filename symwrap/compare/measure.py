"""Training one row of :func:`symwrap.compare` for its step budget and measuring it: the metric as given and
under random group elements, E′ (and E′ under each element of a finite group), inference-time ratios."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..actions import Action, group_copies
from ..actions.batching import TransformedPredictions
from ..groups import Group
from ..metrics import equivariance_error, residual_norms
from ..steps import cycle_batches, default_task_loss, run_steps
from ..timing import median_seconds

__all__ = ["MAX_ELEMENTS", "element_labels", "evaluate", "held_out_score", "inference_ratios", "per_element_errors",
           "train_steps"]

#: finite groups up to this order get E′ under each of their elements
MAX_ELEMENTS = 48

StepLoss = Callable[[int, Any, Any], dict[str, torch.Tensor]]


def train_steps(model: nn.Module, step_loss: StepLoss, loader: Iterable[Any], steps: int, lr: float, *,
                progress: bool, desc: str) -> float:
    """``steps`` Adam steps of ``model`` on ``step_loss`` (one bar labelled ``desc``); the seconds it took."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    start = time.perf_counter()
    run_steps(step_loss, cycle_batches(loader), steps, optimizer, progress=progress, desc=desc)
    model.eval()
    return time.perf_counter() - start


def task_step_loss(model: nn.Module, *, augment: tuple[Group, Action, Action, int] | None = None) -> StepLoss:
    """The step loss of a row: the strategy's own ``loss`` (or the task loss of a bare model); with ``augment``
    (group, input and output action, seed) the inputs and float targets are first moved by random elements."""
    generator = torch.Generator().manual_seed(augment[3]) if augment is not None else None

    def step_loss(step: int, x: Any, y: Any) -> dict[str, torch.Tensor]:
        if augment is not None:
            group, input_action, output_action, _ = augment
            bound = input_action.bind(group, x)
            g = bound.sample(input_action.batch_size(x), generator=generator)
            x = input_action.act(bound, g, x)
            if torch.is_floating_point(y):
                y = output_action.act(bound, g, y)
        prediction = model(x)
        if hasattr(model, "loss"):
            return model.loss(prediction, y, x)
        return {"total": default_task_loss(prediction, y)}

    return step_loss


@torch.no_grad()
def evaluate(model: nn.Module, batches: list[Any], metric: str, group: Group, input_action: Action,
             output_action: Action, seed: int) -> dict[str, Any]:
    """The metric on ``batches`` as given and moved by seeded random elements, E′ on the first batch, and (finite
    groups up to :data:`MAX_ELEMENTS`) E′ under each element on the first batch."""
    generator = torch.Generator().manual_seed(seed + 1)
    scores, moved_scores = [], []
    for x, y in batches:
        bound = input_action.bind(group, x)
        g = bound.sample(input_action.batch_size(x), generator=generator)
        moved_y = output_action.act(bound, g, y) if torch.is_floating_point(y) else y
        scores.append(score(model(x), y, metric))
        moved_scores.append(score(model(input_action.act(bound, g, x)), moved_y, metric))
    x = batches[0][0]
    error = equivariance_error(model, x, group, input=input_action, output=output_action,
                               generator=torch.Generator().manual_seed(seed + 2))
    row: dict[str, Any] = {metric: statistics.fmean(scores), f"{metric} (moved)": statistics.fmean(moved_scores),
                           "equivariance_error": error}
    per_element = per_element_errors(model, x, group, input_action, output_action)
    if per_element is not None:
        row["per_element_error"] = per_element[1]
    return row


@torch.no_grad()
def per_element_errors(model: nn.Module, x: Any, group: Group, input_action: Action, output_action: Action,
                       eps: float = 1e-12) -> tuple[list[str], list[float]] | None:
    """Labels and E′ = mean over the batch of ‖f(g·x) − g·f(x)‖ / ‖f(x)‖ for every element ``g`` of a finite
    group of order at most :data:`MAX_ELEMENTS` (in the order of ``elements()``; one model call on all copies);
    ``None`` for other groups."""
    labels = element_labels(group, input_action, x)
    if labels is None:
        return None
    copies = group_copies(input_action, group, x, samples=1, max_exhaustive_order=MAX_ELEMENTS)
    prediction = model(x)
    moved = TransformedPredictions(copies.group, copies.elements, copies.k,
                                   model(input_action.act(copies.group, copies.elements, copies.x)))
    reference = output_action.flatten(prediction).norm(dim=1).clamp_min(eps)
    errors = residual_norms(moved, prediction, output_action).reshape(copies.k, -1) / reference
    return labels, [float(e) for e in errors.mean(dim=1)]


def element_labels(group: Group, input_action: Action, x: Any) -> list[str] | None:
    """``NAME[i]`` for each element of a finite group of order at most :data:`MAX_ELEMENTS` bound to ``x``;
    ``None`` for other groups."""
    bound = input_action.bind(group, x)
    if not bound.is_finite or bound.order > MAX_ELEMENTS:
        return None
    return [f"{bound.name}[{i}]" for i in range(bound.order)]


@torch.no_grad()
def held_out_score(model: nn.Module, batches: list[Any], metric: str) -> float:
    """The metric of ``model`` (in eval mode) on ``batches`` as given, averaged over them."""
    model.eval()
    return statistics.fmean(score(model(x), y, metric) for x, y in batches)


def score(prediction: torch.Tensor, y: torch.Tensor, metric: str) -> float:
    """Accuracy of the arg-max against integer labels, or the mean squared error."""
    if metric == "accuracy":
        return float((prediction.argmax(dim=1) == y).double().mean())
    return float(((prediction - y) ** 2).mean())


def inference_ratios(models: dict[str, nn.Module], x: Any, base: str, rounds: int = 15,
                     min_sample_seconds: float = 0.02) -> dict[str, float]:
    """Each model's median inference time on ``x`` over the ``base`` model's (in eval mode).

    :func:`symwrap.timing.median_seconds` after a warm-up call of each model: ``rounds`` interleaved samples of
    every model, each the mean of as many calls as last about ``min_sample_seconds``.
    """
    for model in models.values():
        model.eval()
    functions = {name: (lambda model=model: model(copy.copy(x))) for name, model in models.items()}
    medians = median_seconds(functions, rounds=rounds, warmup=1, min_sample_seconds=min_sample_seconds)
    reference = max(medians[base], 1e-9)
    return {name: value / reference for name, value in medians.items()}
