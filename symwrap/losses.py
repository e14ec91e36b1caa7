"""Training terms more than one strategy uses: the equivariance loss of REMUL, which
symmetry cloning also keeps a symmetry with.

``f(g·x)`` is compared with ``g·y``, where ``y`` is a label (label-anchored, as in REMUL)
or the model's own prediction ``f(x)`` (self-consistency, which needs no labels). The
``num_samples`` transformed copies of a batch are one model call on a bigger batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from .actions import Action, group_copies
from .groups import Element, Group


class TransformedPredictions(NamedTuple):
    """``f(g·x)`` for ``k`` sampled elements per input (copy-major, k·B rows)."""

    group: Group  # the group bound to the repeated batch
    elements: Element
    k: int
    predictions: Any


def predict_transformed(
    model: Callable[[Any], Any],
    x: Any,
    group: Group,
    input_action: Action,
    *,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> TransformedPredictions:
    """``model`` on ``num_samples`` Haar-sampled transformations of every input, in one call."""
    bound, x_rep, g, k = group_copies(input_action, group, x, samples=num_samples, exhaustive_up_to=0,
                                      generator=generator)
    return TransformedPredictions(bound, g, k, model(input_action.act(bound, g, x_rep)))


def predict_transformed_many(
    model: Callable[[Any], Any],
    x: Any,
    groups: Sequence[Group],
    input_action: Action,
    *,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> list[TransformedPredictions]:
    """:func:`predict_transformed` for several groups; one model call for all of them when the
    input is a tensor or a dict of tensors (their copies are concatenated along the batch)."""
    if len(groups) == 1 or not concatenable(x):
        return [predict_transformed(model, x, g, input_action, num_samples=num_samples, generator=generator)
                for g in groups]
    copies = [group_copies(input_action, g, x, samples=num_samples, exhaustive_up_to=0, generator=generator)
              for g in groups]
    moved = [input_action.act(c.group, c.elements, c.x) for c in copies]
    outputs = model(concat_batches(moved))
    sizes = [input_action.batch_size(m) for m in moved]
    return [TransformedPredictions(c.group, c.elements, c.k, part)
            for c, part in zip(copies, split_outputs(outputs, sizes))]


def concatenable(x: Any) -> bool:
    """Whether batches like ``x`` can be joined into one model call (tensors, dicts of tensors)."""
    return isinstance(x, torch.Tensor) or (
        isinstance(x, Mapping) and all(isinstance(v, torch.Tensor) for v in x.values())
    )


def concat_batches(batches: list[Any]) -> Any:
    """The batches joined along the batch dimension."""
    if isinstance(batches[0], Mapping):
        return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
    return torch.cat(batches)


def split_outputs(outputs: Any, sizes: list[int]) -> list[Any]:
    """Undo :func:`concat_batches` on model outputs (tensors or dicts of tensors)."""
    if isinstance(outputs, Mapping):
        parts = {key: torch.split(value, sizes) for key, value in outputs.items()}
        return [{key: parts[key][i] for key in outputs} for i in range(len(sizes))]
    return list(torch.split(outputs, sizes))


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


def residual_norms(moved: TransformedPredictions, prediction: Any, output_action: Action) -> torch.Tensor:
    """‖f(g·x) − g·f(x)‖ per transformed copy, ``(k·B,)`` copy-major, from predictions already made."""
    expected = output_action.act(moved.group, moved.elements, output_action.repeat(prediction, moved.k))
    return (output_action.flatten(moved.predictions) - output_action.flatten(expected)).norm(dim=1)


@torch.no_grad()
def errors_from_copies(
    moved: TransformedPredictions, prediction: Any, output_action: Action, eps: float = 1e-12
) -> dict[str, float]:
    """Both relative equivariance errors of a batch, from predictions already made (no model call).

    ``relative`` is E′ = mean_g ‖f(g·x) − g·f(x)‖ / ‖f(x)‖; ``averaged`` is
    E = ‖mean_g g⁻¹·f(g·x) − f(x)‖ / ‖f(x)‖ (REMUL's two metrics), both averaged over the batch.
    """
    k = moved.k
    flat = output_action.flatten(prediction)
    reference = flat.norm(dim=1).clamp_min(eps)
    relative = residual_norms(moved, prediction, output_action).reshape(k, -1) / reference
    undone = output_action.act(moved.group, moved.group.inverse(moved.elements), moved.predictions)
    averaged = (output_action.flatten(output_action.mean(undone, k)) - flat).norm(dim=1) / reference
    return {"relative": float(relative.mean()), "averaged": float(averaged.mean())}
