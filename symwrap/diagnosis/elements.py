"""Per-layer equivariance errors under group elements: the model runs on x and on g·x with forward hooks, and
each layer's input and output on g·x are compared with g acting on them on x (see :mod:`.layers`).

A layer's ``contribution`` is the error of its output minus the error of its input (clamped at 0): a layer that
keeps the symmetry of what it is given contributes ~0 even deep inside a broken model, and the layer that breaks
it first stands out. Finite groups of at most 16 elements are checked on every element, others on ``n`` samples.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ..actions import Action
from ..groups import Group
from .layers import repeat, representation, tensor_of
from .report import bar_chart


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
    """The layers in the order they ran, and the model's own relative equivariance error."""

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
        lines = [f"{'layer':<{width}}  {'module':<22} {'compared as':<16} {'input E':>9} {'output E':>9} "
                 f"{'added':>9}"]
        for r in rows:
            lines.append(f"{r.name:<{width}}  {r.module[:22]:<22} {r.representation:<16} {r.input_error:>9.2e} "
                         f"{r.output_error:>9.2e} {r.contribution:>9.2e}")
        lines.append(f"model under {self.group}: relative equivariance error {self.model_error:.2e}")
        return "\n".join(lines)

    def plot(self, path: str, top: int = 20, title: str | None = None) -> str:
        """A bar chart of the largest contributions, written to ``path`` (PNG); needs matplotlib."""
        rows = self.ranked()[:top]
        return bar_chart([r.name for r in rows], [r.contribution for r in rows],
                         f"added relative equivariance error under {self.group}", path, title)


def diagnose_by_elements(model: nn.Module, x: Any, group: Group, bound: Group, input_action: Action,
                         output_action: Action, chosen: list[tuple[str, nn.Module]], n: int,
                         generator: torch.Generator | None) -> Diagnosis:
    """The per-layer errors (see the module docstring); the arguments are checked by ``diagnose``."""
    batch, probe = input_action.batch_size(x), input_action.probe(x)
    elements = _elements(bound, n, generator, probe)
    captured: dict[str, list[tuple[Any, Any]]] = {name: [] for name, _ in chosen}
    handles = [module.register_forward_hook(_recorder(captured[name])) for name, module in chosen]
    try:
        with torch.no_grad():
            reference = model(x)
            moved_outputs = [model(input_action.act(bound, repeat(g, batch), x)) for g in elements]
    finally:
        for handle in handles:
            handle.remove()
    output = tensor_of(reference)
    reports = []
    for name, module in chosen:
        records = captured[name]
        if len(records) != len(elements) + 1:
            continue  # the layer did not run once per forward (unused, or called several times)
        (in_ref, out_ref), moved = records[0], records[1:]
        errors = []
        for position in (0, 1):
            act, compared_as = representation((in_ref, out_ref)[position], bound, input_action, output_action, x,
                                              output, batch)
            error = float("nan") if act is None else _relative(
                tensor_of((in_ref, out_ref)[position]), [tensor_of(r[position]) for r in moved], elements, act,
                lambda y: y.reshape(y.shape[0], -1))
            errors.append(error)
        reports.append(LayerDiagnosis(name, type(module).__name__, compared_as, errors[0], errors[1]))
    model_error = _relative(reference, moved_outputs, elements, lambda g, y: output_action.act(bound, g, y),
                            output_action.flatten)
    return Diagnosis(group.name, reports, model_error)


def _elements(bound: Group, n: int, generator: torch.Generator | None, probe: torch.Tensor) -> list[Any]:
    dtype = probe.dtype if torch.is_floating_point(probe) else None
    if bound.is_finite and bound.order <= 16:
        all_elements = bound.elements(device=probe.device, dtype=dtype)
        return [all_elements[i:i + 1] for i in range(bound.order)]
    sampled = bound.sample(n, generator=generator, device=probe.device, dtype=dtype)
    return [sampled[i:i + 1] for i in range(n)]


def _recorder(store: list[tuple[Any, Any]]):
    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        store.append((args[0] if args else None, output))

    return hook


def _relative(reference: Any, moved: list[Any], elements: list[Any], act, flatten) -> float:
    """mean_g ‖f(g·x) − g·f(x)‖ / ‖f(x)‖ over the batch and the elements."""
    errors = []
    base = flatten(reference).float()
    norm = base.norm(dim=1).clamp_min(1e-12)
    for g, value in zip(elements, moved):
        expected = flatten(act(repeat(g, base.shape[0]), reference))
        errors.append(((flatten(value).float() - expected.float()).norm(dim=1) / norm).mean())
    return float(torch.stack(errors).mean())
