"""The layer-wise Lie derivative (Gruver et al., "The Lie Derivative for Measuring Learned Equivariance",
ICLR 2023) for continuous groups.

For a generator A of the group's Lie algebra and g_t = exp(tA), the model's Lie derivative is
``L f(x) = d/dt ρ_out(g_t)⁻¹ f(ρ_in(g_t) x)`` at t = 0 (:func:`symwrap.metrics.lie_derivatives`). For a chain
``f = f_L ∘ … ∘ f_1`` with features ``h_k`` that carry representations ``ρ_k`` (see :mod:`.layers`), layer k's own
Lie derivative ``L_k = d/dt ρ_k(g_t)⁻¹ f_k(ρ_{k−1}(g_t) h_{k−1})`` is what it breaks of the symmetry of what it is
given, and its contribution to the output is ``C_k = J_{>k} L_k``, pushed through the layers after it. The
contributions telescope: ``Σ_k C_k = L f`` exactly when the chosen layers are the whole chain; what the model does
between the chosen layers (a ViT adding its position embedding) is the remainder, reported as ``unattributed``.

Each ``C_k`` is one forward-mode derivative (``torch.func.jvp``) of the model in t, with a forward hook replacing
layer k's output by ``ρ_k(g_t)⁻¹ f_k(ρ_{k−1}(g_t) h_{k−1})``; every generator and input goes in one batch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from ..actions import Action
from ..groups import Group
from ..metrics import lie_derivatives
from .layers import Act, representation, tensor_of
from .report import bar_chart


@dataclasses.dataclass(frozen=True)
class LieLayerDiagnosis:
    """One layer's part of the model's Lie derivative.

    Attributes:
        contribution: mean over inputs and generators of ``‖C_k‖ / ‖f(x)‖`` (the layer's own Lie derivative
            pushed to the output), NaN when how its input or output transforms is not known.
        share: ``Σ ⟨C_k, L f⟩ / Σ ‖L f‖²`` over inputs and generators: the signed fraction of the total the
            layer explains (the shares and the unattributed share sum to 1); NaN for a model with no Lie
            derivative.
        vector: ``C_k`` itself, ``(m·B, D)``, generator-major as :func:`symwrap.metrics.lie_derivatives`.
    """

    name: str
    module: str
    representation: str
    contribution: float
    share: float
    vector: torch.Tensor = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class LieDiagnosis:
    """The layers in the order they ran, the model's Lie derivative (``total``, as
    :func:`symwrap.metrics.lie_derivative`) and the part no chosen layer explains (``unattributed``, the same
    relative norm of ``L f − Σ_k C_k``)."""

    group: str
    layers: list[LieLayerDiagnosis]
    total: float
    unattributed: float
    derivative: torch.Tensor = dataclasses.field(repr=False, compare=False)

    @property
    def model_error(self) -> float:
        """The model's relative Lie derivative (the name :class:`Diagnosis` gives its model-level number)."""
        return self.total

    def ranked(self) -> list[LieLayerDiagnosis]:
        """The layers by contribution, largest first (unknown ones last)."""
        return sorted(self.layers, key=lambda layer: -math.inf if math.isnan(layer.contribution)
                      else layer.contribution, reverse=True)

    def table(self, top: int | None = None) -> str:
        """A plain-text table of the layers by contribution, then the remainder and the total."""
        rows = self.ranked()[:top] if top else self.ranked()
        width = max([len(r.name) for r in rows] + [22])
        lines = [f"{'layer':<{width}}  {'module':<22} {'compared as':<16} {'Lie deriv.':>10} {'share':>7}"]
        for r in rows:
            lines.append(f"{r.name:<{width}}  {r.module[:22]:<22} {r.representation:<16} {r.contribution:>10.2e} "
                         f"{r.share:>7.1%}")
        shares = [r.share for r in self.layers if not math.isnan(r.share)]
        rest = 1 - sum(shares) if shares else math.nan
        lines.append(f"{'(between the layers)':<{width}}  {'':<22} {'':<16} {self.unattributed:>10.2e} {rest:>7.1%}")
        lines.append(f"model under {self.group}: relative Lie derivative {self.total:.2e}")
        return "\n".join(lines)

    def plot(self, path: str, top: int = 20, title: str | None = None) -> str:
        """A bar chart of the largest contributions, written to ``path`` (PNG); needs matplotlib."""
        rows = [r for r in self.ranked() if not math.isnan(r.contribution)][:top]
        return bar_chart([r.name for r in rows], [r.contribution for r in rows],
                         f"layer's relative Lie derivative at the output under {self.group}", path, title)


def diagnose_lie(model: nn.Module, x: Any, group: Group, input_action: Action, output_action: Action,
                 chosen: list[tuple[str, nn.Module]], eps: float = 1e-12) -> LieDiagnosis:
    """The layer-wise Lie derivative (see the module docstring); the arguments are checked by ``diagnose``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    total, reference = lie_derivatives(model, x, group, input=input_action, output=output_action)
    input_action, output_action = input_action.differentiable(), output_action.differentiable()
    probe = input_action.probe(x)
    basis = group.lie_algebra(device=probe.device, dtype=probe.dtype)
    m = basis.shape[0]
    x_rep = input_action.repeat(x, m)
    bound = input_action.bind(group, x_rep)
    directions = basis.repeat_interleave(input_action.batch_size(x), dim=0)
    rows = input_action.batch_size(x_rep)
    captured = _capture(model, x_rep, chosen)
    output = tensor_of(captured.pop("")[1])
    denominator = reference.clamp_min(eps)
    total_square = float((total * total).sum())
    reports, explained = [], torch.zeros_like(total)
    for name, module in chosen:
        if name not in captured:
            continue  # the layer did not run exactly once
        layer_input, layer_output = captured[name]
        act_in, _ = representation(layer_input, bound, input_action, output_action, x_rep, output, rows)
        act_out, compared_as = representation(layer_output, bound, input_action, output_action, x_rep, output, rows)
        if act_in is None or act_out is None or not isinstance(layer_output, torch.Tensor):
            vector = torch.full_like(total, math.nan)
        else:
            with sdpa_kernel(SDPBackend.MATH):
                vector = _pushed_forward(model, module, x_rep, bound, directions, act_in, act_out,
                                         output_action)
            explained = explained + vector
        share = float((vector * total).sum()) / total_square if total_square > eps else math.nan
        reports.append(LieLayerDiagnosis(name, type(module).__name__, compared_as,
                                         float((vector.norm(dim=1) / denominator).mean()), share, vector))
    relative = float((total.norm(dim=1) / denominator).mean())
    unattributed = float(((total - explained).norm(dim=1) / denominator).mean())
    return LieDiagnosis(group.name, reports, relative, unattributed, total)


def _capture(model: nn.Module, x: Any, chosen: list[tuple[str, nn.Module]]) -> dict[str, tuple[Any, Any]]:
    """Each chosen layer's first input and output on ``x`` (layers that did not run once are left out), and
    the model's output under ``""``."""
    records: dict[str, list[tuple[Any, Any]]] = {name: [] for name, _ in chosen}

    def recorder(name: str):
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            records[name].append((args[0] if args else None, output))

        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in chosen]
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    captured = {name: found[0] for name, found in records.items() if len(found) == 1}
    captured[""] = (None, output)
    return captured


def _pushed_forward(model: nn.Module, module: nn.Module, x: Any, bound: Group, directions: torch.Tensor,
                    act_in: Act, act_out: Act, output_action: Action) -> torch.Tensor:
    """``d/dt f(x)`` at t = 0 with ``module``'s output replaced by ``ρ_out(g_t)⁻¹ module(ρ_in(g_t) h)``: the
    layer's own Lie derivative carried to the model's output."""
    state: dict[str, Any] = {"inside": False}

    def hook(layer: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        if state["inside"]:
            return None  # the call below, not the model's
        t = state["t"]
        g = bound.exp(t.reshape(-1, *([1] * (directions.ndim - 1))) * directions)
        state["inside"] = True
        try:
            moved = layer(act_in(g, args[0]), *args[1:], **kwargs)
        finally:
            state["inside"] = False
        return act_out(bound.inverse(g), moved)

    def transformed(t: torch.Tensor) -> torch.Tensor:
        state["t"] = t
        return output_action.flatten(model(x))

    t0 = torch.zeros(directions.shape[0], dtype=directions.dtype, device=directions.device)
    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        _, derivative = torch.func.jvp(transformed, (t0,), (torch.ones_like(t0),))
    finally:
        handle.remove()
    return derivative.detach()
