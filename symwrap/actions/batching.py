"""k transformed copies of a batch as one bigger batch, and the model run on them in one call: what averaging,
the equivariance losses and the metrics share."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

from ..errors import ConfigError
from ..groups import Element, Group, repeat_each
from .base import Action


class Copies(NamedTuple):
    """``x`` repeated ``k`` times (copy-major) with one group element per repeated sample."""

    group: Group  # the group bound to the repeated batch
    x: Any
    elements: Element
    k: int


def group_copies(
    action: Action,
    group: Group,
    x: Any,
    *,
    samples: int,
    max_exhaustive_order: int | None = None,
    generator: torch.Generator | None = None,
    exhaustive_up_to: int | None = None,
) -> Copies:
    """Every element of a finite group of order at most ``max_exhaustive_order`` (copy ``i``
    gets element ``i``), otherwise ``samples`` Haar-sampled elements per input. (``exhaustive_up_to`` is
    the deprecated name of ``max_exhaustive_order``.)

    Sets of different sizes (graphs) enumerate the group of the largest set, each row restricted to its
    own set (:meth:`~symwrap.groups.Group.fit_rows`): every element of each row's group appears equally
    often, so the average over the copies is exact for every row.
    """
    if exhaustive_up_to is not None:
        warnings.warn("group_copies(exhaustive_up_to=) is deprecated; use max_exhaustive_order=", DeprecationWarning,
                      stacklevel=2)
        max_exhaustive_order = exhaustive_up_to if max_exhaustive_order is None else max_exhaustive_order
    if max_exhaustive_order is None:
        raise ConfigError("group_copies needs max_exhaustive_order= (0 to always sample)")
    batch = action.batch_size(x)
    probe = action.probe(x)
    dtype = probe.dtype if torch.is_floating_point(probe) else None
    bound = action.bind(group, x)
    if bound.is_finite and bound.order <= max_exhaustive_order:
        k = bound.order
        x_rep = action.repeat(x, k)
        bound_rep = action.bind(group, x_rep)
        elements = bound_rep.fit_rows(repeat_each(bound.elements(device=probe.device, dtype=dtype), batch))
        return Copies(bound_rep, x_rep, elements, k)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"the number of sampled group elements must be an integer >= 1; got {samples!r}")
    x_rep = action.repeat(x, samples)
    bound = action.bind(group, x_rep)
    elements = bound.sample(samples * batch, generator=generator, device=probe.device, dtype=dtype)
    return Copies(bound, x_rep, elements, samples)


def mix_inverse_copies(action: Action, copies: Copies, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_i weights[b, i] · (g_i⁻¹·x_b)`` over the ``k`` copies of a tensor batch (copy-major).

    With weights that are one-hot in value and softmax in gradient, this is the chosen copy
    ``g⁻¹·x`` carrying a straight-through gradient to the scores of every element.
    """
    moved = action.act(copies.group, copies.group.inverse(copies.elements), copies.x)  # copy i is g_i⁻¹·x
    stacked = moved.reshape(copies.k, -1, *moved.shape[1:])
    return torch.einsum("bk,kb...->b...", weights.to(moved.dtype), stacked)


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
    bound, x_rep, g, k = group_copies(input_action, group, x, samples=num_samples, max_exhaustive_order=0,
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
    copies = [group_copies(input_action, g, x, samples=num_samples, max_exhaustive_order=0, generator=generator)
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
