import copy

import pytest
import torch
from torch import nn

import symwrap
from symwrap.errors import ConfigError, IncompatibleGroupError
from symwrap.metrics import equivariance_error, invariance_error
from symwrap.strategies import CloningConfig, SymmetryCloning
from symwrap.strategies.cloning import EGNNReadout, default_teacher, gaussian_like

PARTICLES = {"pos": "points", "vel": "vectors", "charge": "scalars"}


class Counting(nn.Module):
    """Wraps a module and counts its calls and the rows it saw."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.rows = []

    def forward(self, x):
        self.rows.append(x.shape[0])
        return self.module(x)


def equivariant_linear(group="C4", seed=0):
    """A random linear map of R^2 averaged over C4: it commutes with every quarter turn (and with SO2)."""
    c4 = symwrap.get_group("C4")
    rotations = c4.matrix(c4.elements())
    a = torch.randn(2, 2, generator=torch.Generator().manual_seed(seed))
    teacher = nn.Linear(2, 2, bias=False)
    teacher.weight.data = (rotations.transpose(1, 2) @ a @ rotations).mean(0)
    return teacher


def mlp():
    return nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2))


def clone_vectors(student, teacher, group="C4", **config):
    return symwrap.wrap(student, group=group, strategy="cloning", teacher=teacher, input="vector", output="vector",
                        **config)


@pytest.mark.parametrize("config", [
    {"inputs": "both", "transformed_copies": 2},
    {"inputs": "data", "distance": "kl", "temperature": 2.0},
    {"match": "outputs+features", "student_feature_layer": "module.1", "teacher_feature_layer": "module.1",
     "student_feature_dim": 32, "teacher_feature_dim": 32, "weight_anchor": 1.0},
])
def test_cloning_loss_is_zero_when_the_student_is_the_teacher(config):
    student = Counting(mlp())
    teacher = copy.deepcopy(student)
    model = clone_vectors(student, teacher, **config)
    if model.feature_projection is not None:  # an identity projection: equal features match exactly
        nn.init.eye_(model.feature_projection.weight)
        nn.init.zeros_(model.feature_projection.bias)
    x = torch.randn(8, 2)
    terms = model.cloning_loss(x)
    for name, value in terms.items():
        assert abs(float(value.detach())) < 1e-10, (name, float(value.detach()))
    expected = {"outputs_data", "total"}
    if model.config.uses_gaussian:
        expected.add("outputs_gaussian")
    if model.config.transformed_copies:
        expected.add("outputs_transformed")
    if model.config.uses_features:
        expected.add("features")
    if model.config.weight_anchor:
        expected.add("anchor")
    assert set(terms) == expected
    batch = 8 * (1 + model.config.transformed_copies * model.config.uses_data + model.config.uses_gaussian)
    assert student.rows == [batch] and teacher.rows == [batch]  # one call each on the joined batch
    terms["total"].backward()
    assert all(p.grad is None for p in teacher.parameters())


def test_cloning_loss_moves_the_student_towards_the_teacher_on_each_part():
    teacher = equivariant_linear()
    student = nn.Linear(2, 2, bias=False)
    model = clone_vectors(student, teacher, transformed_copies=3, seed=1)
    x = torch.randn(5, 2)
    terms = model.cloning_loss(x)
    difference = student.weight.detach() - teacher.weight
    g = symwrap.get_group("C4").matrix(symwrap.get_group("C4").sample(15, generator=torch.Generator().manual_seed(1)))
    moved = (g @ x.repeat(3, 1).unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(terms["outputs_data"], ((x @ difference.T) ** 2).mean())
    assert torch.allclose(terms["outputs_transformed"], ((moved @ difference.T) ** 2).mean())


@pytest.mark.parametrize("inputs", ["data", "both"])
def test_symmetry_copy_targets_equal_the_teachers_outputs_with_fewer_teacher_rows(inputs):
    """copy_targets="symmetry": the teacher sees x (and the Gaussian inputs) only; the targets of g·x are
    g·t(x), equal to t(g·x) for an equivariant teacher, so every loss term is unchanged."""
    x, student = torch.randn(5, 2), nn.Linear(2, 2, bias=False)
    terms, rows = {}, {}
    for source in ("teacher", "symmetry"):
        teacher = Counting(equivariant_linear())
        model = clone_vectors(copy.deepcopy(student), teacher, inputs=inputs, transformed_copies=3,
                              copy_targets=source, seed=1)
        terms[source], rows[source] = model.cloning_loss(x), teacher.rows
    for name, value in terms["teacher"].items():
        assert torch.allclose(terms["symmetry"][name], value, rtol=1e-5, atol=1e-7), name
    gaussian = 5 if inputs == "both" else 0
    assert rows == {"teacher": [5 + 15 + gaussian], "symmetry": [5 + gaussian]}


def test_symmetry_copy_targets_move_the_teachers_particle_outputs():
    teacher = default_teacher("SO3", PARTICLES, "points", hidden=8, layers=1)
    x = {"pos": torch.randn(3, 4, 3), "vel": torch.randn(3, 4, 3), "charge": torch.ones(3, 4, 1)}
    student = default_teacher("SO3", PARTICLES, "points", hidden=8, layers=1)
    losses = [symwrap.wrap(copy.deepcopy(student), group="SO3", strategy="cloning", teacher=teacher, input=PARTICLES,
                           output="points", inputs="data", transformed_copies=2, copy_targets=source,
                           seed=3).cloning_loss(x)["outputs_transformed"] for source in ("teacher", "symmetry")]
    assert torch.allclose(losses[0], losses[1], rtol=1e-4)


@pytest.mark.parametrize("group", ["C4", "SO2"])
def test_cloning_a_linear_student_recovers_an_equivariant_map(group):
    teacher = equivariant_linear()
    student = nn.Linear(2, 2, bias=False)
    model = clone_vectors(student, teacher, group=group, seed=0)
    x = torch.randn(64, 2)
    before = equivariance_error(model, x, group, input="vector", output="vector")
    history = model.clone(x, steps=250, lr=0.05, progress=False)
    after = equivariance_error(model, x, group, input="vector", output="vector")
    assert before > 0.1 and after < 1e-3, (before, after)
    assert torch.allclose(student.weight, teacher.weight, atol=1e-3)
    assert history[-1]["equivariance_error"] < 1e-3


def test_clone_history_shows_the_equivariance_error_falling():
    teacher = equivariant_linear()
    model = clone_vectors(mlp(), teacher, seed=0)
    x = torch.randn(64, 2)
    loader = [(x[:32], torch.zeros(32)), (x[32:], torch.zeros(32))]  # (x, y) batches; labels are ignored
    history = model.clone(loader, steps=150, lr=1e-2, log_every=50, progress=False, eval_inputs=x)
    assert [entry["step"] for entry in history] == [0, 50, 100, 150]
    errors = [entry["equivariance_error"] for entry in history]
    assert errors[0] > 10 * errors[-1] and errors[-1] < 0.05, errors
    assert history[-1]["total"] < history[0]["total"]
    assert model.cloning_history == history
    assert model.equivariance_log["before cloning"]["relative"] == errors[0]
    assert model.equivariance_log["after cloning"]["relative"] == errors[-1]
    more = model.clone(loader, steps=10, lr=1e-2, progress=False)  # steps keep counting; "before" is kept
    assert more[-1]["step"] == 160 and len(model.cloning_history) == len(history) + len(more)
    assert model.equivariance_log["before cloning"]["relative"] == errors[0]


def test_keep_holds_the_symmetry_that_break_lets_the_labels_destroy():
    """Labels y = diag(1, 0)·x are not C4-equivariant; the cloned student starts equivariant."""
    teacher = equivariant_linear()
    x = torch.randn(64, 2)
    y = x @ torch.tensor([[1.0, 0.0], [0.0, 0.0]]).T
    errors = {}
    for mode in ("keep", "break"):
        torch.manual_seed(0)
        model = clone_vectors(nn.Linear(2, 2, bias=False), teacher, beta=10.0, seed=0)
        model.clone(x, steps=200, lr=0.05, progress=False)
        history = model.fine_tune([(x, y)], steps=200, lr=0.05, mode=mode, progress=False)
        assert ("equivariance" in history[-1]) == (mode == "keep")
        errors[mode] = model.symmetry_drift(x)
        assert model.equivariance_log["after cloning"]["relative"] < 1e-3
    assert errors["keep"]["current"] < 0.1 < 0.5 < errors["break"]["current"], errors
    assert errors["break"]["drift"] > 10 * errors["keep"]["drift"]


def test_stage_two_loss_terms_and_modes():
    model = clone_vectors(nn.Linear(2, 2, bias=False), None, beta=2.0, seed=3)
    x, y = torch.randn(6, 2), torch.randn(6, 2)
    keep = model.loss(model(x), y, x)
    assert set(keep) == {"task", "equivariance", "total"}
    torch.testing.assert_close(keep["total"], keep["task"] + keep["equivariance"])
    with pytest.raises(ConfigError, match="needs the input"):
        model.loss(model(x), y)
    assert set(model.auxiliary_loss(x)) == {"equivariance"}
    broken = model.set_mode("break").loss(model(x), y, x)
    assert set(broken) == {"task", "total"} and model.auxiliary_loss(x) == {}
    with pytest.raises(ConfigError, match="mode"):
        model.set_mode("bend")


def test_equivariant_student_has_no_equivariance_term_to_pay():
    model = clone_vectors(equivariant_linear(), None, beta=1.0, num_samples=4)
    x, y = torch.randn(6, 2), torch.randn(6, 2)
    assert float(model.loss(model(x), y, x)["equivariance"]) < 1e-12
    assert float(model.loss(model(x), y, x)["task"]) > 0


def test_wrap_without_a_teacher_then_clone_raises():
    model = clone_vectors(mlp(), None)
    x = torch.randn(4, 2)
    with pytest.raises(ConfigError, match="needs a teacher"):
        model.clone(x, steps=1, progress=False)
    with pytest.raises(ConfigError, match="needs a teacher"):
        model.cloning_loss(x)
    model.set_teacher(equivariant_linear())
    assert set(model.cloning_loss(x)) >= {"outputs_data", "total"}
    with pytest.raises(ConfigError, match="shares parameters"):
        model.set_teacher(symwrap.wrap(model.backbone, group="C4", strategy="averaging", input="vector",
                                       output="vector"))
    assert all(p.requires_grad for p in model.parameters())


def test_the_teacher_is_frozen_and_outside_the_state_dict(tmp_path):
    torch.manual_seed(0)
    teacher = mlp()
    model = clone_vectors(mlp(), teacher, match="outputs+features", student_feature_layer="1",
                          teacher_feature_layer="1", student_feature_dim=32, teacher_feature_dim=32,
                          weight_anchor=0.1)
    x = torch.randn(16, 2)
    model.clone(x, steps=5, progress=False)
    assert not any(key.startswith("teacher") for key in model.state_dict())
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    assert {id(p) for p in teacher.parameters()}.isdisjoint(id(p) for p in model.parameters())
    model.save_pretrained(tmp_path)
    fresh = mlp()
    loaded = symwrap.load(tmp_path, backbone=fresh)
    assert isinstance(loaded, SymmetryCloning) and loaded.teacher is None
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(loaded(x), model(x))
    with_teacher = symwrap.load(tmp_path, backbone=mlp(), teacher=teacher)
    assert with_teacher.teacher is teacher
    model.double()  # the teacher follows the model's dtype and device
    assert next(teacher.parameters()).dtype == torch.float64
    assert model.cloning_loss(x.double())["total"].dtype == torch.float64


def test_weight_anchor_penalises_distance_from_the_starting_weights():
    student = nn.Linear(2, 2)
    model = clone_vectors(student, equivariant_linear(), weight_anchor=0.5, inputs="data")
    x = torch.randn(4, 2)
    assert float(model.cloning_loss(x)["anchor"]) == 0
    with torch.no_grad():
        student.weight.add_(1.0)
    assert torch.isclose(model.cloning_loss(x)["anchor"], torch.tensor(0.5 * 4))
    model.reset_anchor()
    assert float(model.cloning_loss(x)["anchor"]) == 0


def test_random_teachers_are_resampled_during_cloning():
    torch.manual_seed(0)
    teacher = EGNNReadout(out_features=2, hidden=8, layers=1)
    start = copy.deepcopy(teacher.state_dict())
    points = torch.randn(8, 5, 3)
    model = symwrap.wrap(nn.Sequential(nn.Flatten(), nn.Linear(15, 2)), group="SO3", strategy="cloning",
                         teacher=teacher, input="points", output="invariant", resample_teacher_every=2)
    model.clone(points, steps=2, progress=False)
    assert all(torch.equal(start[key], value) for key, value in teacher.state_dict().items())
    model.clone(points, steps=1, progress=False)  # step 3 starts a new teacher
    assert not torch.equal(start["head.weight"], teacher.state_dict()["head.weight"])
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert invariance_error(teacher, points, "E3", input="points") < 1e-5


def test_resampled_egnn_teachers_keep_their_near_zero_coordinate_output():
    """A redrawn EGNN is drawn like a new one: its coordinate updates start close to zero again."""
    from symwrap.nn import EGNNDynamics
    from symwrap.strategies.cloning import resample_parameters

    teacher = EGNNDynamics(hidden=16, layers=2)
    before = copy.deepcopy(teacher.state_dict())
    resample_parameters(teacher)
    after = teacher.state_dict()
    coordinate_outputs = [key for key in after if key.endswith("coord_mlp.2.weight")]
    assert len(coordinate_outputs) == 2
    for key in coordinate_outputs:
        assert after[key].abs().max() < 1e-3 and not torch.equal(after[key], before[key])
    changed = [key for key in after if not torch.equal(after[key], before[key])]
    assert len(changed) == len(after)


def test_gaussian_inputs_match_each_channel_and_keep_scalars():
    image = torch.randn(64, 3, 8, 8) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1) + torch.tensor(
        [0.0, 5.0, -1.0]).view(1, 3, 1, 1)
    noise = gaussian_like(symwrap.get_action("image"), image, 1.0, generator=torch.Generator().manual_seed(0))
    assert noise.shape == image.shape
    torch.testing.assert_close(noise.mean(dim=(0, 2, 3)), image.mean(dim=(0, 2, 3)), atol=0.1, rtol=0.0)
    torch.testing.assert_close(noise.std(dim=(0, 2, 3)), image.std(dim=(0, 2, 3)), atol=0.1, rtol=0.05)
    particles = {"pos": torch.randn(4, 5, 3), "vel": torch.randn(4, 5, 3), "charge": torch.ones(4, 5, 1)}
    drawn = gaussian_like(symwrap.get_action(PARTICLES), particles, 0.5)
    assert drawn["charge"] is particles["charge"] and not torch.equal(drawn["pos"], particles["pos"])
    with pytest.raises(ConfigError, match="not fields"):
        gaussian_like(symwrap.get_action(PARTICLES), particles, fields=["mass"])


def test_cloning_dict_inputs_in_one_call_per_model():
    teacher = default_teacher("SO3", PARTICLES, "points", hidden=8, layers=1)
    calls = []

    class Student(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(6, 3)

        def forward(self, x):
            calls.append(x["pos"].shape[0])
            return x["pos"] + self.linear(torch.cat([x["pos"], x["vel"]], dim=-1))

    model = symwrap.wrap(Student(), group="SO3", strategy="cloning", teacher=teacher, input=PARTICLES,
                         output="points")
    x = {"pos": torch.randn(3, 4, 3), "vel": torch.randn(3, 4, 3), "charge": torch.ones(3, 4, 1)}
    terms = model.cloning_loss(x)
    assert set(terms) == {"outputs_data", "outputs_transformed", "outputs_gaussian", "total"}
    assert calls == [9]
    assert equivariance_error(teacher, x, "E3", input=PARTICLES, output="points") < 1e-5


def test_default_teachers_and_their_errors():
    points = torch.randn(4, 6, 3)
    readout = default_teacher("SO3", "points", "invariant", out_features=3, hidden=8, layers=2)
    assert readout(points).shape == (4, 3)
    assert invariance_error(readout, points, "E3xS", input="points") < 1e-5
    egnn = default_teacher("O3", "points", "points", hidden=8, layers=2)
    assert equivariance_error(egnn, points, "E3", input="points", output="points") < 1e-5
    with pytest.raises(IncompatibleGroupError, match="C\\{n\\}, D\\{n\\} or SO2"):
        default_teacher("S", "image", "invariant", in_channels=1, num_classes=2)
    with pytest.raises(ConfigError, match="no default teacher"):
        default_teacher("S", "set", "invariant")
    with pytest.raises(ConfigError, match="in_channels"):
        default_teacher("C4", "image", "invariant")


@pytest.mark.parametrize("fields", [
    {"inputs": "noise"},
    {"match": "features"},
    {"mode": "bend"},
    {"distance": "l1"},
    {"target": "logits"},
    {"transformed_copies": -1},
    {"transformed_copies": 1.5},
    {"num_samples": 0},
    {"weight_anchor": -1.0},
    {"beta": float("nan")},
    {"gaussian_scale": 0.0},
    {"temperature": -1.0},
    {"resample_teacher_every": 0},
    {"gaussian_fields": "pos"},
    {"copy_targets": "derived"},
    {"match": "outputs+features", "student_feature_layer": "0", "teacher_feature_layer": "0",
     "student_feature_dim": 2, "teacher_feature_dim": 2, "copy_targets": "symmetry"},
    {"match": "outputs+features", "student_feature_layer": "0"},
    {"match": "outputs+features", "student_feature_layer": "0", "teacher_feature_layer": "0",
     "student_feature_dim": 0, "teacher_feature_dim": 2},
])
def test_bad_config_values_raise(fields):
    with pytest.raises(ConfigError):
        CloningConfig(**fields)


def test_feature_layers_must_exist():
    features = {"match": "outputs+features", "student_feature_dim": 32, "teacher_feature_dim": 32}
    with pytest.raises(ConfigError, match="student_feature_layer 'nope'"):
        clone_vectors(mlp(), mlp(), student_feature_layer="nope", teacher_feature_layer="1", **features)
    with pytest.raises(ConfigError, match="teacher_feature_layer 'nope'"):
        clone_vectors(mlp(), mlp(), student_feature_layer="1", teacher_feature_layer="nope", **features)
    model = clone_vectors(mlp(), mlp(), student_feature_layer="1", teacher_feature_layer="2",
                          **features)  # "2" gives 2 features, not 32
    with pytest.raises(symwrap.SymwrapError, match="sizes"):
        model.cloning_loss(torch.randn(3, 2))


# --- the escnn teacher -------------------------------------------------------------------------------------
@pytest.mark.parametrize("group", ["C4", "D4"])
def test_steerable_cnn_is_exactly_invariant_and_exports_to_plain_torch(group):
    pytest.importorskip("escnn")
    from symwrap.nn import SteerableCNN

    model = SteerableCNN(group, in_channels=2, num_classes=5, hidden=3, layers=2).eval()
    exported = model.export()
    assert not any(type(m).__module__.startswith("escnn") for m in exported.modules())
    for size in (28, 29):
        x = torch.randn(3, 2, size, size)
        assert model(x).shape == (3, 5)
        assert invariance_error(model, x, group, input="image") <= 1e-5
        assert invariance_error(exported, x, group, input="image") <= 1e-5
        torch.testing.assert_close(exported(x), model(x), atol=1e-5, rtol=1e-5)
    before = model(x)
    model.reset_parameters()
    assert not model.training and not torch.allclose(model(x), before)
    assert invariance_error(model, x, group, input="image") <= 1e-5


def test_cloning_an_escnn_teacher_into_a_cnn():
    pytest.importorskip("escnn")
    teacher = default_teacher("C4", "image", "invariant", in_channels=1, num_classes=4, hidden=3, layers=2)
    student = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 16),
                            nn.ReLU(), nn.Linear(16, 4))
    model = symwrap.wrap(student, group="C4", strategy="cloning", teacher=teacher, input="image",
                         output="invariant", match="outputs+features", student_feature_layer="4",
                         teacher_feature_layer="pool", student_feature_dim=16, teacher_feature_dim=3,
                         distance="kl", seed=0)
    x = torch.rand(16, 1, 13, 13)
    assert model.teacher_equivariance_error(x) <= 1e-5
    history = model.clone(x, steps=40, lr=3e-3, progress=False)
    assert history[-1]["total"] < history[0]["total"]
    assert set(history[-1]) >= {"outputs_data", "outputs_transformed", "outputs_gaussian", "features"}
