import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import symwrap
from symwrap import metrics
from symwrap.errors import (
    ActionError,
    BackboneOutputError,
    ConfigError,
    DeviceError,
    EmptyInputError,
    IncompatibleGroupError,
    InputDtypeError,
    NonFiniteInputError,
)
from symwrap.metrics import equivariance_error, invariance_error, lie_derivative, prediction_agreement


def centroid(points):
    return points.mean(dim=1)


def first_point(points):
    return points[:, 0]


def radii(points):
    return points.norm(dim=-1).sum(dim=1, keepdim=True)


def test_equivariant_maps_have_zero_error():
    x = torch.randn(4, 6, 3)
    assert equivariance_error(centroid, x, "E3xS", input="points", output="point") < 1e-6
    assert equivariance_error(centroid, x, "O3xS", input="points", output="vector") < 1e-6
    assert invariance_error(radii, x, "O3xS", input="points") < 1e-6


def test_non_equivariant_maps_have_a_large_error():
    x = torch.randn(4, 6, 3)
    assert equivariance_error(first_point, x, "SO3xS", input="points", output="vector") > 0.1  # not S-equivariant
    # the centroid is equivariant, not invariant
    assert equivariance_error(centroid, x, "SO3", input="points", output="invariant") > 0.1


def test_finite_groups_use_every_element_and_the_error_is_deterministic():
    x = torch.randn(2, 1, 6, 6)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    assert equivariance_error(model, x, "D4", input="image") == equivariance_error(model, x, "D4", input="image")
    # an element that is not the identity changes a generic linear model's output
    assert equivariance_error(model, x, "C2", input="image") > 0


def test_infinite_groups_are_sampled_reproducibly():
    x = torch.randn(3, 5, 3)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a = equivariance_error(first_point, x, "SO3", input="points", output="invariant", n=8, generator=g1)
    b = equivariance_error(first_point, x, "SO3", input="points", output="invariant", n=8, generator=g2)
    assert a == b


def test_prediction_agreement_of_a_classifier():
    x = torch.randn(8, 1, 6, 6)
    invariant = lambda images: torch.stack([images.sum((1, 2, 3)), -images.sum((1, 2, 3))], -1)  # noqa: E731
    assert prediction_agreement(invariant, x, "C4", input="image") == 1.0
    row_sensitive = lambda images: images[:, 0, :, :2].sum(-1)  # logits per row, reads two columns  # noqa: E731
    assert prediction_agreement(row_sensitive, x, "C4", input="image") < 1.0


@pytest.mark.parametrize("group", ["SO3", "O3", "SE3", "T3"])
def test_lie_derivative_vanishes_for_equivariant_maps(group):
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    assert lie_derivative(centroid, x, group, input="points", output="point") < 1e-10
    assert lie_derivative(radii, x, "SO3", input="points") < 1e-10


def test_lie_derivative_detects_non_equivariance():
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    distorted = lambda p: p[:, :, 0:1].sum(1)  # noqa: E731  - reads the x coordinate only
    assert lie_derivative(distorted, x, "SO3", input="points") > 0.1


def test_lie_derivative_on_images_uses_interpolation():
    coords = torch.arange(15, dtype=torch.float64) - 7
    blob = torch.exp(-((coords[:, None] - 2) ** 2 + (coords[None, :] + 1) ** 2) / 6)  # smooth, off-centre
    x = torch.stack([blob, blob.T])[:, None]
    total_mass = lambda images: images.sum((2, 3))  # noqa: E731 - nearly invariant under small rotations
    corner = lambda images: images[:, :, :8, :8].sum((2, 3))  # noqa: E731
    assert lie_derivative(corner, x, "SO2", input="image") > 10 * lie_derivative(total_mass, x, "SO2", input="image")


def test_lie_derivative_needs_a_lie_group():
    with pytest.raises(symwrap.SymwrapError, match="not a matrix Lie group"):
        lie_derivative(radii, torch.randn(2, 4, 2), "C4xS", input="points")


def test_centred_error_ignores_an_offset_shared_by_every_input():
    from symwrap.metrics import centred_equivariance_error

    torch.manual_seed(0)
    x = torch.randn(64, 1, 6, 6)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(36, 5))

    def offset(images):
        return linear(images) + 100.0

    # E' shrinks with the offset's size; the centred error does not see it
    assert equivariance_error(offset, x, "C4", input="image") < equivariance_error(linear, x, "C4", input="image") / 10
    centred = centred_equivariance_error(linear, x, "C4", input="image")
    assert centred_equivariance_error(offset, x, "C4", input="image") == pytest.approx(centred, rel=1e-4)
    # a generic linear map's outputs on the turned copies are unrelated to its outputs on x: about sqrt(2)
    assert 1.0 < centred < 2.0


def test_centred_error_of_an_invariant_map_is_zero_and_a_single_input_is_refused():
    from symwrap.errors import ShapeError
    from symwrap.metrics import centred_equivariance_error

    x = torch.randn(8, 6, 3)
    assert centred_equivariance_error(radii, x, "O3xS", input="points") < 1e-6
    assert centred_equivariance_error(centroid, x, "SO3", input="points", output="vector") < 1e-6
    with pytest.raises(ShapeError, match="at least 2 inputs; got 1"):
        centred_equivariance_error(radii, x[:1], "SO3", input="points")


# --- the metrics check what they are given, as wrap() does ------------------------------------------------------
IMAGES = torch.randn(2, 3, 8, 8)
IMAGE_MLP = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
#: every public metric, called on (model, x, group, input=...) with its keyword arguments
METRICS = {
    "equivariance_error": lambda model, x, group, **kw: metrics.equivariance_error(model, x, group, **kw),
    "equivariance_errors": lambda model, x, group, **kw: metrics.equivariance_errors(model, x, group, **kw),
    "averaged_equivariance_error": lambda model, x, group, **kw: metrics.averaged_equivariance_error(model, x, group,
                                                                                                     **kw),
    "centred_equivariance_error": lambda model, x, group, **kw: metrics.centred_equivariance_error(model, x, group,
                                                                                                   **kw),
    "invariance_error": lambda model, x, group, output=None, **kw: metrics.invariance_error(model, x, group, **kw),
    "prediction_agreement": lambda model, x, group, output=None, **kw: metrics.prediction_agreement(model, x, group,
                                                                                                    **kw),
    "lie_derivative": lambda model, x, group, n=None, **kw: metrics.lie_derivative(model, x, group, **kw),
}


@pytest.mark.parametrize("name", METRICS)
def test_every_metric_refuses_a_group_that_wrap_refuses(name):
    with pytest.raises(IncompatibleGroupError, match="got SO3"):
        METRICS[name](IMAGE_MLP, IMAGES, "SO3", input="image", output="invariant")
    if name in ("invariance_error", "prediction_agreement"):
        return  # no output argument: the output is invariant
    with pytest.raises(IncompatibleGroupError, match="'regular' outputs .* finite group; got SO2"):
        METRICS[name](IMAGE_MLP, IMAGES, "SO2", input="image", output="regular")


@pytest.mark.parametrize("name", [name for name in METRICS if name != "lie_derivative"])
@pytest.mark.parametrize("n", [0, -3, 2.5, True, "8"])
def test_every_sampling_metric_refuses_a_bad_number_of_samples(name, n):
    with pytest.raises(ConfigError, match=rf"integer >= 1 or None .*got {re.escape(repr(n))}"):
        METRICS[name](IMAGE_MLP, IMAGES, "C4", input="image", output="invariant", n=n)


@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("x, error, match", [
    (IMAGES.to("meta"), DeviceError, "'meta' device"),
    (IMAGES[:0], EmptyInputError, "batch of 0 samples"),
    (IMAGES[:, :, :0, :0], EmptyInputError, r"axis 2 \(H\) is empty"),
    (IMAGES.masked_fill(IMAGES > 2, float("nan")), NonFiniteInputError, "NaN or inf"),
    (IMAGES[0], ActionError, r"\(B, C, H, W\).*shape \(3, 8, 8\).*unsqueeze"),
    (IMAGES.long(), InputDtypeError, "floating-point"),
])
def test_every_metric_validates_its_input(name, x, error, match):
    with pytest.raises(error, match=match):
        METRICS[name](IMAGE_MLP, x, "SO2" if name == "lie_derivative" else "C4", input="image", output="invariant")


@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("model, match", [
    (lambda x: x.flatten(1)[:1], r"returned 1 rows for a batch of 2 inputs"),
    (lambda x: x.flatten(1).long(), r"returned a torch.int64 tensor.*must be floating point"),
    (lambda x: (x.flatten(1), x), r"returned a tuple of 2 item\(s\).*OutputAdapter"),
    (lambda x: x.flatten(1) * float("nan"), r"returned NaN or inf for finite inputs"),
])
def test_every_metric_checks_the_model_outputs(name, model, match):
    group = "SO2" if name == "lie_derivative" else "C4"
    with pytest.raises(BackboneOutputError, match=r"the model <lambda> " + match):
        METRICS[name](model, IMAGES, group, input="image", output="invariant")


def test_outputs_must_fit_the_output_action():
    with pytest.raises(BackboneOutputError, match=r"does not fit output='regular'.*C8 must be \(B, 8\)"):
        metrics.equivariance_error(IMAGE_MLP, IMAGES, "C8", input="image", output="regular")
    with pytest.raises(BackboneOutputError, match=r"must return real logits \(B, classes\); got .* shape \(2,\)"):
        metrics.prediction_agreement(lambda x: x.sum((1, 2, 3)), IMAGES, "C4", input="image")


def test_the_model_must_be_callable():
    with pytest.raises(ConfigError, match=r"must be callable.*got a torch.float32 tensor of shape \(2, 3, 8, 8\)"):
        metrics.equivariance_error(IMAGES, IMAGES, "C4", input="image")


def _sum_of_squares(x):
    """Invariant to every rotation, reflection and permutation: one number per sample."""
    return (x.reshape(x.shape[0], -1).to(torch.float64) ** 2).sum(1, keepdim=True)


WILD_CASES = [("image", "C4"), ("image", "D4"), ("points", "SO3"), ("points", "O3xS"), ("points", "S"),
              ("scalars", "S"), ("set", "S"), ("adjacency", "S"), ("vector", "O3")]


@given(case=st.sampled_from(WILD_CASES), shape=st.lists(st.integers(0, 5), max_size=5),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.bool]),
       n=st.one_of(st.none(), st.integers(-1, 4)), seed=st.integers(0, 2**31 - 1))
def test_metrics_give_a_correct_value_or_a_symwrap_error(case, shape, dtype, n, seed):
    spec, group = case
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype) if shape else torch.tensor(1.0)
    try:
        value = metrics.invariance_error(_sum_of_squares, x, group, input=spec, n=n)
    except symwrap.SymwrapError as error:
        assert str(error)
        return
    assert x.numel() > 0 and (n is None or n >= 1)
    assert torch.is_floating_point(x) or spec in ("scalars", "set", "adjacency")  # atom types, bond orders: ints
    tolerance = 1e-2 if x.dtype == torch.float16 else 1e-5  # the sum of squares is invariant: only round-off
    assert 0 <= value <= tolerance
