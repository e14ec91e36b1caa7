"""k transformed copies of a batch as one bigger batch: what averaging and the metrics share."""

from __future__ import annotations

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
    exhaustive_up_to: int,
    generator: torch.Generator | None = None,
) -> Copies:
    """Every element of a finite group of order at most ``exhaustive_up_to`` (copy ``i``
    gets element ``i``), otherwise ``samples`` Haar-sampled elements per input.

    Sets of different sizes (graphs) enumerate the group of the largest set, each row restricted to its
    own set (:meth:`~symwrap.groups.Group.fit_rows`): every element of each row's group appears equally
    often, so the average over the copies is exact for every row.
    """
    batch = action.batch_size(x)
    probe = action.probe(x)
    dtype = probe.dtype if torch.is_floating_point(probe) else None
    bound = action.bind(group, x)
    if bound.is_finite and bound.order <= exhaustive_up_to:
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
