"""How symmetric a model is: equivariance error, prediction agreement, Lie derivative.

Every function takes the model, a batch ``x``, the group and how it acts on the
input and on the output (names or :class:`~symwrap.actions.Action` objects), and
evaluates all transformed copies of the batch in one model call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .actions import Action, ActionSpec, Copies, get_action, group_copies
from .errors import ShapeError
from .groups import Group, get_group
from .losses import TransformedPredictions, errors_from_copies, residual_norms

Model = Callable[[Any], Any]

#: finite groups up to this order are evaluated on every element by default
EXHAUSTIVE_ORDER = 1024
DEFAULT_SAMPLES = 16


def _copies(group: Group, action: Action, x: Any, n: int | None, generator: torch.Generator | None) -> Copies:
    if n is None:
        return group_copies(action, group, x, samples=DEFAULT_SAMPLES, exhaustive_up_to=EXHAUSTIVE_ORDER,
                            generator=generator)
    return group_copies(action, group, x, samples=n, exhaustive_up_to=0, generator=generator)


def _reference_norm(output_action: Action, y: Any, k: int) -> torch.Tensor:
    return output_action.flatten(y).norm(dim=1).repeat(k)


def equivariance_errors(
    model: Model,
    x: Any,
    group: str | Group,
    *,
    input: ActionSpec,
    output: ActionSpec = "invariant",
    n: int | None = None,
    generator: torch.Generator | None = None,
    eps: float = 1e-12,
) -> dict[str, float]:
    """Both relative errors from one set of transformed copies: ``relative`` (see
    :func:`equivariance_error`) and ``averaged`` (see :func:`averaged_equivariance_error`)."""
    y, moved, output_action = _predict_copies(model, x, group, input, output, n, generator)
    return errors_from_copies(moved, y, output_action, eps=eps)


def _predict_copies(model: Model, x: Any, group: str | Group, input: ActionSpec, output: ActionSpec,
                    n: int | None, generator: torch.Generator | None) -> tuple[Any, TransformedPredictions, Action]:
    """``f(x)``, the predictions on the transformed copies (one model call) and the output action."""
    group = get_group(group)
    input_action, output_action = get_action(input), get_action(output)
    with torch.no_grad():
        y = model(x)
        bound, x_rep, g, k = _copies(group, input_action, x, n, generator)
        moved = TransformedPredictions(bound, g, k, model(input_action.act(bound, g, x_rep)))
    return y, moved, output_action


def equivariance_error(
    model: Model,
    x: Any,
    group: str | Group,
    *,
    input: ActionSpec,
    output: ActionSpec = "invariant",
    n: int | None = None,
    generator: torch.Generator | None = None,
    eps: float = 1e-12,
) -> float:
    """Relative equivariance error ``E_g ‖f(g·x) − g·f(x)‖ / ‖f(x)‖``.

    Averaged over the batch and over every element of a finite group of order at
    most 1024 (when ``n`` is None), or over ``n`` Haar-sampled elements per sample
    (16 by default for infinite groups). Norms are taken per sample over all
    output entries. ``output="invariant"`` gives the invariance error.

    Example::

        err = symwrap.metrics.equivariance_error(model, points, "SO3", input="points", output="vector")
        assert err < 1e-5
    """
    return equivariance_errors(model, x, group, input=input, output=output, n=n, generator=generator,
                               eps=eps)["relative"]


def averaged_equivariance_error(
    model: Model,
    x: Any,
    group: str | Group,
    *,
    input: ActionSpec,
    output: ActionSpec = "invariant",
    n: int | None = None,
    generator: torch.Generator | None = None,
    eps: float = 1e-12,
) -> float:
    """Relative error of the group-averaged prediction ``‖E_g g⁻¹·f(g·x) − f(x)‖ / ‖f(x)‖``.

    REMUL's "E" metric (arXiv 2410.17878), next to the relative error E′ of
    :func:`equivariance_error`: it is zero when the errors of the transformed copies cancel
    on average, so E ≤ E′ always. Elements as in :func:`equivariance_error`.
    """
    return equivariance_errors(model, x, group, input=input, output=output, n=n, generator=generator,
                               eps=eps)["averaged"]


def centred_equivariance_error(
    model: Model,
    x: Any,
    group: str | Group,
    *,
    input: ActionSpec,
    output: ActionSpec = "invariant",
    n: int | None = None,
    generator: torch.Generator | None = None,
    eps: float = 1e-12,
) -> float:
    """Equivariance error relative to how much the outputs vary over the batch:
    ``E_g mean_x ‖f(g·x) − g·f(x)‖ / mean_x ‖f(x) − f̄‖``, with ``f̄`` the batch mean of ``f(x)``.

    :func:`equivariance_error` divides by ‖f(x)‖, which an offset shared by every input inflates: a freshly
    initialised network whose outputs barely depend on its input looks nearly invariant by E′ although
    none of its input dependence is. This error is unchanged by such an offset; a function whose outputs
    on the copies are unrelated to one another scores about √2 on every element but the identity. Needs a
    batch of at least two inputs whose outputs differ. Elements as in :func:`equivariance_error`.
    """
    y, moved, output_action = _predict_copies(model, x, group, input, output, n, generator)
    flat = output_action.flatten(y)
    if flat.shape[0] < 2:
        raise ShapeError(f"centred_equivariance_error needs a batch of at least 2 inputs; got {flat.shape[0]}")
    spread = (flat - flat.mean(dim=0)).norm(dim=1).mean().clamp_min(eps)
    return float(residual_norms(moved, y, output_action).mean() / spread)


def invariance_error(
    model: Model,
    x: Any,
    group: str | Group,
    *,
    input: ActionSpec,
    n: int | None = None,
    generator: torch.Generator | None = None,
) -> float:
    """Relative invariance error ``E_g ‖f(g·x) − f(x)‖ / ‖f(x)‖`` (equivariance with a trivial output action)."""
    return equivariance_error(model, x, group, input=input, output="invariant", n=n, generator=generator)


def prediction_agreement(
    model: Model,
    x: Any,
    group: str | Group,
    *,
    input: ActionSpec,
    n: int | None = None,
    generator: torch.Generator | None = None,
) -> float:
    """Fraction of transformed inputs whose predicted class (argmax of the logits)
    equals the prediction on the untransformed input. 1.0 for an invariant classifier."""
    group = get_group(group)
    input_action = get_action(input)
    with torch.no_grad():
        predicted = model(x).argmax(dim=-1)
        bound, x_rep, g, k = _copies(group, input_action, x, n, generator)
        moved = model(input_action.act(bound, g, x_rep)).argmax(dim=-1)
    return float((moved == predicted.repeat(k)).float().mean())


def lie_derivative(
    model: Model,
    x: Any,
    group: str | Group,
    *,
    input: ActionSpec,
    output: ActionSpec = "invariant",
    eps: float = 1e-12,
) -> float:
    """Relative norm of the Lie derivative ``d/dt [exp(−tA)·f(exp(tA)·x)]`` at t = 0,
    averaged over the batch and over a basis A of the group's Lie algebra.

    Zero for a model that is equivariant to infinitesimal transformations; computed
    exactly with forward-mode autodiff (``torch.func.jvp``) in one batched call.
    Image inputs are interpolated (never the exact pixel path) so the derivative exists.
    Supports matrix Lie groups: SO2, O2, SO3, O3, SE3, E3 and T3.
    """
    group = get_group(group)
    input_action = get_action(input).differentiable()
    output_action = get_action(output).differentiable()
    probe = input_action.probe(x)
    basis = group.lie_algebra(device=probe.device, dtype=probe.dtype)
    batch = input_action.batch_size(x)
    m = basis.shape[0]
    x_rep = input_action.repeat(x, m)
    bound = input_action.bind(group, x_rep)
    directions = basis.repeat_interleave(batch, dim=0)

    def transformed(t: torch.Tensor) -> torch.Tensor:
        g = bound.exp(t.reshape(-1, *([1] * (directions.ndim - 1))) * directions)
        y = model(input_action.act(bound, g, x_rep))
        return output_action.flatten(output_action.act(bound, bound.inverse(g), y))

    t0 = torch.zeros(m * batch, dtype=probe.dtype, device=probe.device)
    with torch.no_grad():
        reference = _reference_norm(output_action, model(x), m)
    _, derivative = torch.func.jvp(transformed, (t0,), (torch.ones_like(t0),))
    return float((derivative.norm(dim=1) / reference.clamp_min(eps)).mean().detach())
