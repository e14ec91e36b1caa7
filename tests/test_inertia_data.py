"""The modified inertia task (PER, arXiv 2306.00356): exactly O(3)-equivariant at α = 0; at α > 0 equivariant under
O(2) about the axis (and the mirror across it) but not under O(3) or O(2) about another axis."""

import pytest
import torch
from helpers import make_generator

import symwrap
from symwrap.data import inertia_tensor, load_dataset, modified_inertia, modified_inertia_tensor
from symwrap.errors import ConfigError, ShapeError


def relative_error(data, group, seed=0):
    """max over samples of ‖T(g·x) − g·T(x)‖ / ‖T(x)‖, with the library's own actions moving input and target."""
    x, target = data.inputs(), data.target
    g = group.sample(len(data), generator=make_generator(seed), dtype=torch.float64)
    moved_x = symwrap.actions.get_action({"pos": "points", "mass": "scalars"}).act(group, g, x)
    moved_target = symwrap.actions.get_action("tensor").act(group, g, target)
    recomputed = modified_inertia_tensor(moved_x["mass"], moved_x["pos"], data.alpha, data.axis)
    return float(((recomputed - moved_target).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1)).max())


@pytest.fixture(scope="module")
def exact():
    return modified_inertia(64, alpha=0.0, seed=1, dtype=torch.float64)


@pytest.fixture(scope="module")
def broken():
    return modified_inertia(64, alpha=0.3, seed=1, dtype=torch.float64)


@pytest.mark.parametrize("name", ["O3", "SO3", "O2z", "O2y", "Mz"])
def test_alpha_zero_is_equivariant_under_o3_and_its_subgroups(exact, name):
    assert relative_error(exact, symwrap.get_group(name)) < 1e-12


def test_alpha_zero_is_the_plain_inertia_tensor(exact):
    assert torch.equal(exact.target, inertia_tensor(exact.mass, exact.pos))
    assert torch.allclose(exact.target, exact.target.transpose(-1, -2))


@pytest.mark.parametrize("name", ["O2z", "SO2z", "Mz"])
def test_alpha_positive_keeps_the_symmetries_that_fix_the_axis(broken, name):
    assert relative_error(broken, symwrap.get_group(name)) < 1e-12


@pytest.mark.parametrize("group", [symwrap.get_group("O3"), symwrap.get_group("SO3"), symwrap.get_group("O2y"),
                                   symwrap.groups.AxialO2("x")], ids=lambda g: g.name)
def test_alpha_positive_breaks_o3_and_the_other_axes(broken, group):
    assert relative_error(broken, group) > 0.05


def test_the_breaking_grows_with_alpha():
    errors = [relative_error(modified_inertia(64, alpha=a, seed=2, dtype=torch.float64), symwrap.get_group("O3"))
              for a in (0.1, 0.3, 1.0)]
    assert errors[0] < errors[1] < errors[2]


def test_the_axis_chooses_which_o2_is_kept():
    data = modified_inertia(32, alpha=0.3, axis="y", seed=3, dtype=torch.float64)
    assert relative_error(data, symwrap.get_group("O2y")) < 1e-12
    assert relative_error(data, symwrap.get_group("O2z")) > 0.05


def test_a_hand_computed_sample():
    mass = torch.tensor([[2.0]], dtype=torch.float64)
    pos = torch.tensor([[[1.0, 0.0, 1.0]]], dtype=torch.float64)
    inertia = 2.0 * (2.0 * torch.eye(3, dtype=torch.float64) - torch.outer(pos[0, 0], pos[0, 0]))
    expected = inertia.clone()
    expected[:, 2] += 0.5 * inertia[:, 2]  # α (I z) zᵀ adds α times I's z column to the z column
    assert torch.allclose(modified_inertia_tensor(mass, pos, 0.5)[0], expected)


def test_sampling_is_seeded_and_follows_per():
    a, b = modified_inertia(8, seed=5), modified_inertia(8, seed=5)
    assert torch.equal(a.target, b.target) and torch.equal(a.pos, b.pos)
    assert not torch.equal(a.pos, modified_inertia(8, seed=6).pos)
    assert a.pos.shape == (8, 5, 3) and a.mass.shape == (8, 5) and a.target.shape == (8, 3, 3)
    assert a.target.dtype == torch.float32 and (a.mass > 0).all() and a.alpha == 0.3
    assert len(a.subset(slice(2, 5))) == 3


def test_the_registered_data_set():
    splits = load_dataset("modified_inertia", n_train=10, n_val=0, n_test=4, alpha=0.0)
    x, y = splits.train[0]
    assert set(x) == {"pos", "mass"} and y.shape == (3, 3)
    assert splits.val is None and len(splits.test) == 4
    assert splits.output == "tensor" and splits.input == {"pos": "points", "mass": "scalars"}
    assert not torch.equal(splits.train[0][0]["pos"], splits.test[0][0]["pos"])  # splits do not share samples


@pytest.mark.parametrize("options, message", [
    ({"alpha": -0.1}, "alpha must be a finite number >= 0; got -0.1"),
    ({"alpha": float("nan")}, "alpha must be a finite number >= 0"),
    ({"axis": "w"}, "axis must be one of 'x', 'y', 'z'; got 'w'"),
    ({"points": 0}, "points must be an integer >= 1; got 0"),
    ({"seed": -1}, "seed must be an integer >= 0; got -1"),
])
def test_bad_options_say_what_was_expected(options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        modified_inertia(4, **options)


def test_bad_shapes_are_refused():
    with pytest.raises(ShapeError, match=r"expected mass \(B, N\) and pos \(B, N, 3\)"):
        inertia_tensor(torch.ones(2, 5), torch.ones(2, 5, 2))
