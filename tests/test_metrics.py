import math
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
    EquivarianceAssertionError,
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
IMAGES = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
with torch.random.fork_rng():  # built at collection time: seeded, and the global generator left as it was
    torch.manual_seed(0)
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


# --- values computed by hand --------------------------------------------------------------------------------------
ROOT2 = math.sqrt(2.0)
#: two samples of two 2D points; the model below reads only the first point p: p = (2, 0) and (-1, 0.5)
OFFSET_POINTS = torch.tensor([[[2.0, 0.0], [5.0, 5.0]], [[-1.0, 0.5], [3.0, 3.0]]])


def offset_first_point(points):
    """f(x) = p + c with c = (1, 0), so ‖f(x)‖ = 3 and 0.5 on OFFSET_POINTS. Under C4 (elements 0..3: turns by
    0°, 90°, 180°, 270°) the residual g⁻¹·f(g·x) − f(x) = g⁻¹·c − c is (0, 0), (−1, ∓1), (−2, 0), (−1, ±1):
    norms 0, √2, 2, √2, whose mean is (1 + √2)/2, while their mean vector is −c, of norm 1."""
    return points[:, 0] + torch.tensor([1.0, 0.0], dtype=points.dtype)


def _by_hand(elements: torch.Tensor, norms: torch.Tensor, eps: float = 1e-12, group: str = "C4") -> dict[str, float]:
    """E′ and E of offset_first_point for the elements (k, B) given to each sample (k copies, B samples)."""
    c = torch.tensor([1.0, 0.0], dtype=torch.float64)
    turn = symwrap.get_group(group).matrix(elements.flatten(0, 1)).to(torch.float64).reshape(*elements.shape[:2], 2, 2)
    residuals = turn.transpose(-1, -2) @ c - c  # g⁻¹·c − c, (k, B, 2)
    reference = norms.clamp_min(eps)
    return {"relative": float((residuals.norm(dim=-1) / reference).mean()),
            "averaged": float((residuals.mean(0).norm(dim=-1) / reference).mean())}


@pytest.mark.parametrize("eps, relative, averaged", [
    (1e-12, (1 + ROOT2) / 2 * (1 / 3 + 1 / 0.5) / 2, (1 / 3 + 1 / 0.5) / 2),
    (1.0, (1 + ROOT2) / 2 * (1 / 3 + 1 / 1) / 2, (1 / 3 + 1 / 1) / 2),  # ‖f(x)‖ = 0.5 is clamped to eps = 1
])
def test_relative_and_averaged_errors_by_hand(eps, relative, averaged):
    """E′ (``relative``) averages the residuals' norms, E (``averaged``) takes the norm of their average: here
    the residuals cancel partly, so E < E′; every element of C4 is used once."""
    kw = {"input": "points", "output": "vector", "eps": eps}
    both = metrics.equivariance_errors(offset_first_point, OFFSET_POINTS, "C4", **kw)
    assert both == pytest.approx({"relative": relative, "averaged": averaged}, rel=1e-6)
    assert metrics.equivariance_error(offset_first_point, OFFSET_POINTS, "C4", **kw) == pytest.approx(relative,
                                                                                                      rel=1e-6)
    assert metrics.averaged_equivariance_error(offset_first_point, OFFSET_POINTS, "C4", **kw) == pytest.approx(
        averaged, rel=1e-6)


@pytest.mark.parametrize("n", [1, 3])
def test_errors_on_sampled_elements_by_hand(n):
    """With ``n``, each sample gets ``n`` elements drawn from ``generator`` (copy-major) instead of every element."""
    x = OFFSET_POINTS.repeat(8, 1, 1)
    elements = symwrap.get_group("C4").sample(n * 16, generator=torch.Generator().manual_seed(7)).reshape(n, 16)
    expected = _by_hand(elements, torch.tensor([3.0, 0.5]).repeat(8))
    assert len(set(elements.flatten().tolist())) > 1
    kw = {"input": "points", "output": "vector", "n": n}
    both = metrics.equivariance_errors(offset_first_point, x, "C4", generator=torch.Generator().manual_seed(7), **kw)
    assert both == pytest.approx(expected, rel=1e-6)
    assert metrics.equivariance_error(offset_first_point, x, "C4", generator=torch.Generator().manual_seed(7),
                                      **kw) == pytest.approx(expected["relative"], rel=1e-6)
    assert metrics.averaged_equivariance_error(offset_first_point, x, "C4", generator=torch.Generator().manual_seed(7),
                                               **kw) == pytest.approx(expected["averaged"], rel=1e-6)
    spread = math.sqrt(1.5**2 + 0.25**2)  # f(x) = (3, 0) and (0, 0.5): both lie √2.3125 from their mean
    residuals = _by_hand(elements, torch.ones(16))["relative"]  # the mean residual norm
    assert metrics.centred_equivariance_error(offset_first_point, x, "C4", generator=torch.Generator().manual_seed(7),
                                              **kw) == pytest.approx(residuals / spread, rel=1e-6)


@pytest.mark.parametrize("eps, spread", [(1e-12, math.sqrt(1.5**2 + 0.25**2)), (10.0, 10.0)])
def test_centred_error_by_hand(eps, spread):
    """mean residual norm (1 + √2)/2 over the mean distance of f(x) = (3, 0), (0, 0.5) to their mean, √2.3125."""
    value = metrics.centred_equivariance_error(offset_first_point, OFFSET_POINTS, "C4", input="points",
                                               output="vector", eps=eps)
    assert value == pytest.approx((1 + ROOT2) / 2 / spread, rel=1e-6)
    two = metrics.centred_equivariance_error(offset_first_point, OFFSET_POINTS[:2], "C4", input="points",
                                             output="vector")
    assert two == pytest.approx((1 + ROOT2) / 2 / math.sqrt(1.5**2 + 0.25**2), rel=1e-6)  # a batch of 2 is enough


def test_invariance_error_by_hand():
    """f(x) = the x coordinate of the first point, (a, b): the four turns give a, −b, −a, b, so the error is
    (0 + |a + b| + 2|a| + |a − b|)/4/|a|: 2 for (1, 3) and 1 for (−1, 0.5)."""
    x = torch.tensor([[[1.0, 3.0]], [[-1.0, 0.5]]])
    first_x = lambda points: points[:, 0, :1]  # noqa: E731
    assert metrics.invariance_error(first_x, x, "C4", input="points") == pytest.approx(1.5, rel=1e-6)
    sampled = x.repeat(8, 1, 1)
    elements = symwrap.get_group("C4").sample(16, generator=torch.Generator().manual_seed(3))
    turned = torch.stack([torch.tensor([a, -b, -a, b]) for a, b in sampled[:, 0].tolist()])  # x coordinate per turn
    expected = ((turned.gather(1, elements[:, None])[:, 0] - sampled[:, 0, 0]).abs() / sampled[:, 0, 0].abs()).mean()
    value = metrics.invariance_error(first_x, sampled, "C4", input="points", n=1,
                                     generator=torch.Generator().manual_seed(3))
    assert value == pytest.approx(float(expected), rel=1e-6)


def test_prediction_agreement_by_hand():
    """A 2×2 image's logits are its top row (tl, tr). Turns by 90° walk the corners round, so the four copies see
    the four pairs of neighbouring corners: for corners (tl, tr, br, bl) = (4, 3, 1, 2), class 0 on (4, 3) and
    (3, 1), class 1 on (1, 2) and (2, 4): 2 of 4 agree; for (1, 4, 3, 2) class 1 only on (1, 4): 1 of 4."""
    images = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]], [[[1.0, 4.0], [2.0, 3.0]]]])
    top_row = lambda x: x[:, 0, 0, :]  # noqa: E731
    assert prediction_agreement(top_row, images, "C4", input="image") == 3 / 8
    # sampled: turn k agrees for the first image when k is 0 or 1 in one direction of turning, 0 or 3 in the other
    many = images.repeat(8, 1, 1, 1)
    elements = symwrap.get_group("C4").sample(16, generator=torch.Generator().manual_seed(5))
    moved = symwrap.get_action("image").act(symwrap.get_group("C4"), elements, many)
    expected = (top_row(moved).argmax(-1) == top_row(many).argmax(-1)).float().mean()
    value = prediction_agreement(top_row, many, "C4", input="image", n=1, generator=torch.Generator().manual_seed(5))
    assert value == float(expected) and value != 3 / 8


def test_lie_derivative_by_hand():
    """f(p) = D·p with D = diag(1, 2) on the first point, under SO2 with generator A = [[0, −1], [1, 0]]:
    d/dt exp(−tA)·D·exp(tA)·p = (DA − AD)·p = (p_y, p_x), of norm ‖p‖, relative to ‖D·p‖."""
    x = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, -1.0], [1.0, 1.0]]], dtype=torch.float64)
    scale = torch.tensor([1.0, 2.0], dtype=torch.float64)
    stretch = lambda points: points[:, 0] * scale  # noqa: E731
    expected = (math.sqrt(5 / 17) + math.sqrt(10 / 13)) / 2
    assert lie_derivative(stretch, x, "SO2", input="points", output="vector") == pytest.approx(expected, rel=1e-9)
    clamped = (math.sqrt(5) / 10 + math.sqrt(10) / 10) / 2  # ‖D·p‖ = √17, √13 are clamped to eps = 10
    assert lie_derivative(stretch, x, "SO2", input="points", output="vector", eps=10.0) == pytest.approx(clamped)
    # the x coordinate of the first point under SO3 (basis: turns about x, y, z): derivatives 0, ±p_z, ∓p_y
    q = torch.tensor([[[2.0, 1.0, 3.0]], [[-1.0, 2.0, 0.5]]], dtype=torch.float64)
    value = lie_derivative(lambda points: points[:, 0, :1], q, "SO3", input="points")
    assert value == pytest.approx(((1 + 3) / 3 / 2 + (2 + 0.5) / 3 / 1) / 2, rel=1e-9)


# --- assert_equivariant: every copy, a tolerance per dtype, the worst element, the error of each part ------------
def test_assert_equivariant_names_the_worst_element_and_sample():
    """The largest relative error, 2/0.5 = 4, is the half turn (element 2) of the second sample."""
    with pytest.raises(EquivarianceAssertionError) as raised:
        metrics.assert_equivariant(offset_first_point, OFFSET_POINTS, "C4", input="points", output="vector")
    assert isinstance(raised.value, AssertionError) and isinstance(raised.value, symwrap.SymwrapError)
    assert str(raised.value) == ("not equivariant to C4 within 1.0e-05: largest relative error 4 (mean 1.41) at "
                                 "element 2 of 4 (all elements), sample 1")
    result = metrics.assert_equivariant(offset_first_point, OFFSET_POINTS, "C4", input="points", output="vector",
                                        tolerance=4)  # the bound counts: max 4 <= 4
    assert result == pytest.approx({"max": 4.0, "mean": (1 + ROOT2) / 2 * (1 / 3 + 1 / 0.5) / 2, "tolerance": 4.0})
    with pytest.raises(EquivarianceAssertionError, match=r"within 4\.0e\+00: largest relative error 4 .* of 4 "
                                                         r"\(sampled\), sample [13]$"):  # the second sample, twice
        metrics.assert_equivariant(offset_first_point, OFFSET_POINTS.repeat(2, 1, 1), "C4", input="points",
                                   output="vector", n=4, tolerance=3.99, generator=torch.Generator().manual_seed(0))
    with pytest.raises(EquivarianceAssertionError, match=r"to SO2 .* at element \d+ of 16 \(sampled\), sample \d$"):
        metrics.assert_equivariant(offset_first_point, OFFSET_POINTS, "SO2", input="points", output="vector")


def _slightly_off(delta: float):
    """f(x) = p + δ·(1, 0) on p = (0, 1): the half turn's residual is exactly (−2δ, 0), so the largest relative
    error is 2δ/‖(δ, 1)‖ ≈ 2δ; the other turns give at most √2·δ."""
    return lambda points: points[:, 0] + torch.tensor([delta, 0.0]).to(points.dtype)


@pytest.mark.parametrize("dtype, tolerance, within, beyond", [
    (torch.float64, 1e-10, 4e-11, 1e-10),
    (torch.float32, 1e-5, 4e-6, 1e-5),
    (torch.float16, 1e-2, 4e-3, 1e-2),
    (torch.bfloat16, 5e-2, 2e-2, 5e-2),
])
def test_assert_equivariant_tolerates_the_round_off_of_the_dtype(dtype, tolerance, within, beyond):
    x = torch.tensor([[[0.0, 1.0]]], dtype=dtype)
    assert metrics.exact_tolerance(dtype) == tolerance
    result = metrics.assert_equivariant(_slightly_off(within), x, "C4", input="points", output="vector")
    assert result["tolerance"] == tolerance and result["max"] == pytest.approx(2 * within, rel=2e-2)
    with pytest.raises(EquivarianceAssertionError, match=f"within {tolerance:.1e}: largest relative error "
                                                         f"{2 * beyond:.2g}"):
        metrics.assert_equivariant(_slightly_off(beyond), x, "C4", input="points", output="vector")


def test_assert_equivariant_on_integer_data_uses_the_default_dtype():
    atoms = torch.tensor([[[1], [6], [8]], [[1], [1], [7]]])  # atom types: integers, permuted by S
    count = lambda x: x.to(torch.get_default_dtype()).sum(1)  # noqa: E731
    assert metrics.exact_tolerance(torch.int64) == 1e-5 and metrics.exact_tolerance(torch.complex64) == 1e-5
    assert metrics.assert_equivariant(count, atoms, "S", input="set")["tolerance"] == 1e-5
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert metrics.assert_equivariant(count, atoms, "S", input="set")["tolerance"] == 1e-10
    finally:
        torch.set_default_dtype(default)


@pytest.mark.parametrize("tolerance", [-1e-6, True, "1e-5", float("nan"), None])
def test_assert_equivariant_checks_its_tolerance(tolerance):
    exact = lambda points: points[:, 0]  # noqa: E731 - C4 turns points exactly
    if tolerance is None:
        assert metrics.assert_equivariant(exact, OFFSET_POINTS, "C4", input="points", output="vector",
                                          tolerance=0) == {"max": 0.0, "mean": 0.0, "tolerance": 0.0}
        return
    with pytest.raises(ConfigError, match=rf"tolerance must be a number >= 0 or None .*{re.escape(repr(tolerance))}"):
        metrics.assert_equivariant(exact, OFFSET_POINTS, "C4", input="points", output="vector", tolerance=tolerance)


class _FirstPoint(nn.Module):
    """The first point (B, N, 3) -> (B, 3), recording the batch size of every call."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, points):
        self.batches.append(points.shape[0])
        return points[:, 0]


def _part_errors(message: str) -> dict[str, float]:
    found = re.search(r"Largest error by part: (.*)$", message)
    if found is None:
        return {}
    return {name: float(value) for name, value in (item.split(" alone: ") for item in found.group(1).split("; "))}


def test_assert_equivariant_gives_the_error_of_each_part():
    """The first point p = (0, 0, 2) of points whose others all sit at q = (0, 3, 2): every rotation, reflection
    and translation keeps f(x) = p equivariant; a permutation that moves point 0 gives ‖q − p‖/‖p‖ = 1.5."""
    x = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 3.0, 2.0], [0.0, 3.0, 2.0], [0.0, 3.0, 2.0]]], dtype=torch.float64)
    model = _FirstPoint()
    with pytest.raises(EquivarianceAssertionError, match=r"E3xS within 1\.0e-10: largest relative error 1\.5 ") as \
            raised:
        metrics.assert_equivariant(model, x.repeat(2, 1, 1), "E3xS", input="points", output="point")
    parts = _part_errors(str(raised.value))
    assert list(parts) == ["rotations and reflections", "translations", "permutations"]
    assert parts["rotations and reflections"] < 1e-12 and parts["translations"] < 1e-12
    assert parts["permutations"] == 1.5
    assert model.batches == [2, 16 * 2, 8 * 2, 8 * 2, 8 * 2]  # f(x), then the copies, then 8 per part
    # a part that is not an element alone is left out (a quarter turn of C4 is one only with its permutation)
    flat = torch.tensor([[[0.0, 2.0], [3.0, 2.0], [3.0, 2.0]]], dtype=torch.float64)
    with pytest.raises(EquivarianceAssertionError) as raised:
        metrics.assert_equivariant(lambda points: points[:, 0], flat, "C4xS", input="points", output="point")
    assert _part_errors(str(raised.value)) == {"permutations": pytest.approx(math.sqrt(9) / 2)}
    # groups of one part have no breakdown
    with pytest.raises(EquivarianceAssertionError) as raised:
        metrics.assert_equivariant(lambda points: points[:, 0, :1], x, "SO3", input="points")
    assert "by part" not in str(raised.value)
    # a float64 translation breaks the vector output; the rotation part alone stays at float64 round-off
    with pytest.raises(EquivarianceAssertionError) as raised:
        metrics.assert_equivariant(lambda points: points[:, 0], x, "E3", input="points", output="vector")
    parts = _part_errors(str(raised.value))
    assert list(parts) == ["rotations and reflections", "translations"]
    assert parts["rotations and reflections"] < 1e-12 and parts["translations"] > 0.1


def test_infinite_groups_sample_16_elements_per_input_from_the_generator():
    x = OFFSET_POINTS.repeat(4, 1, 1)
    elements = symwrap.get_group("SO2").sample(16 * 8, generator=torch.Generator().manual_seed(2)).reshape(16, 8, 2, 2)
    expected = _by_hand(elements, torch.tensor([3.0, 0.5]).repeat(4), group="SO2")
    value = metrics.equivariance_errors(offset_first_point, x, "SO2", input="points", output="vector",
                                        generator=torch.Generator().manual_seed(2))
    assert value == pytest.approx(expected, rel=1e-5)


def test_the_default_output_is_invariant():
    """f(x) = the x coordinate of the first point: E′ = 1.5 as in test_invariance_error_by_hand; E = |a| / |a| = 1
    for (1, 3) (the mean of a, −b, −a, b is 0) and 1 for (−1, 0.5)."""
    x = torch.tensor([[[1.0, 3.0]], [[-1.0, 0.5]]])
    first_x = lambda points: points[:, 0, :1]  # noqa: E731
    assert metrics.equivariance_errors(first_x, x, "C4", input="points") == pytest.approx(
        {"relative": 1.5, "averaged": 1.0})
    assert metrics.equivariance_error(first_x, x, "C4", input="points") == pytest.approx(1.5)
    assert metrics.averaged_equivariance_error(first_x, x, "C4", input="points") == pytest.approx(1.0)
    spread = 1.0  # f(x) = 1 and −1, both 1 from their mean 0; the mean residual is (0+4+2+2 + 0+0.5+2+1.5)/8 = 1.5
    assert metrics.centred_equivariance_error(first_x, x, "C4", input="points") == pytest.approx(1.5 / spread)
    with pytest.raises(EquivarianceAssertionError, match="largest relative error 4 "):  # |−3 − 1| / 1
        metrics.assert_equivariant(first_x, x, "C4", input="points")


def test_a_single_input_is_refused_whatever_the_output_width():
    from symwrap.errors import ShapeError

    with pytest.raises(ShapeError, match="at least 2 inputs; got 1$"):
        metrics.centred_equivariance_error(offset_first_point, OFFSET_POINTS[:1], "C4", input="points",
                                           output="vector")


def test_a_finite_group_is_sampled_when_n_is_given():
    model = _FirstPoint()
    x = torch.randn(2, 3, 2)
    metrics.equivariance_error(model, x, "C1", input="points", output="vector", n=3)
    assert model.batches == [2, 3 * 2]  # 3 copies of the trivial group's one element, as asked


def _two_faced(bad_rows: int):
    """A model named ``two_faced`` whose output fits output="vector" under SO3, (B, 3), except on batches of
    ``bad_rows`` inputs, where it returns (B, 2): a metric must check every call, the first and the copies."""

    def two_faced(points):
        return points[:, 0, :2] if points.shape[0] == bad_rows else points[:, 0]

    return two_faced


@pytest.mark.parametrize("name", ["equivariance_error", "equivariance_errors", "averaged_equivariance_error",
                                  "centred_equivariance_error", "lie_derivative"])
@pytest.mark.parametrize("bad", ["first call", "transformed copies"])
def test_every_metric_checks_the_output_of_every_call(name, bad):
    x = torch.randn(2, 4, 3)
    rows = 2 if bad == "first call" else 3 * 2  # 3 basis directions for the Lie derivative, 3 sampled elements else
    kw = {} if name == "lie_derivative" else {"n": 3}
    with pytest.raises(BackboneOutputError, match=r"^the model two_faced returned a torch.float32 tensor of shape "
                                                  rf"\({rows}, 2\), which does not fit output='vector': .* \(B, 3\) "
                                                  r"for SO3"):
        METRICS[name](_two_faced(rows), x, "SO3", input="points", output="vector", **kw)


@pytest.mark.parametrize("bad", ["first call", "transformed copies"])
def test_prediction_agreement_checks_the_logits_of_every_call(bad):
    rows = 2 if bad == "first call" else 4 * 2

    def two_faced(images):
        logits = images[:, 0, 0, :]
        return logits * float("nan") if images.shape[0] == rows else logits

    with pytest.raises(BackboneOutputError, match=rf"^the model two_faced returned NaN or inf for finite inputs "
                                                  rf"\(a torch.float32 tensor of shape \({rows}, 2\)\)"):
        prediction_agreement(two_faced, torch.randn(2, 1, 2, 2), "C4", input="image")

    def flat(images):
        return images.sum((1, 2, 3)) if images.shape[0] == rows else images[:, 0, 0, :]

    with pytest.raises(BackboneOutputError, match=r"^prediction_agreement compares predicted classes: the model flat "
                                                  r"must return real logits \(B, classes\); got a torch.float32 "
                                                  rf"tensor of shape \({rows},\)"):
        prediction_agreement(flat, torch.randn(2, 1, 2, 2), "C4", input="image")


def test_metrics_name_the_model_and_what_it_was_given():
    def boom(points):
        raise ValueError("no")

    with pytest.raises(symwrap.errors.BackboneError, match=r"^the model boom raised ValueError on a torch.float32 "
                                                          r"tensor of shape \(2, 4, 3\): no"):
        metrics.equivariance_error(boom, torch.randn(2, 4, 3), "SO3", input="points")

    class NaNs(nn.Module):
        def forward(self, points):
            return points[:, 0] * float("nan")

    with pytest.raises(BackboneOutputError, match=r"^the model NaNs returned NaN or inf for finite inputs \(a "
                                                  r"torch.float32 tensor of shape \(2, 3\)\)"):
        metrics.equivariance_error(NaNs(), torch.randn(2, 4, 3), "SO3", input="points", output="vector")


def test_dict_outputs_are_checked_and_measured_field_by_field():
    """f(x) = {"first": p, "size": ‖p‖} is equivariant; NaN in one field is refused."""
    x = torch.randn(3, 4, 3)
    output = {"first": "vector", "size": "invariant"}
    both = lambda points: {"first": points[:, 0], "size": points[:, 0].norm(dim=-1, keepdim=True)}  # noqa: E731
    assert metrics.equivariance_error(both, x, "SO3", input="points", output=output) < 1e-6
    broken = lambda points: {"first": points[:, 0], "size": points[:, 0, :1] / 0}  # noqa: E731
    with pytest.raises(BackboneOutputError, match=r"^the model <lambda> returned NaN or inf for finite inputs"):
        metrics.equivariance_error(broken, x, "SO3", input="points", output=output)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lie_derivative_in_half_precision(dtype):
    """The same hand value as test_lie_derivative_by_hand, within half-precision round-off (torch's own matrix
    exponential is wrong in these dtypes: exp(0) is not the identity)."""
    x = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, -1.0], [1.0, 1.0]]], dtype=dtype)
    stretch = lambda points: points[:, 0] * torch.tensor([1.0, 2.0], dtype=dtype)  # noqa: E731
    expected = (math.sqrt(5 / 17) + math.sqrt(10 / 13)) / 2
    assert lie_derivative(stretch, x, "SO2", input="points", output="vector") == pytest.approx(expected, rel=2e-2)
    assert lie_derivative(lambda points: points[:, 0], x, "SO2", input="points", output="vector") == 0.0


@pytest.mark.parametrize("name", METRICS)
def test_every_metric_checks_the_input_against_the_group(name):
    """2D points under SO3: refused up front, with the shape the group needs."""
    logits = lambda points: points.flatten(1)  # noqa: E731
    with pytest.raises(ActionError, match=r"'points' data must be \(B, N, 3\) for SO3; got shape \(2, 4, 2\)"):
        METRICS[name](logits, torch.randn(2, 4, 2), "SO3", input="points", output="invariant")


# --- defaults and arguments that must reach every step ------------------------------------------------------------
def test_relative_errors_do_not_depend_on_the_scale_of_the_data():
    """The default ``eps`` only guards 0/0: outputs a thousand times smaller give the same hand values as in
    test_the_default_output_is_invariant (centred error 1.5) and test_lie_derivative_by_hand."""
    x = torch.tensor([[[1.0, 3.0]], [[-1.0, 0.5]]], dtype=torch.float64) / 1000
    first_x = lambda points: points[:, 0, :1]  # noqa: E731
    assert metrics.centred_equivariance_error(first_x, x, "C4", input="points") == pytest.approx(1.5, rel=1e-9)
    assert metrics.equivariance_error(first_x, x, "C4", input="points") == pytest.approx(1.5, rel=1e-9)
    points = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, -1.0], [1.0, 1.0]]], dtype=torch.float64) / 1000
    stretch = lambda p: p[:, 0] * torch.tensor([1.0, 2.0], dtype=p.dtype)  # noqa: E731
    expected = (math.sqrt(5 / 17) + math.sqrt(10 / 13)) / 2
    assert lie_derivative(stretch, points, "SO2", input="points", output="vector") == pytest.approx(expected, rel=1e-9)


def test_assert_equivariant_samples_n_elements_from_the_generator():
    """With ``n`` and a generator, assert_equivariant measures the very copies equivariance_error measures
    (its mean is E′), and its message counts the ``n`` sampled elements."""
    kw = {"input": "points", "output": "vector", "n": 3}
    result = metrics.assert_equivariant(offset_first_point, OFFSET_POINTS, "SO2", tolerance=100,
                                        generator=torch.Generator().manual_seed(4), **kw)
    mean = metrics.equivariance_error(offset_first_point, OFFSET_POINTS, "SO2",
                                      generator=torch.Generator().manual_seed(4), **kw)
    assert result["mean"] == pytest.approx(mean, rel=1e-6) and 0 < result["mean"] < result["max"]
    with pytest.raises(EquivarianceAssertionError, match=r"at element [0-2] of 3 \(sampled\), sample [01]$"):
        metrics.assert_equivariant(offset_first_point, OFFSET_POINTS, "C4", **kw)


def test_assert_equivariant_uses_every_element_up_to_order_1024():
    """C1024 is the largest group checked on every element: its half turn, element 512, is the worst (as in
    test_assert_equivariant_names_the_worst_element_and_sample); C1025 is sampled."""
    with pytest.raises(EquivarianceAssertionError, match=r"largest relative error 4 \(mean [\d.]+\) at element 512 "
                                                         r"of 1024 \(all elements\), sample 1$"):
        metrics.assert_equivariant(offset_first_point, OFFSET_POINTS, "C1024", input="points", output="vector")
    with pytest.raises(EquivarianceAssertionError, match=r"at element \d+ of 16 \(sampled\), sample \d$"):
        metrics.assert_equivariant(offset_first_point, OFFSET_POINTS, "C1025", input="points", output="vector")


def test_assert_equivariant_message_is_reproducible_with_a_generator():
    """Every sampled element, those of the breakdown by part included, comes from ``generator``: the translation
    alone, whose error ‖t‖/‖p‖ depends on the sampled t, gives the same message twice."""
    x = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 3.0, 2.0]]], dtype=torch.float64).repeat(2, 1, 1)
    messages = []
    for _ in range(2):
        with pytest.raises(EquivarianceAssertionError) as raised:
            metrics.assert_equivariant(lambda points: points[:, 0], x, "E3", input="points", output="vector",
                                       generator=torch.Generator().manual_seed(1))
        messages.append(str(raised.value))
    assert _part_errors(messages[0])["translations"] > 0.1
    assert messages[0] == messages[1]


def test_assert_equivariant_measures_integer_data_as_its_float_copy():
    """Atom types are integers: the elements, and the rotation alone of the breakdown, are real rotations all the
    same. A (a, 0, 0) vector read from atom types is not rotated with them, so rotations alone break it."""
    atoms = torch.tensor([[[1], [6], [8]], [[1], [1], [7]]])
    first_atom = lambda a: nn.functional.pad(a[:, 0].to(torch.float32), (0, 2))  # noqa: E731
    messages = []
    for x in (atoms, atoms.float()):
        with pytest.raises(EquivarianceAssertionError) as raised:
            metrics.assert_equivariant(first_atom, x, "SO3xS", input="scalars", output="vector",
                                       generator=torch.Generator().manual_seed(0))
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert 1 < _part_errors(messages[0])["rotations and reflections"] <= 2  # ‖e1 − R·e1‖, at most 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_lie_derivative_on_cuda():
    """The Lie algebra basis and the tangents follow the data onto its device: the hand value of
    test_lie_derivative_by_hand, for SO2 and SE3."""
    x = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, -1.0], [1.0, 1.0]]], dtype=torch.float64, device="cuda")
    stretch = lambda p: p[:, 0] * torch.tensor([1.0, 2.0], dtype=p.dtype, device=p.device)  # noqa: E731
    expected = (math.sqrt(5 / 17) + math.sqrt(10 / 13)) / 2
    assert lie_derivative(stretch, x, "SO2", input="points", output="vector") == pytest.approx(expected, rel=1e-9)
    assert lie_derivative(centroid, torch.randn(3, 5, 3, device="cuda"), "SE3", input="points", output="point") < 1e-5
