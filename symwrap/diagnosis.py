"""Where inside a model the symmetry breaks: the equivariance error of every layer's output, and how much each
layer adds to the error of what it was given.

For a group element g, the model runs on x and on g·x with forward hooks on its layers. A layer's output on g·x
is compared with g acting on its output on x, in the representation the output is known to carry:

* escnn ``GeometricTensor`` outputs: their field type's own transform of the element (regular fields rotate and
  permute their channels);
* channels-first feature maps on a square grid (images ``(B, C, H, W)`` under rotations and flips, at full or
  reduced resolution, a ViT's patch grid): the input's action on every channel, as a convolution's features move
  with the image;
* tensors shaped like the input (the same layout), or like the model's output: those actions;
* anything else: assumed invariant (it should not change), shown as ``invariant?`` in the table.

A layer's ``contribution`` is the error of its output minus the error of its input (clamped at 0): a layer that
keeps the symmetry of what it is given contributes ~0 even deep inside a broken model, and the layer that breaks
it first stands out. Finite groups are checked on every element; larger or continuous groups on ``n`` sampled
elements.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .actions import ActionSpec, get_action
from .errors import ConfigError
from .groups import Group, get_group

__all__ = ["LayerDiagnosis", "Diagnosis", "diagnose"]


@dataclasses.dataclass(frozen=True)
class LayerDiagnosis:
    """One layer: the relative equivariance errors of its input and output, how its output was compared, and
    its contribution (output error minus input error, at least 0)."""

    name: str
    module: str
    representation: str
    input_error: float
    output_error: float

    @property
    def contribution(self) -> float:
        return max(0.0, self.output_error - self.input_error)


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """The layers in the order they ran, and the model's own error."""

    group: str
    layers: list[LayerDiagnosis]
    model_error: float

    def ranked(self) -> list[LayerDiagnosis]:
        """The layers by contribution, largest first."""
        return sorted(self.layers, key=lambda layer: layer.contribution, reverse=True)

    def table(self, top: int | None = None) -> str:
        """A plain-text table of the layers by contribution."""
        rows = self.ranked()[:top] if top else self.ranked()
        width = max([len(r.name) for r in rows] + [5])
        lines = [f"{'layer':<{width}}  {'module':<22} {'compared as':<14} {'input E':>9} {'output E':>9} "
                 f"{'added':>9}"]
        for r in rows:
            lines.append(f"{r.name:<{width}}  {r.module[:22]:<22} {r.representation:<14} {r.input_error:>9.2e} "
                         f"{r.output_error:>9.2e} {r.contribution:>9.2e}")
        lines.append(f"model under {self.group}: relative equivariance error {self.model_error:.2e}")
        return "\n".join(lines)

    def plot(self, path: str, top: int = 20) -> str:
        """A bar chart of the largest contributions, written to ``path`` (PNG); needs matplotlib."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.ranked()[:top][::-1]
        figure, axis = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
        axis.barh([r.name for r in rows], [r.contribution for r in rows])
        axis.set_xlabel(f"added relative equivariance error under {self.group}")
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        return path


def _leaf_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules without submodules that hold parameters or buffers, plus escnn modules (whose inner torch
    modules are implementation details)."""
    chosen = []
    skip_prefixes: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(prefix + ".") for prefix in skip_prefixes):
            continue
        if type(module).__module__.split(".")[0] == "escnn" and hasattr(module, "in_type"):
            chosen.append((name, module))
            skip_prefixes.append(name)
        elif not any(True for _ in module.children()):
            chosen.append((name, module))
    return chosen


def diagnose(
    model: Callable[[Any], Any] | nn.Module,
    x: Any,
    group: str | Group,
    *,
    input: ActionSpec,
    output: ActionSpec = "invariant",
    layers: str | list[str] = "leaves",
    n: int = 8,
    generator: torch.Generator | None = None,
) -> Diagnosis:
    """Per-layer equivariance errors of ``model`` on ``x`` under ``group`` (see the module docstring).

    Args:
        layers: ``"leaves"`` (modules without submodules, and escnn modules as a whole), ``"blocks"`` (the
            model's direct children), or a list of submodule names.
        n: sampled elements for groups with more than 16 elements or infinitely many.

    Raises:
        ConfigError: ``model`` is not an ``nn.Module``, a layer name is unknown, or no chosen layer ran.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"diagnose needs an nn.Module to hook its layers; got {type(model).__name__}")
    group = get_group(group) if isinstance(group, str) else group
    input_action, output_action = get_action(input), get_action(output)
    chosen = _choose(model, layers)
    bound = input_action.bind(group, x)
    batch, probe = input_action.batch_size(x), input_action.probe(x)
    elements = _elements(bound, n, generator, probe)
    captured: dict[str, list[tuple[Any, Any]]] = {name: [] for name, _ in chosen}
    handles = [module.register_forward_hook(_recorder(captured[name])) for name, module in chosen]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            reference = model(x)
            moved_outputs = []
            for g in elements:
                moved_outputs.append(model(input_action.act(bound, _repeat(g, batch), x)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    reports = []
    for name, module in chosen:
        records = captured[name]
        if len(records) != len(elements) + 1:
            continue  # the layer did not run once per forward (unused, or called several times)
        (in_ref, out_ref), moved = records[0], records[1:]
        in_error, _ = _error(in_ref, [r[0] for r in moved], elements, bound, input_action, x, batch)
        out_error, representation = _error(out_ref, [r[1] for r in moved], elements, bound, input_action, x,
                                           batch)
        reports.append(LayerDiagnosis(name, type(module).__name__, representation, in_error, out_error))
    if not reports:
        raise ConfigError("none of the chosen layers ran once per forward pass; pick layers= by name")
    model_error = _relative(reference, moved_outputs, elements, lambda g, y: output_action.act(bound, g, y),
                            output_action.flatten)
    return Diagnosis(group.name, reports, model_error)


def _choose(model: nn.Module, layers: str | list[str]) -> list[tuple[str, nn.Module]]:
    if layers == "leaves":
        return _leaf_layers(model)
    if layers == "blocks":
        return list(model.named_children())
    if isinstance(layers, (list, tuple)):
        chosen = []
        for name in layers:
            try:
                chosen.append((name, model.get_submodule(name)))
            except AttributeError as error:
                raise ConfigError(f"layer {name!r} is not a submodule of {type(model).__name__}") from error
        return chosen
    raise ConfigError(f"layers must be 'leaves', 'blocks' or a list of submodule names; got {layers!r}")


def _elements(bound: Group, n: int, generator: torch.Generator | None, probe: torch.Tensor) -> list[Any]:
    dtype = probe.dtype if torch.is_floating_point(probe) else None
    if bound.is_finite and bound.order <= 16:
        all_elements = bound.elements(device=probe.device, dtype=dtype)
        return [all_elements[i:i + 1] for i in range(bound.order)]
    sampled = bound.sample(n, generator=generator, device=probe.device, dtype=dtype)
    return [sampled[i:i + 1] for i in range(n)]


def _repeat(g: Any, batch: int) -> Any:
    return g.expand(batch, *g.shape[1:]) if isinstance(g, torch.Tensor) else g


def _recorder(store: list[tuple[Any, Any]]):
    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        store.append((args[0] if args else None, output))

    return hook


def _tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    tensor = getattr(value, "tensor", None)
    if isinstance(tensor, torch.Tensor):
        return tensor
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def _error(reference: Any, moved: list[Any], elements: list[Any], bound: Group, input_action: Any, x: Any,
           batch: int) -> tuple[float, str]:
    """The relative error of one captured value, and how it was compared."""
    act, representation = _representation(reference, bound, input_action, x, batch)
    if act is None:
        return float("nan"), representation
    return _relative(_tensor(reference), [_tensor(m) for m in moved], elements, act,
                     lambda y: y.reshape(y.shape[0], -1)), representation


def _representation(value: Any, bound: Group, input_action: Any, x: Any, batch: int):
    """How ``g`` acts on a captured value: ``(act, name)``, or ``(None, reason)`` when it cannot be compared."""
    tensor = _tensor(value)
    if tensor is None or tensor.ndim == 0 or tensor.shape[0] != batch:
        return None, "not a batch"
    field_type = getattr(value, "type", None)
    if field_type is not None and hasattr(field_type, "gspace"):
        def act_fields(g: Any, y: torch.Tensor) -> torch.Tensor:
            from escnn import nn as enn

            element = field_type.gspace.fibergroup.elements[int(bound.index(g[:1])[0])]
            return enn.GeometricTensor(y, field_type).transform(element).tensor

        if bound.is_finite:
            return act_fields, "escnn fields"
        return None, "escnn fields (continuous)"
    if not isinstance(x, torch.Tensor):
        return (lambda g, y: y), "invariant?"
    grid = input_action.grid_axes
    if grid and tensor.ndim == x.ndim and len(set(tensor.shape[-grid:])) == 1 and tensor.shape[-1] > 1:
        # a channels-first map on a square grid (full resolution, strided, or a ViT's patch grid) moves like the
        # image: its grid turns with it
        return (lambda g, y: input_action.act(bound, _repeat(g, y.shape[0]), y)), "feature map"
    if tensor.shape[1:] == x.shape[1:]:
        return (lambda g, y: input_action.act(bound, _repeat(g, y.shape[0]), y)), "like the input"
    return (lambda g, y: y), "invariant?"  # what the layer's output carries is not known: assumed invariant


def _relative(reference: Any, moved: list[Any], elements: list[Any], act, flatten) -> float:
    """mean_g ‖f(g·x) − g·f(x)‖ / ‖f(x)‖ over the batch and the elements."""
    errors = []
    base = flatten(reference).float()
    norm = base.norm(dim=1).clamp_min(1e-12)
    for g, value in zip(elements, moved):
        expected = flatten(act(_repeat(g, base.shape[0]), reference))
        errors.append(((flatten(value).float() - expected.float()).norm(dim=1) / norm).mean())
    return float(torch.stack(errors).mean())
