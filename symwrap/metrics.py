"""How symmetric a model is: equivariance error, prediction agreement, Lie derivative.

Every function takes the model, a batch ``x``, the group and how it acts on the
input and on the output (names or :class:`~symwrap.actions.Action` objects), and
evaluates all transformed copies of the batch in one model call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch

from .actions import Action, ActionSpec, Copies, get_action, group_copies
from .actions.batching import TransformedPredictions
from .actions.checks import call_model, check_backbone_output, describe
from .errors import BackboneOutputError, ConfigError, EquivarianceAssertionError, GroupElementError, ShapeError
from .groups import Group, get_group

Model = Callable[[Any], Any]

#: finite groups up to this order are evaluated on every element by default
MAX_EXHAUSTIVE_ORDER = 1024
DEFAULT_SAMPLES = 16


class _Setup(NamedTuple):
    """What every metric checks first: the group, bound to ``x``, and the two actions."""

    group: Group
    bound: Group
    input_action: Action
    output_action: Action


def _setup(model: Model, x: Any, group: str | Group, input: ActionSpec, output: ActionSpec,
           n: int | None = None) -> _Setup:
    """The checks ``wrap()`` makes, for the metrics: a callable model, a group both actions take, a valid
    number of samples and an input that fits the input action (finite: a NaN input has no error to measure)."""
    if not callable(model):
        raise ConfigError(f"the model must be callable (an nn.Module or a function of the batch); "
                          f"got {describe(model)}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"n, the number of sampled group elements per input, must be an integer >= 1 or None "
                          f"(every element of a small finite group); got {n!r}")
    group = get_group(group)
    input_action, output_action = get_action(input), get_action(output)
    input_action.check_group(group)
    output_action.check_group(group)
    input_action.validate(x, group, check_finite=True)
    return _Setup(group, input_action.bind(group, x), input_action, output_action)


def _model_name(model: Model) -> str:
    return getattr(model, "__name__", type(model).__name__)


def _call(model: Model, x: Any) -> Any:
    return call_model(model, x, _model_name(model), role="model")


def _checked(y: Any, model: Model, output_action: Action, group: Group, rows: int) -> Any:
    """``y``, the model's output on ``rows`` inputs, once it is known to fit ``output_action`` and be finite."""
    check_backbone_output(y, output_action, group, rows, _model_name(model), role="model")
    values = y.values() if isinstance(y, Mapping) else [y]
    if not all(bool(torch.isfinite(value).all()) for value in values):
        raise BackboneOutputError(f"the model {_model_name(model)} returned NaN or inf for finite inputs "
                                  f"({describe(y)}); its equivariance error is undefined")
    return y


def _copies(group: Group, action: Action, x: Any, n: int | None, generator: torch.Generator | None) -> Copies:
    if n is None:
        return group_copies(action, group, x, samples=DEFAULT_SAMPLES, max_exhaustive_order=MAX_EXHAUSTIVE_ORDER,
                            generator=generator)
    return group_copies(action, group, x, samples=n, max_exhaustive_order=0, generator=generator)


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
    setup = _setup(model, x, group, input, output, n)
    input_action, output_action = setup.input_action, setup.output_action
    with torch.no_grad():
        y = _checked(_call(model, x), model, output_action, setup.bound, input_action.batch_size(x))
        bound, x_rep, g, k = _copies(setup.group, input_action, x, n, generator)
        predictions = _call(model, input_action.act(bound, g, x_rep))
        moved = TransformedPredictions(bound, g, k, _checked(predictions, model, output_action, bound,
                                                             input_action.batch_size(x_rep)))
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
    setup = _setup(model, x, group, input, "invariant", n)
    input_action = setup.input_action
    with torch.no_grad():
        predicted = _logits(_call(model, x), model, setup.bound, input_action.batch_size(x)).argmax(dim=-1)
        bound, x_rep, g, k = _copies(setup.group, input_action, x, n, generator)
        logits = _logits(_call(model, input_action.act(bound, g, x_rep)), model, bound, input_action.batch_size(x_rep))
    return float((logits.argmax(dim=-1) == predicted.repeat(k)).float().mean())


def _logits(y: Any, model: Model, group: Group, rows: int) -> torch.Tensor:
    """``y`` once it is known to be (rows, classes) logits: ``argmax(-1)`` of anything else is not a class."""
    _checked(y, model, get_action("invariant"), group, rows)
    if y.ndim != 2 or torch.is_complex(y):
        raise BackboneOutputError(f"prediction_agreement compares predicted classes: the model "
                                  f"{_model_name(model)} must return real logits (B, classes); got {describe(y)}")
    return y


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
    derivative, reference = lie_derivatives(model, x, group, input=input, output=output)
    return float((derivative.norm(dim=1) / reference.clamp_min(eps)).mean())


def lie_derivatives(
    model: Model,
    x: Any,
    group: str | Group,
    *,
    input: ActionSpec,
    output: ActionSpec = "invariant",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Lie derivatives behind :func:`lie_derivative`, one per input and generator: ``(derivative, norm)``.

    ``derivative`` is ``(m·B, D)``, generator-major (rows ``i·B … (i+1)·B − 1`` belong to the basis element
    ``i`` of ``group.lie_algebra()``, with ``x`` repeated m times by the input action), each row the flattened
    ``d/dt [exp(−tA)·f(exp(tA)·x)]`` at t = 0; ``norm`` is ``‖f(x)‖`` per row ``(m·B,)``. Attention runs on
    PyTorch's math kernel here, as the fused kernels have no forward-mode derivative.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    setup = _setup(model, x, group, input, output)
    group = setup.group
    input_action, output_action = setup.input_action.differentiable(), setup.output_action.differentiable()
    probe = input_action.probe(x)
    basis = group.lie_algebra(device=probe.device, dtype=probe.dtype)
    batch = input_action.batch_size(x)
    m = basis.shape[0]
    x_rep = input_action.repeat(x, m)
    bound = input_action.bind(group, x_rep)
    directions = basis.repeat_interleave(batch, dim=0)

    def transformed(t: torch.Tensor) -> torch.Tensor:
        g = bound.exp(t.reshape(-1, *([1] * (directions.ndim - 1))) * directions)
        y = _call(model, input_action.act(bound, g, x_rep))
        check_backbone_output(y, output_action, bound, m * batch, _model_name(model), role="model")
        return output_action.flatten(output_action.act(bound, bound.inverse(g), y))

    t0 = torch.zeros(m * batch, dtype=probe.dtype, device=probe.device)
    with torch.no_grad():
        y = _checked(_call(model, x), model, output_action, setup.bound, batch)
        reference = _reference_norm(output_action, y, m)
    with sdpa_kernel(SDPBackend.MATH):
        _, derivative = torch.func.jvp(transformed, (t0,), (torch.ones_like(t0),))
    return derivative.detach(), reference


#: the relative error an exact model may show, per dtype: float round-off (as e3nn's ``assert_equivariant``)
EXACT_TOLERANCE: dict[torch.dtype, float] = {
    torch.float16: 1e-2,
    torch.bfloat16: 5e-2,
    torch.float32: 1e-5,
    torch.float64: 1e-10,
}
_PART_NAMES = {"linear": "rotations and reflections", "translation": "translations", "permutation": "permutations"}


def exact_tolerance(dtype: torch.dtype) -> float:
    """The relative error that counts as float round-off for ``dtype`` (see :data:`EXACT_TOLERANCE`)."""
    return EXACT_TOLERANCE.get(dtype, EXACT_TOLERANCE[torch.float32])


def assert_equivariant(
    model: Model,
    x: Any,
    group: str | Group,
    *,
    input: ActionSpec,
    output: ActionSpec = "invariant",
    n: int | None = None,
    tolerance: float | None = None,
    generator: torch.Generator | None = None,
    eps: float = 1e-12,
) -> dict[str, float]:
    """Check that ``model`` is equivariant on ``x`` up to float round-off, and say where it is not.

    Every transformed copy counts, not the average: the largest relative error
    ``‖f(g·x) − g·f(x)‖ / ‖f(x)‖`` over the samples of ``x`` and the elements (every element of a finite
    group of order ≤ 1024, else ``n`` Haar samples per input, 16 by default) must be at most ``tolerance``;
    by default the round-off of ``x``'s dtype (:data:`EXACT_TOLERANCE`: 1e-5 in float32, 1e-10 in float64),
    as e3nn's ``assert_equivariant`` does.

    Returns:
        ``{"max", "mean", "tolerance"}``: the largest and the mean relative error, and the tolerance used.

    Raises:
        EquivarianceAssertionError: (an ``AssertionError``) the largest error is above the tolerance. The
            message names the worst element and sample and, for groups whose elements have several parts
            (rotations, translations, permutations), the error of each part alone, so you see which symmetry
            is broken.

    Example::

        symwrap.metrics.assert_equivariant(model, points, "SO3", input="points", output="vector")
    """
    if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                  or not tolerance >= 0):
        raise ConfigError(f"tolerance must be a number >= 0 or None (the round-off of the dtype); got {tolerance!r}")
    y, moved, output_action = _predict_copies(model, x, group, input, output, n, generator)
    setup = _setup(model, x, group, input, output, n)
    relative = _relative_residuals(moved, y, output_action, eps)
    if tolerance is None:
        probe = setup.input_action.probe(x)
        tolerance = exact_tolerance(probe.dtype if torch.is_floating_point(probe) else torch.get_default_dtype())
    result = {"max": float(relative.max()), "mean": float(relative.mean()), "tolerance": float(tolerance)}
    if result["max"] <= tolerance:
        return result
    copy, sample = divmod(int(relative.argmax()), setup.input_action.batch_size(x))
    every = n is None and setup.bound.is_finite and setup.bound.order <= MAX_EXHAUSTIVE_ORDER
    where = f"element {copy} of {moved.k} ({'all elements' if every else 'sampled'}), sample {sample}"
    by_part = _errors_by_part(model, x, setup, y, generator, eps)
    breakdown = "; ".join(f"{_PART_NAMES[part]} alone: {error:.3g}" for part, error in by_part.items())
    raise EquivarianceAssertionError(
        f"not equivariant to {setup.group.name} within {tolerance:.1e}: largest relative error {result['max']:.3g} "
        f"(mean {result['mean']:.3g}) at {where}" + (f". Largest error by part: {breakdown}" if breakdown else "")
    )


def _relative_residuals(moved: TransformedPredictions, y: Any, output_action: Action, eps: float) -> torch.Tensor:
    """‖f(g·x) − g·f(x)‖ / ‖f(x)‖ per transformed copy, (k·B,) copy-major."""
    return residual_norms(moved, y, output_action) / _reference_norm(output_action, y, moved.k).clamp_min(eps)


def _errors_by_part(model: Model, x: Any, setup: _Setup, y: Any, generator: torch.Generator | None,
                    eps: float, samples: int = 8) -> dict[str, float]:
    """The largest relative error under each part of sampled elements alone (only the rotation, only the
    translation, only the permutation), for groups whose elements have more than one part."""
    group, input_action, output_action = setup.group, setup.input_action, setup.output_action
    parts = [part for part in _PART_NAMES if getattr(group, f"has_{part}")]
    if len(parts) < 2:
        return {}
    bound, x_rep, g, k = group_copies(input_action, group, x, samples=samples, max_exhaustive_order=0,
                                      generator=generator)
    probe = input_action.probe(x)
    dtype = probe.dtype if torch.is_floating_point(probe) else None
    errors = {}
    for part in parts:
        value = bound.permutation_part(g) if part == "permutation" else getattr(bound, f"{part}_part")(g, dtype=dtype)
        try:
            only = bound.from_parts(**{part: value})
        except GroupElementError:
            continue
        with torch.no_grad():
            predictions = _call(model, input_action.act(bound, only, x_rep))
        moved = TransformedPredictions(bound, only, k, predictions)
        errors[part] = float(_relative_residuals(moved, y, output_action, eps).max())
    return errors


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


def __getattr__(name: str) -> Any:
    if name == "EXHAUSTIVE_ORDER":
        import warnings

        warnings.warn("EXHAUSTIVE_ORDER is deprecated; use MAX_EXHAUSTIVE_ORDER", DeprecationWarning, stacklevel=2)
        return MAX_EXHAUSTIVE_ORDER
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
