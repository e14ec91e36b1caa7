"""Constraint relaxation (arXiv 2408.13242): relaxed layers scheduled away, the equivariant network at the end."""

import pytest
import torch
from torch import nn

import symwrap
from symwrap.errors import ConfigError, IncompatibleGroupError
from symwrap.metrics import equivariance_error
from symwrap.nn import EGNNDynamics, VNLinear, VNLinearLeakyReLU
from symwrap.strategies.relaxation import RelaxationConfig, list_relaxation_adapters, theta_at
from symwrap.strategies.relaxation.adapters import VectorNeuronTerm, adapter_for, group_directions

PARTICLES = {"pos": "points", "vel": "vectors", "charge": "scalars"}


class VNPointNet(nn.Module):
    """(B, N, 3) points to one 3-vector: Vector-Neuron layers, then the mean over points. O(3)-equivariant."""

    def __init__(self, hidden: int = 4) -> None:
        super().__init__()
        self.first = VNLinearLeakyReLU(1, hidden)
        self.second = VNLinearLeakyReLU(hidden, hidden)
        self.out = VNLinear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.transpose(1, 2).unsqueeze(1)  # (B, 1, 3, N)
        return self.out(self.second(self.first(z))).mean(-1)[:, 0]


def vn_model(dtype=torch.float32, **config):
    torch.manual_seed(0)
    return symwrap.wrap(VNPointNet().to(dtype), group="SO3", strategy="relaxation", input="points", output="vector",
                        **config)


def points(dtype=torch.float32):
    return torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)


def test_eval_mode_and_theta_zero_are_the_backbone_bit_for_bit():
    model = vn_model(init="normal", init_std=0.5, total_steps=10)
    bare = model.project()  # a copy of the backbone without the relaxation hooks
    x = points()
    assert set(model.terms) == {"first", "second", "out"}
    model.train()
    assert model.theta == 0.0  # step 0 of the triangle
    assert torch.equal(model(x), bare(x))
    model.step(5)
    assert model.theta == 1.0 and not torch.equal(model(x), bare(x))
    model.eval()
    assert model.theta == 0.0 and torch.equal(model(x), bare(x))
    assert equivariance_error(model, x, "SO3", input="points", output="vector") <= 1e-5
    model.train()
    assert torch.equal(model.project()(x), bare(x)) and not hasattr(bare, "terms")


def test_relaxed_terms_break_the_symmetry_while_theta_is_positive():
    model = vn_model(init="normal", init_std=0.5, total_steps=10).train()
    x = points()
    exact = equivariance_error(model, x, "SO3", input="points", output="vector")
    model.step(5)
    relaxed = equivariance_error(model, x, "SO3", input="points", output="vector")
    assert exact <= 1e-5 and relaxed > 1e-2
    model.step(5)  # the end of the schedule: θ = 0 again, the network is exactly equivariant
    assert model.theta == 0.0
    assert equivariance_error(model, x, "SO3", input="points", output="vector") <= 1e-5


def test_the_triangle_and_constant_schedules():
    config = RelaxationConfig(total_steps=8)
    assert [theta_at(s, config) for s in range(10)] == [0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    constant = RelaxationConfig(schedule="constant", theta=0.1)
    assert {theta_at(s, constant) for s in (0, 5, 10**6)} == {0.1}


def test_every_training_loss_is_one_step_of_the_schedule():
    model = vn_model(total_steps=4).train()
    x, y = points(), torch.randn(5, 3)
    for expected in (1, 2):
        model.loss(model(x), y, x)["total"].backward()
        assert int(model.relaxation_step) == expected
    with torch.no_grad():
        model.loss(model(x), y, x)
    model.eval()
    model.loss(model(x), y, x)
    assert int(model.relaxation_step) == 2


def equivariant_term(in_channels=2, out_channels=3):
    """A Vector-Neuron term that is equivariant: the weights act on channels only (W ⊗ I_3), no bias."""
    term = VectorNeuronTerm(in_channels, out_channels)
    with torch.no_grad():
        term.linear.weight.copy_(torch.kron(torch.randn(out_channels, in_channels), torch.eye(3)))
        term.linear.bias.zero_()
    return term


@pytest.mark.parametrize("group", ["SO3", "O3", "C4"])
def test_the_lie_derivative_is_zero_for_an_equivariant_term_and_not_for_a_random_one(group):
    torch.manual_seed(0)
    layer = VNLinear(2, 3)
    adapter = adapter_for(layer)
    z = torch.randn(4, 2, 3, 5, dtype=torch.float64)
    config = RelaxationConfig()
    group = symwrap.get_group(group) if group != "C4" else symwrap.get_group("SO3")
    equivariant = equivariant_term().double()
    derivative, norm = adapter.regulariser(layer, (z,), equivariant, group, config)
    assert float(derivative) <= 1e-20 and float(norm) > 0.1
    random = VectorNeuronTerm(2, 3).double()
    derivative, _ = adapter.regulariser(layer, (z,), random, group, config)
    assert float(derivative) > 1e-2


def test_the_lie_derivative_is_the_derivative_along_the_one_parameter_subgroups():
    """LD = Σ_k ‖d/dt exp(−tA_k)·R(exp(tA_k)·z)|_{t=0}‖², the derivative computed here with torch.func.jvp."""
    torch.manual_seed(0)
    layer = VNLinear(2, 3)
    term = VectorNeuronTerm(2, 3).double()
    z = torch.randn(4, 2, 3, 5, dtype=torch.float64)
    group = symwrap.get_group("SO3")
    expected = 0.0
    for generator in group.lie_algebra(dtype=torch.float64):
        def moved(t, generator=generator):
            forward, backward = torch.linalg.matrix_exp(t * generator), torch.linalg.matrix_exp(-t * generator)
            return torch.einsum("ij,bcj...->bci...", backward, term(torch.einsum("ij,bcj...->bci...", forward, z)))

        _, derivative = torch.func.jvp(moved, (torch.zeros((), dtype=torch.float64),),
                                       (torch.ones((), dtype=torch.float64),))
        expected += float(derivative.pow(2).flatten(1).sum(1).mean())
    measured, _ = adapter_for(layer).regulariser(layer, (z,), term, group, RelaxationConfig())
    assert float(measured) == pytest.approx(expected, rel=1e-10)


def test_the_regulariser_trains_only_the_relaxation_terms():
    model = vn_model(init="normal", init_std=0.1).train()
    x = points()
    model(x)
    terms = model.auxiliary_loss(x)
    assert set(terms) == {"relaxation"} and float(terms["relaxation"]) > 0
    terms["relaxation"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.terms.parameters())


def test_the_regulariser_is_lambda_times_the_square_roots_and_lie_derivative_can_be_left_out():
    model = vn_model(init="normal", init_std=0.1, reg_weight=0.5).train()
    x = points()
    model(x)
    derivative, norm = model.regularisers()
    torch.testing.assert_close(model.auxiliary_loss(x)["relaxation"], 0.5 * (derivative.sqrt() + norm.sqrt()))
    without = vn_model(init="normal", init_std=0.1, lie_derivative=False).train()
    without(x)
    derivative, norm = without.regularisers()
    assert float(derivative) == 0.0 and float(norm) > 0


def test_save_and_load_keep_the_terms_and_the_step(tmp_path):
    model = vn_model(init="normal", init_std=0.1, total_steps=10)
    model.step(3)
    model.save_pretrained(tmp_path)
    torch.manual_seed(5)
    loaded = symwrap.load(tmp_path, VNPointNet())
    assert int(loaded.relaxation_step) == 3 and loaded.config == model.config
    x = points()
    model.train()
    loaded.train()
    assert loaded.theta == model.theta == 0.6
    assert torch.equal(loaded(x), model(x))


def test_a_backbone_without_relaxable_layers_is_refused_with_the_supported_types():
    assert "symwrap.VNLinear" in list_relaxation_adapters() and "escnn.R2Conv" in list_relaxation_adapters()
    with pytest.raises(ConfigError, match=r"has none of \[.*VNLinear.*\]\. Register an adapter"):
        symwrap.wrap(nn.Linear(3, 3), group="SO3", strategy="relaxation", input="vector", output="vector")


def test_vector_neuron_layers_need_a_group_rotating_three_dimensional_vectors():
    with pytest.raises(IncompatibleGroupError, match="Vector-Neuron layers carry 3-D vectors, which SO2"):
        symwrap.wrap(VNPointNet(), group="SO2", strategy="relaxation", input="points", output="vector")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("schedule", "cosine", "schedule must be one of"),
    ("total_steps", 0, "total_steps must be an integer >= 1; got 0"),
    ("reg_weight", -1.0, "reg_weight must be >= 0"),
    ("init", "ones", "init must be one of"),
])
def test_config_values_are_checked(field, value, message):
    with pytest.raises(ConfigError, match=message):
        RelaxationConfig(**{field: value})


def test_group_directions_split_rotations_and_translations():
    config = RelaxationConfig()
    kind, directions = group_directions(symwrap.get_group("E3"), config, dtype=torch.float64,
                                        device=torch.device("cpu"))
    assert kind == "lie" and len(directions) == 6
    assert sum(1 for linear, shift in directions if float(linear.abs().sum()) > 0) == 3
    kind, directions = group_directions(symwrap.get_group("C4"), config, dtype=torch.float64,
                                        device=torch.device("cpu"))
    assert kind == "finite" and len(directions) == 3  # the non-identity quarter turns


def test_egnn_layers_are_relaxed_against_rotations_and_translations():
    torch.manual_seed(0)
    backbone = EGNNDynamics(hidden=8, layers=2)
    model = symwrap.wrap(backbone, group="E3", strategy="relaxation", input=PARTICLES, output="points",
                         init="normal", init_std=0.1, total_steps=4)
    assert len(model.terms) == 2
    generator = torch.Generator().manual_seed(2)
    x = {"pos": torch.randn(3, 5, 3, generator=generator), "vel": torch.randn(3, 5, 3, generator=generator),
         "charge": torch.randn(3, 5, generator=generator)}
    model.eval()
    assert torch.equal(model(x), model.project()(x))
    assert equivariance_error(model, x, "E3", input=PARTICLES, output="points") <= 1e-5
    model.train()
    model.step(2)
    assert equivariance_error(model, x, "E3", input=PARTICLES, output="points") > 1e-3
    model(x)
    derivative, norm = model.regularisers()
    assert float(derivative) > 0 and float(norm) > 0
    zero = symwrap.wrap(EGNNDynamics(hidden=8, layers=2), group="E3", strategy="relaxation", input=PARTICLES,
                        output="points").train()
    zero(x)
    assert [float(v) for v in zero.regularisers()] == [0.0, 0.0]  # zero-initialised terms


def test_escnn_convolutions_are_relaxed_with_their_field_transforms():
    pytest.importorskip("escnn")
    from symwrap.nn import SteerableCNN

    torch.manual_seed(0)
    backbone = SteerableCNN("C4", in_channels=1, num_classes=3, hidden=2, layers=2)
    model = symwrap.wrap(backbone, group="C4", strategy="relaxation", input="image", output="invariant",
                         init="normal", init_std=0.1, total_steps=4)
    assert len(model.terms) == 2
    x = torch.randn(4, 1, 9, 9, generator=torch.Generator().manual_seed(3))
    model.eval()
    assert torch.equal(model(x), model.project().eval()(x))
    assert equivariance_error(model, x, "C4", input="image", output="invariant") <= 1e-5
    model.train()
    model.step(2)
    assert equivariance_error(model, x, "C4", input="image", output="invariant") > 1e-3
    model(x)
    derivative, _ = model.regularisers()
    assert float(derivative) > 0


def test_a_deep_copy_calls_its_own_terms_and_fit_advances_the_schedule():
    import copy

    model = vn_model(init="normal", init_std=0.3, total_steps=6)
    model.step(3)
    twin = copy.deepcopy(model)
    x = points()
    model.train()
    twin.train()
    assert torch.equal(twin(x), model(x))
    with torch.no_grad():
        for parameter in twin.terms.parameters():
            parameter.zero_()
    assert torch.equal(twin(x), model.project()(x)) and not torch.equal(model(x), twin(x))
    loader = [(points(), torch.randn(5, 3))] * 2
    symwrap.fit(model, loader, epochs=1, progress=False, log_every=None)
    assert int(model.relaxation_step) == 5


@pytest.mark.parametrize("continuous", ["SO2", "O2", "C4", "D4"])
def test_escnn_convolutions_measure_ld_with_the_field_transforms(continuous):
    """Finite groups: their generators; SO(2)/O(2): the quarter turn (and a flip), which move grids exactly."""
    pytest.importorskip("escnn")
    from escnn import gspaces
    from escnn import nn as enn

    from symwrap.strategies.relaxation.adapters import escnn_elements

    n = 4 if continuous in ("C4", "D4") else -1
    gspace = (gspaces.rot2dOnR2(N=n, maximum_frequency=2) if continuous in ("SO2", "C4")
              else gspaces.flipRot2dOnR2(N=n, maximum_frequency=2))
    assert len(escnn_elements(gspace.fibergroup, 8)) == (1 if continuous in ("SO2", "C4") else 2)
    torch.manual_seed(0)
    conv = enn.R2Conv(enn.FieldType(gspace, [gspace.trivial_repr]), enn.FieldType(gspace, 2 * [gspace.trivial_repr]),
                      5, padding=2)
    adapter = adapter_for(conv)
    config = RelaxationConfig(init="normal", init_std=0.1)
    term = adapter.build(conv, symwrap.get_group(continuous), config)
    x = enn.GeometricTensor(torch.randn(2, 1, 9, 9), conv.in_type)
    derivative, norm = adapter.regulariser(conv, (x,), term, symwrap.get_group(continuous), config)
    assert float(derivative) > 0 and float(norm) > 0
    with torch.no_grad():  # a term built from the layer itself is equivariant: LD vanishes
        conv.train()
        filters, bias = conv.expand_parameters()
        term.weight.copy_(filters)
        term.bias.copy_(bias if bias is not None else torch.zeros_like(term.bias))
    derivative, _ = adapter.regulariser(conv, (x,), term, symwrap.get_group(continuous), config)
    assert float(derivative) <= 1e-10
