import pytest
import torch
from torch import nn

import symwrap
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
        lie_derivative(radii, torch.randn(2, 4, 3), "C4xS", input="points")


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
