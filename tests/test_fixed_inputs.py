"""Approximate equivariance by fixed inputs (arXiv 2406.13488): ρ̃(Z) = ρ(Z, t), exactly ρ with t = 0."""

import pytest
import torch
from contract_cases import VNPointNet

import symwrap
from symwrap.errors import ConfigError
from symwrap.metrics import equivariance_error
from symwrap.strategies.fixed_inputs import FixedInputsConfig, grid_positions

pytest.importorskip("escnn")


def steerable():
    from symwrap.nn import SteerableCNN

    torch.manual_seed(0)
    return SteerableCNN("C4", in_channels=1, num_classes=3, hidden=2, layers=2)


def images():
    return torch.randn(4, 1, 9, 9, generator=torch.Generator().manual_seed(1))


def randomise(model, std=0.5):
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in [*model.positions_net.parameters(),
                          *(model.projection.parameters() if model.projection is not None else [])]:
            parameter.normal_(0, std)
    return model


def image_model(**config):
    return symwrap.wrap(steerable(), group="C4", strategy="fixed_inputs", input="image", output="invariant", **config)


def test_fixed_inputs_start_at_zero_and_the_model_is_the_backbone():
    model = image_model(num_fixed=4).eval()
    x = images()
    assert model.config.channels == 1  # read from the steerable CNN
    assert torch.equal(model(x), steerable().eval()(x))
    assert equivariance_error(model, x, "C4", input="image", output="invariant") <= 1e-5
    none = image_model(num_fixed=0).eval()
    assert torch.equal(none(x), steerable().eval()(x))


@pytest.mark.parametrize("inject", ["input", "blocks.1"])
def test_learned_fixed_inputs_break_the_symmetry_and_the_component_keeps_it(inject):
    model = randomise(image_model(num_fixed=4, inject=inject)).eval()
    x = images()
    assert equivariance_error(model, x, "C4", input="image", output="invariant") > 1e-2
    assert model.equivariance_deviation(x) > 1e-3
    with model.equivariant_component():
        assert torch.equal(model(x), steerable().eval()(x))
        assert equivariance_error(model, x, "C4", input="image", output="invariant") <= 1e-5


def test_moving_the_fixed_inputs_with_the_data_keeps_the_symmetry():
    """f(g·x; g·t) = g·f(x; t): the fixed inputs break the symmetry only because the group does not move them."""
    model = randomise(image_model(num_fixed=4)).eval()
    x = images()
    grid = grid_positions((9, 9), dtype=x.dtype, device=x.device)
    field = model.fixed_values(grid)  # (9, 9, B)
    expected = model(x)
    for quarter in range(1, 4):
        model.fixed_values = lambda positions, q=quarter: torch.rot90(field, q, dims=(0, 1))
        torch.testing.assert_close(model(torch.rot90(x, quarter, dims=(2, 3))), expected, atol=1e-5, rtol=1e-5)
    del model.fixed_values


def test_outside_the_domain_the_model_is_the_equivariant_component():
    torch.manual_seed(0)
    backbone = VNPointNet()
    model = randomise(symwrap.wrap(backbone, group="SO3", strategy="fixed_inputs", input="points",
                                   output="vector", num_fixed=3, domain=[[-1.0, 1.0]] * 3)).eval()
    inside = torch.rand(2, 6, 3, generator=torch.Generator().manual_seed(1)) - 0.5
    outside = inside + 5.0
    assert model.equivariance_deviation(inside) > 1e-3
    assert model.equivariance_deviation(outside) == 0.0
    assert torch.equal(model(outside), backbone(outside))


def test_p_drop_one_is_the_component_while_training_and_evaluation_never_drops():
    model = randomise(image_model(num_fixed=4, p_drop=1.0))
    x = images()
    component = steerable().train()(x)
    assert torch.equal(model.train()(x), component)
    model.eval()
    assert not torch.equal(model(x), steerable().eval()(x))


def test_dropping_is_per_sample_and_follows_the_seed():
    model = randomise(image_model(num_fixed=4, p_drop=0.5, seed=0)).train()
    x = images().repeat(4, 1, 1, 1)  # 16 samples: some keep their fixed inputs, some do not
    component = steerable().train()(x)
    out = model(x)
    dropped = [torch.equal(out[i], component[i]) for i in range(16)]
    assert 0 < sum(dropped) < 16
    again = randomise(image_model(num_fixed=4, p_drop=0.5, seed=0)).train()
    assert torch.equal(again(x), out)


def test_points_get_fixed_inputs_added_to_their_coordinates():
    torch.manual_seed(0)
    model = randomise(symwrap.wrap(VNPointNet(), group="SO3", strategy="fixed_inputs", input="points",
                                   output="vector", num_fixed=2)).eval()
    x = torch.randn(3, 6, 3, generator=torch.Generator().manual_seed(2))
    assert model.config.channels == 3 and model.projection.weight.shape == (3, 2)
    assert equivariance_error(model, x, "SO3", input="points", output="vector") > 1e-2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"inject": "nowhere"}, "inject='nowhere' is not a submodule of the backbone SteerableCNN"),
    ({"mode": "stack"}, "mode must be one of"),
    ({"p_drop": 1.5}, r"p_drop must be in \[0, 1\]"),
    ({"domain": [[1.0, 0.0]]}, "domain must be a list of"),
    ({"domain": [[0.0, 1.0]]}, "domain has 1 \\[low, high\\] pairs; the positions have 2 coordinates"),
])
def test_misuse_is_refused_with_what_to_do(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        image_model(**kwargs)


def test_data_without_positions_is_refused():
    with pytest.raises(ConfigError, match="fixed inputs live at positions"):
        symwrap.wrap(torch.nn.Linear(3, 3), group="S", strategy="fixed_inputs", input="set", output="invariant")
    with pytest.raises(ConfigError, match="num_fixed must be an integer >= 0"):
        FixedInputsConfig(num_fixed=-1)


def test_fixed_inputs_join_the_node_features_of_an_egnn_on_particles():
    from symwrap.nn import EGNNDynamics

    particles = {"pos": "points", "vel": "vectors", "charge": "scalars"}
    torch.manual_seed(0)
    backbone = EGNNDynamics(hidden=8, layers=2)
    model = randomise(symwrap.wrap(backbone, group="E3", strategy="fixed_inputs", input=particles, output="points",
                                   inject="egnn.layers.0", channels=8, num_fixed=2), std=1.0).eval()
    generator = torch.Generator().manual_seed(2)
    x = {"pos": torch.randn(3, 5, 3, generator=generator), "vel": torch.randn(3, 5, 3, generator=generator),
         "charge": torch.randn(3, 5, generator=generator)}
    assert equivariance_error(model, x, "E3", input=particles, output="points") > 1e-3
    with model.equivariant_component():
        assert torch.equal(model(x), backbone(x))
    with pytest.raises(ConfigError, match="pass channels="):
        symwrap.wrap(EGNNDynamics(hidden=8, layers=2), group="E3", strategy="fixed_inputs", input=particles,
                     output="points", inject="egnn.layers.0")


NP_INPUT = {"x_context": "points", "y_context": "scalars", "x_target": "points", "context_mask": "scalars"}
NP_OUTPUT = {"mean": "scalars", "std": "scalars"}


def np_task(shift=0.0):
    from symwrap.data import sample_gp_tasks

    tasks = sample_gp_tasks(3, generator=0, num_context=(4, 8), num_targets=16, shift=shift, dtype=torch.float64)
    x = {"x_context": tasks.x_context, "y_context": tasks.y_context, "x_target": tasks.x_target,
         "context_mask": tasks.context_mask.to(torch.float64)}
    return tasks, x


def np_model(**config):
    from symwrap.nn import ConvCNP1d, TaskDictNP

    torch.manual_seed(0)
    backbone = TaskDictNP(ConvCNP1d(hidden=8, layers=2, points_per_unit=16)).double()
    return symwrap.wrap(backbone, group="T1", strategy="fixed_inputs", input=NP_INPUT, output=NP_OUTPUT,
                        inject="model.cnn", channels=2, task_loss="gaussian_nll", **config)


def test_a_neural_process_gets_fixed_inputs_at_its_absolute_grid_positions():
    """The ConvCNP tells where its grid sits; the fixed inputs live there, zero outside the domain."""
    from symwrap.losses import gaussian_nll

    model = randomise(np_model(num_fixed=4, domain=[[-4.5, 4.5]])).double().eval()
    tasks, x = np_task()
    pred = model(x)
    torch.testing.assert_close(model.loss(pred, tasks.y_target, x)["task"],
                               gaussian_nll(pred["mean"], pred["std"], tasks.y_target))
    assert model.equivariance_deviation(x) > 1e-3
    # a shift by whole grid steps moves the ConvCNP's grid exactly: its component is exactly translation-equivariant
    shifted = {key: value + 3 / 16 if key.startswith("x_") else value for key, value in x.items()}
    with model.equivariant_component():
        torch.testing.assert_close(model(shifted)["mean"], model(x)["mean"], atol=1e-9, rtol=0)
    assert (model(shifted)["mean"] - model(x)["mean"]).abs().max() > 1e-4  # the fixed inputs did not move
    _, far = np_task(shift=20.0)
    assert model.equivariance_deviation(far) == 0.0  # beyond the domain: exactly the equivariant component


def test_the_gaussian_task_loss_needs_a_mean_and_a_std():
    from symwrap.errors import TargetError

    model = np_model(num_fixed=2)
    tasks, x = np_task()
    with pytest.raises(TargetError, match="needs a target shaped like the mean"):
        model.loss(model(x), tasks.y_target[:, :3], x)
    with pytest.raises(TargetError, match="scores a prediction"):
        model.loss(tasks.y_target, tasks.y_target, x)


def test_the_deviation_of_one_output_field():
    model = randomise(np_model(num_fixed=4)).double().eval()
    _, x = np_task()
    with model.equivariant_component():
        base = model(x)
    expected = float((model(x)["mean"] - base["mean"]).abs().mean())
    assert model.equivariance_deviation(x, field="mean") == pytest.approx(expected) and expected > 0
    with pytest.raises(ConfigError, match="field='variance' names a field of a dict output; the output has"):
        model.equivariance_deviation(x, field="variance")
