"""Random inputs shaped like a batch, for comparing student and teacher off the data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ...actions import Action
from ...errors import ConfigError


def gaussian_like(action: Action, x: Any, scale: float = 1.0, *, fields: Iterable[str] | None = None,
                  generator: torch.Generator | None = None) -> Any:
    """Random inputs with the shape of ``x``: every channel drawn from N(μ, (scale·σ)²), with the channel's
    mean μ and standard deviation σ over the batch.

    The channel axis is the action's (:attr:`~symwrap.actions.Action.channel_axis`: dim 1 of images, the last
    dim of other tensors). For dict inputs, the ``fields`` are replaced (default: every floating-point field
    whose values the group changes, not only reorders: not charges or atom types); the others are the data's.
    """
    field_actions = getattr(action, "fields", None)
    if isinstance(field_actions, Mapping) and isinstance(x, Mapping):
        chosen = set(fields) if fields is not None else {
            key for key, field in field_actions.items()
            if torch.is_tensor(x[key]) and torch.is_floating_point(x[key]) and not field.values_fixed
        }
        unknown = sorted(chosen - set(field_actions))
        if unknown:
            raise ConfigError(f"gaussian_fields {unknown} are not fields of the input {sorted(field_actions)}")
        return {key: _gaussian_tensor(x[key], scale, field.channel_axis, generator, key)
                if key in chosen else x[key] for key, field in field_actions.items()}
    if not isinstance(x, torch.Tensor):
        raise ConfigError(
            f"random (gaussian) inputs are drawn for tensors and dicts of tensors; got {type(x).__name__}. "
            "Use inputs='data'."
        )
    return _gaussian_tensor(x, scale, action.channel_axis, generator)


def _gaussian_tensor(x: torch.Tensor, scale: float, channel_dim: int, generator: torch.Generator | None,
                     name: str = "input") -> torch.Tensor:
    if not torch.is_floating_point(x):
        raise ConfigError(f"random inputs replace floating-point data; {name} has dtype {x.dtype}")
    if x.ndim < 2:
        channel_dims: tuple[int, ...] = ()
    else:
        channel_dims = (channel_dim % x.ndim,)
    reduce = tuple(d for d in range(x.ndim) if d not in channel_dims)
    data = x.detach()
    mean = data.mean(dim=reduce, keepdim=True)
    std = data.std(dim=reduce, keepdim=True, unbiased=False) if data.numel() > 1 else torch.ones_like(mean)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return mean + scale * std * noise
