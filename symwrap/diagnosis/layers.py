"""Which layers a diagnosis looks at, and how a group element acts on what a layer takes and gives.

A layer's input or output is compared in the representation it is known to carry:

* escnn ``GeometricTensor`` values: their field type's own transform of the element (finite groups only);
* channels-first feature maps on a square grid (images ``(B, C, H, W)`` at full or reduced resolution): the
  input's action on every channel, as a convolution's features move with the image;
* token sequences ``(B, T, C)`` of a model of images whose last ``T − p`` tokens form a square grid (a ViT's
  patch tokens after ``p`` class or register tokens): the grid turns like the image, the ``p`` first tokens are
  left alone;
* Vector-Neuron features ``(B, C, d, ...)`` of a model of points under rotations: every channel's vector turns;
* tensors shaped like the input or like the model's output: those actions;
* anything else: assumed invariant (it should not change), shown as ``invariant?``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..actions import Action
from ..errors import ConfigError
from ..groups import Group

#: how an element acts on a captured value: ``act(g, y)`` with one element per row of ``y``
Act = Callable[[Any, torch.Tensor], torch.Tensor]
#: modules that do nothing in evaluation mode: never chosen automatically
_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
#: the most class, distillation or register tokens looked for in front of a ViT's patch grid
_MAX_PREFIX_TOKENS = 8


def choose_layers(model: nn.Module, layers: str | list[str]) -> list[tuple[str, nn.Module]]:
    """``"leaves"``: modules without submodules (escnn modules as a whole); ``"blocks"``: the model's direct
    children, with a ``Sequential`` or ``ModuleList`` child opened one level (a ViT's ``blocks.0`` …); or a list of
    submodule names. Identity and dropout modules are left out of the first two."""
    if layers == "leaves":
        chosen = _leaf_layers(model)
    elif layers == "blocks":
        chosen = []
        for name, child in model.named_children():
            if isinstance(child, (nn.Sequential, nn.ModuleList)):
                chosen.extend((f"{name}.{inner}", module) for inner, module in child.named_children())
            else:
                chosen.append((name, child))
    elif isinstance(layers, (list, tuple)):
        chosen = []
        for name in layers:
            try:
                chosen.append((name, model.get_submodule(name)))
            except AttributeError as error:
                raise ConfigError(f"layer {name!r} is not a submodule of {type(model).__name__}") from error
        return chosen
    else:
        raise ConfigError(f"layers must be 'leaves', 'blocks' or a list of submodule names; got {layers!r}")
    return [(name, module) for name, module in chosen if not isinstance(module, _PASS_THROUGH)]


def _leaf_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    chosen = []
    skip_prefixes: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(prefix + ".") for prefix in skip_prefixes):
            continue
        if type(module).__module__.split(".")[0] == "escnn" and hasattr(module, "in_type"):
            chosen.append((name, module))  # its inner torch modules are implementation details
            skip_prefixes.append(name)
        elif not any(True for _ in module.children()):
            chosen.append((name, module))
    return chosen


def repeat(g: Any, batch: int) -> Any:
    """One element ``g[:1]`` repeated for ``batch`` rows."""
    return g.expand(batch, *g.shape[1:]) if isinstance(g, torch.Tensor) else g


def tensor_of(value: Any) -> torch.Tensor | None:
    """The tensor a captured value holds (an escnn ``GeometricTensor``'s ``.tensor``, a tuple's first item)."""
    if isinstance(value, torch.Tensor):
        return value
    tensor = getattr(value, "tensor", None)
    if isinstance(tensor, torch.Tensor):
        return tensor
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def representation(value: Any, bound: Group, input_action: Action, output_action: Action, x: Any,
                   model_output: torch.Tensor | None, batch: int) -> tuple[Act | None, str]:
    """How an element acts on a captured value: ``(act, name)``, or ``(None, reason)`` when it cannot be
    compared. ``act(g, y)`` takes one element per row of ``y``."""
    tensor = tensor_of(value)
    if tensor is None or tensor.ndim == 0 or tensor.shape[0] != batch:
        return None, "not a batch"
    field_type = getattr(value, "type", None)
    if field_type is not None and hasattr(field_type, "gspace"):
        return _escnn_fields(field_type, bound)
    if model_output is not None and tensor.shape[1:] == model_output.shape[1:]:
        return (lambda g, y: output_action.act(bound, g, y)), "like the output"
    if not isinstance(x, torch.Tensor):
        return (lambda g, y: y), "invariant?"

    def like_input(g: Any, y: torch.Tensor) -> torch.Tensor:
        return input_action.act(bound, g, y)

    grid = input_action.grid_axes
    if grid and tensor.ndim == x.ndim and len(set(tensor.shape[-grid:])) == 1 and tensor.shape[-1] > 1:
        return like_input, "feature map"  # full resolution, strided, or a ViT's patch grid as a map
    if grid == 2 and x.ndim == 4 and tensor.ndim == 3:
        prefix = _patch_grid_prefix(tensor.shape[1], x.shape[-1])
        if prefix is not None:
            return _tokens(prefix, like_input), "tokens" if not prefix else f"tokens (+{prefix})"
    if tensor.shape[1:] == x.shape[1:]:
        return like_input, "like the input"
    if (not grid and bound.has_linear and not bound.has_translation and tensor.ndim >= 3
            and tensor.shape[2] == bound.dim):
        return _vector_features(bound), "vector features"
    return (lambda g, y: y), "invariant?"  # what the layer's output carries is not known: assumed invariant


def _escnn_fields(field_type: Any, bound: Group) -> tuple[Act | None, str]:
    if not bound.is_finite:
        return None, "escnn fields (continuous)"

    def act(g: Any, y: torch.Tensor) -> torch.Tensor:
        from escnn import nn as enn

        element = field_type.gspace.fibergroup.elements[int(bound.index(g[:1])[0])]
        return enn.GeometricTensor(y, field_type).transform(element).tensor

    return act, "escnn fields"


def _patch_grid_prefix(tokens: int, image_size: int) -> int | None:
    """The fewest leading tokens after which the rest form a square grid that divides the image, or None."""
    for prefix in range(min(_MAX_PREFIX_TOKENS, tokens - 4) + 1):
        side = math.isqrt(tokens - prefix)
        if side >= 2 and side * side == tokens - prefix and image_size % side == 0:
            return prefix
    return None


def _tokens(prefix: int, like_input: Act) -> Act:
    def act(g: Any, y: torch.Tensor) -> torch.Tensor:
        b, t, c = y.shape
        side = math.isqrt(t - prefix)
        grid = y[:, prefix:].reshape(b, side, side, c).permute(0, 3, 1, 2)
        moved = like_input(g, grid).permute(0, 2, 3, 1).reshape(b, side * side, c)
        return torch.cat([y[:, :prefix], moved], dim=1)

    return act


def _vector_features(bound: Group) -> Act:
    def act(g: Any, y: torch.Tensor) -> torch.Tensor:
        rotation = bound.linear_part(g, dtype=y.dtype)
        return torch.einsum("bij,bcj...->bci...", rotation, y)

    return act
