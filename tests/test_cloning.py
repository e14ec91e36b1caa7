import copy
import re
import warnings

import pytest
import torch
from torch import nn

import symwrap
from symwrap.errors import ConfigError, IncompatibleGroupError
from symwrap.metrics import equivariance_error, invariance_error
from symwrap.steps import split_batch
from symwrap.strategies import Cloning, CloningConfig
from symwrap.strategies.cloning import EGNNReadout, default_teacher, gaussian_like, resample_parameters
from symwrap.strategies.cloning.loop import cycle_batches, train

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
    model = clone_vectors(equivariant_linear(), None, beta=1.0, num_samples_train=4)
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
    assert isinstance(loaded, Cloning) and loaded.teacher is None
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
    {"num_samples_train": 0},
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


# --- config errors name the field and the rule -----------------------------------------------------------
def exactly(message):
    """A pattern that matches the whole error message and nothing more."""
    return f"^{re.escape(message)}$"


FEATURES = {"match": "outputs+features", "student_feature_layer": "0", "teacher_feature_layer": "0",
            "student_feature_dim": 2, "teacher_feature_dim": 2}


@pytest.mark.parametrize(("fields", "message"), [
    ({"inputs": "noise"}, "inputs must be one of ('data', 'gaussian', 'both'); got 'noise'"),
    ({"weight_anchor": -1.0}, "weight_anchor must be a finite number >= 0; got -1.0"),
    ({"gaussian_scale": 0.0}, "gaussian_scale must be a finite number > 0; got 0.0"),
    ({"transformed_copies": -1}, "transformed_copies must be an integer >= 0; got -1"),
    ({"num_samples_train": 0}, "num_samples_train must be an integer >= 1; got 0"),
    ({"resample_teacher_every": 0}, "resample_teacher_every must be an integer >= 1; got 0"),
    ({**FEATURES, "student_feature_dim": 0}, "student_feature_dim must be an integer >= 1; got 0"),
    ({**FEATURES, "teacher_feature_dim": 0}, "teacher_feature_dim must be an integer >= 1; got 0"),
    ({"match": "outputs+features", "student_feature_layer": "0"},
     "match='outputs+features' needs ['teacher_feature_layer', 'student_feature_dim', 'teacher_feature_dim']: "
     "the submodules whose outputs are matched and the sizes of their flattened outputs"),
    ({**FEATURES, "copy_targets": "symmetry"},
     "copy_targets='symmetry' derives the teacher's outputs on transformed copies but not its features; "
     "use copy_targets='teacher' with match='outputs+features'"),
])
def test_config_errors_name_the_field_and_the_rule(fields, message):
    with pytest.raises(ConfigError, match=exactly(message)):
        CloningConfig(**fields)


def test_the_smallest_legal_config_values_are_accepted():
    config = CloningConfig(transformed_copies=0, resample_teacher_every=1, gaussian_fields=["pos"], num_samples_train=1,
                           weight_anchor=0.0, **{**FEATURES, "student_feature_dim": 1, "teacher_feature_dim": 1})
    assert config.transformed_copies == 0 and config.gaussian_fields == ["pos"]
    model = clone_vectors(nn.Linear(2, 2), equivariant_linear(), transformed_copies=0)
    assert set(model.cloning_loss(torch.randn(3, 2))) == {"outputs_data", "outputs_gaussian", "total"}


# --- the training loop -----------------------------------------------------------------------------------
class EmptyLoader:
    """A loader with no batches that fails loudly if it is iterated again and again."""

    def __init__(self):
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        if self.passes > 2:
            raise RuntimeError("iterated an empty loader forever")
        return iter([])


def loop_parts():
    """A one-parameter step loss (w - 3)² that records the batches it sees, and a measure that records its input."""
    weight = nn.Parameter(torch.zeros(()))
    seen, measured = [], []

    def step_loss(step, x, y):
        seen.append((step, x))
        return {"total": (weight - 3) ** 2}

    def measure(x):
        measured.append(x)
        return {"relative": 0.5, "averaged": 0.25}

    return weight, seen, measured, step_loss, measure


def test_loader_batches_are_split_cycled_and_checked():
    x = torch.randn(2, 2)
    assert split_batch((x,), require_target=False) == (x, None) and split_batch(x, require_target=False) == (x, None)
    assert split_batch([x, 1, 2], require_target=False) == (x, 1)
    with pytest.raises(ConfigError, match="^the loader yielded an empty batch$"):
        split_batch(())
    with pytest.raises(ConfigError, match="^the loader EmptyLoader yielded no batches$"):
        next(cycle_batches(EmptyLoader()))


def test_train_steps_through_the_batches_in_order_and_records_as_documented():
    weight, seen, measured, step_loss, measure = loop_parts()
    a, b, c = torch.zeros(1, 2), torch.ones(1, 2), torch.full((1, 2), 2.0)
    history = train(step_loss, measure, [a, b, c], 4, torch.optim.SGD([weight], lr=0.1), progress=False)
    assert [step for step, _ in seen] == [0, 1, 2, 3, 4]  # the record before training, then one call per step
    expected = [a, a, b, c, a]  # step 1 trains on the batch recorded at step 0
    assert len(seen) == 5 and all(x is e for (_, x), e in zip(seen, expected))
    assert [entry["step"] for entry in history] == [0, 1, 2, 3, 4]  # log_every defaults to max(1, steps // 10)
    assert history[0] == {"step": 0, "total": 9.0, "equivariance_error": 0.5, "averaged_equivariance_error": 0.25}
    assert float(weight.detach()) == pytest.approx(3 - 3 * 0.8**4)
    assert all(x is a for x in measured)  # measured on the first batch by default
    probe = torch.randn(3, 2)
    _, _, measured, step_loss, measure = loop_parts()
    history = train(step_loss, measure, [a], 20, torch.optim.SGD([weight], lr=0.1), progress=False,
                    eval_inputs=probe, first_step=7)
    assert [entry["step"] for entry in history] == list(range(7, 28, 2))
    assert all(x is probe for x in measured)


@pytest.mark.parametrize(("steps", "log_every", "message"), [
    (-1, None, "steps must be an integer >= 0; got -1"),
    (2.5, None, "steps must be an integer >= 0; got 2.5"),
    (4, 0, "log_every must be a positive integer; got 0"),
    (4, 1.5, "log_every must be a positive integer; got 1.5"),
])
def test_train_rejects_bad_step_counts(steps, log_every, message):
    weight, _, _, step_loss, measure = loop_parts()
    with pytest.raises(ConfigError, match=exactly(message)):
        train(step_loss, measure, torch.zeros(1, 2), steps, torch.optim.SGD([weight], lr=0.1), log_every=log_every,
              progress=False)


def test_train_with_zero_steps_only_records():
    weight, seen, _, step_loss, measure = loop_parts()
    history = train(step_loss, measure, torch.zeros(1, 2), 0, torch.optim.SGD([weight], lr=0.1), progress=False)
    assert [entry["step"] for entry in history] == [0] and float(weight.detach()) == 0 and len(seen) == 1


def test_progress_bars_show_the_stage_the_loss_and_the_error(capsys):
    weight, _, _, step_loss, measure = loop_parts()
    train(step_loss, measure, torch.zeros(1, 2), 3, torch.optim.SGD([weight], lr=0.1))  # progress by default
    err = capsys.readouterr().err
    assert "training: 100%" in err and "3/3" in err and "step/s" in err
    assert "loss=3.69" in err and "equivariance=5.00e-01" in err  # the last step's loss (3·0.8²)², to 3 digits
    model = clone_vectors(nn.Linear(2, 2), equivariant_linear(), seed=0)
    x, y = torch.randn(4, 2), torch.randn(4, 2)
    model.clone(x, steps=1)
    assert "cloning: 100%" in capsys.readouterr().err
    model.fine_tune([(x, y)], steps=1)
    assert "fine-tuning (keep): 100%" in capsys.readouterr().err
    model.clone(x, steps=1, progress=False)
    model.fine_tune([(x, y)], steps=1, progress=False)
    train(step_loss, measure, torch.zeros(1, 2), 3, torch.optim.SGD([weight], lr=0.1), progress=False)
    assert capsys.readouterr().err == ""


# --- model: errors, distances and stage bookkeeping ------------------------------------------------------
def test_model_errors_say_what_to_do():
    x = torch.randn(4, 2)
    model = clone_vectors(nn.Linear(2, 2), None)
    with pytest.raises(ConfigError, match=exactly(
            "symmetry cloning needs a teacher: wrap(..., strategy='cloning', teacher=module) or model.set_teacher("
            "module); symwrap.strategies.cloning.default_teacher(group, input, output) builds a random equivariant "
            "one. Only the stage-two loss works without one.")):
        model.cloning_loss(x)
    with pytest.raises(ConfigError, match=exactly(
            "the teacher shares parameters with the student, and freezing it would freeze the student; pass a "
            "separate module (copy.deepcopy(teacher))")):
        model.set_teacher(model.backbone)
    with pytest.raises(ConfigError, match="^there is no weight anchor: set weight_anchor > 0$"):
        model.reset_anchor()
    with pytest.raises(ConfigError, match=exactly(
            "mode='keep' needs the input for its equivariance term: call model.loss(pred, y, x)")):
        model.loss(model(x), x)
    with pytest.raises(ConfigError, match=exactly(
            "fine_tune needs a loader of (x, y) batches; got inputs without targets")):
        model.fine_tune([(x,)], steps=1, progress=False)
    with pytest.raises(ConfigError, match=exactly(
            "no equivariance recorded as 'after cloning'; recorded: []. Call model.record_equivariance(stage, x) "
            "first.")):
        model.symmetry_drift(x)
    student = nn.Sequential(nn.Linear(2, 2))
    anchored = clone_vectors(student, equivariant_linear(), weight_anchor=1.0)
    student.append(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match=exactly(
            "the student's parameters changed since its starting weights were stored; call model.reset_anchor()")):
        anchored.cloning_loss(x)


def test_outputs_of_another_shape_than_the_students_are_refused():
    model = clone_vectors(nn.Linear(2, 2), nn.Linear(2, 3), inputs="data", transformed_copies=0)
    with pytest.raises(symwrap.SymwrapError, match=exactly(
            "student and teacher outputs differ in shape: (4, 2) and (4, 3) (flattened per sample); the teacher "
            "must predict what the student predicts")):
        model.cloning_loss(torch.randn(4, 2))


def test_kl_distance_is_the_tempered_kl_of_the_teachers_distribution():
    """KL(softmax(t/T) ‖ softmax(s/T)) · T², averaged over the batch, with no warning."""
    student, teacher = nn.Linear(2, 3), nn.Linear(2, 3)
    model = symwrap.wrap(student, group="C4", strategy="cloning", teacher=teacher, input="vector",
                         output="invariant", inputs="data", transformed_copies=0, distance="kl", temperature=3.0)
    x = torch.randn(5, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = model.cloning_loss(x)["outputs_data"]
    p = torch.softmax(teacher(x) / 3, dim=1)
    q = torch.softmax(student(x) / 3, dim=1)
    expected = (p * (p.log() - q.log())).sum(dim=1).mean() * 9
    torch.testing.assert_close(value, expected)


class Float64Teacher(nn.Module):
    """A teacher that answers in float64 to a float32 student."""

    def __init__(self, module):
        super().__init__()
        self.module = module.double()

    def forward(self, x):
        return self.module(x.double())


@pytest.mark.parametrize("distance", ["mse", "kl"])
def test_teacher_outputs_are_cast_to_the_students_dtype(distance):
    torch.manual_seed(0)
    model = clone_vectors(mlp(), Float64Teacher(mlp()), distance=distance, match="outputs+features",
                          student_feature_layer="1", teacher_feature_layer="module.1", student_feature_dim=32,
                          teacher_feature_dim=32)
    terms = model.cloning_loss(torch.randn(4, 2))
    assert all(value.dtype == torch.float32 for value in terms.values()), {k: v.dtype for k, v in terms.items()}


def test_weight_anchor_is_the_squared_distance_stored_under_the_students_names():
    student = nn.Sequential(nn.Linear(2, 2))
    model = clone_vectors(student, equivariant_linear(), weight_anchor=0.5, inputs="data")
    assert {key for key in model.state_dict() if key.startswith("anchor.")} == {"anchor.0__weight", "anchor.0__bias"}
    with torch.no_grad():
        student[0].weight.add_(2.0)
        student[0].bias.sub_(1.0)
    torch.testing.assert_close(model.cloning_loss(torch.randn(3, 2))["anchor"], torch.tensor(0.5 * (4 * 4 + 2 * 1)))


def test_steps_are_counted_over_calls_and_the_log_keeps_both_errors():
    model = clone_vectors(nn.Linear(2, 2), equivariant_linear(), seed=0)
    x, y = torch.randn(4, 2), torch.randn(4, 2)
    model.clone(x, steps=2, progress=False)
    history = model.clone(x, steps=1, progress=False)
    assert model.cloning_steps == 3 and [entry["step"] for entry in history] == [2, 3]
    assert model.equivariance_log["after cloning"] == {"relative": history[-1]["equivariance_error"],
                                                       "averaged": history[-1]["averaged_equivariance_error"]}
    first = model.fine_tune([(x, y)], steps=2, progress=False)
    second = model.fine_tune([(x, y)], steps=1, progress=False)
    assert [entry["step"] for entry in first + second] == [0, 1, 2, 2, 3] and model.fine_tuning_steps == 3
    assert model.equivariance_log["after fine-tuning"] == {"relative": second[-1]["equivariance_error"],
                                                           "averaged": second[-1]["averaged_equivariance_error"]}


@pytest.mark.parametrize("stage", ["clone", "fine_tune"])
def test_default_learning_rate_moves_each_weight_by_about_a_thousandth(stage):
    """Adam's first step moves every weight by about lr; the documented default is 1e-3."""
    student = nn.Linear(2, 2)
    model = clone_vectors(student, equivariant_linear(), seed=0)
    before = student.weight.detach().clone()
    x = torch.randn(8, 2)
    if stage == "clone":
        model.clone(x, steps=1, progress=False)
    else:
        model.fine_tune([(x, torch.randn(8, 2))], steps=1, progress=False)
    torch.testing.assert_close((student.weight.detach() - before).abs(), torch.full((2, 2), 1e-3), atol=1e-5,
                               rtol=0)


@pytest.mark.parametrize("stage", ["clone", "fine_tune"])
def test_equivariance_is_measured_on_eval_inputs(stage):
    model = clone_vectors(nn.Linear(2, 2), equivariant_linear(), group="SO2", seed=0)
    x, probe = torch.randn(8, 2), torch.randn(5, 2) * 3
    if stage == "clone":
        history = model.clone(x, steps=0, progress=False, eval_inputs=probe)
    else:
        history = model.fine_tune([(x, torch.randn(8, 2))], steps=0, progress=False, eval_inputs=probe)
    expected = model.record_equivariance("probe", probe)
    assert history[0]["equivariance_error"] == expected["relative"] != model.record_equivariance("x", x)["relative"]


@pytest.mark.parametrize(("every", "expected"), [
    (1, ["loss", "loss", "resample", "loss", "resample", "loss"]),
    (3, ["loss", "loss", "loss", "loss", "resample", "loss"]),
])
def test_teachers_are_resampled_before_steps_every_plus_one(every, expected):
    """A new teacher before training steps every+1, 2·every+1, ... (the record at step 0 uses the first)."""
    model = clone_vectors(nn.Linear(2, 2), equivariant_linear(), resample_teacher_every=every)
    events = []
    loss = model.cloning_loss
    model.resample_teacher = lambda: events.append("resample")
    model.cloning_loss = lambda x: events.append("loss") or loss(x)
    model.clone(torch.randn(4, 2), steps=len(expected) - expected.count("resample") - 1, progress=False)
    assert events == expected


def test_equivariance_measurements_use_the_configured_seed_and_sample_count():
    from symwrap.metrics import equivariance_errors

    x = torch.randn(6, 2)
    for seed in (None, 3):
        model = clone_vectors(nn.Linear(2, 2), nn.Linear(2, 2), group="SO2", seed=seed)
        generator = torch.Generator().manual_seed(seed or 0)
        expected = equivariance_errors(model, x, "SO2", input="vector", output="vector", n=3, generator=generator)
        assert model.record_equivariance("now", x, n=3) == expected == model.equivariance_log["now"]
        assert model.symmetry_drift(x, since="now", n=3)["drift"] == 0
        generator = torch.Generator().manual_seed(seed or 0)
        teacher_error = equivariance_errors(model.teacher, x, "SO2", input="vector", output="vector", n=3,
                                            generator=generator)["relative"]
        assert model.teacher_equivariance_error(x, n=3) == teacher_error


def test_symmetry_drift_compares_with_the_recorded_stage():
    model = clone_vectors(nn.Linear(2, 2), None, group="SO2", seed=0)
    x = torch.randn(6, 2)
    current = model.record_equivariance("now", x)["relative"]
    model.equivariance_log["after cloning"] = {"relative": 0.25, "averaged": 0.125}
    assert model.symmetry_drift(x) == pytest.approx({"reference": 0.25, "current": current,
                                                     "drift": current - 0.25, "ratio": current / 0.25})
    model.equivariance_log["exact"] = {"relative": 0.0, "averaged": 0.0}
    assert model.symmetry_drift(x, since="exact")["ratio"] == pytest.approx(current / 1e-12)


def test_equivariance_report_and_repr():
    model = clone_vectors(nn.Linear(2, 2), None)
    assert model.equivariance_report() == "no equivariance recorded yet"
    model.equivariance_log["before cloning"] = {"relative": 0.5, "averaged": 0.25}
    model.equivariance_log["after"] = {"relative": 1e-4, "averaged": 2e-5}
    assert model.equivariance_report() == ("before cloning  relative 5.000e-01  averaged 2.500e-01\n"
                                           "after           relative 1.000e-04  averaged 2.000e-05")
    header = ("Cloning(strategy='cloning', group='C4', input='vector', output='vector',\n"
              "  backbone=Linear(in_features=2, out_features=2, bias=True),\n")
    assert repr(model) == header + "  teacher=None)"
    model.set_teacher(equivariant_linear())
    assert repr(model) == header + "  teacher=Linear)"


# --- stage two -----------------------------------------------------------------------------------------
class NormClassifier(nn.Module):
    """Logits from the norm of a 2-vector: exactly invariant to rotations."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 3)

    def forward(self, x):
        return self.linear(x.norm(dim=-1, keepdim=True))


def test_label_target_applies_the_task_loss_to_the_labels():
    """target="label": ℓ(f(g·x), g·y); for an invariant classifier that is the task loss itself (cross-entropy)."""
    torch.manual_seed(0)
    model = symwrap.wrap(NormClassifier(), group="SO2", strategy="cloning", input="vector", output="invariant",
                         target="label", beta=2.0, seed=0)
    x, y = torch.randn(6, 2), torch.randint(0, 3, (6,))
    terms = model.loss(model(x), y, x)
    torch.testing.assert_close(terms["task"], nn.functional.cross_entropy(model(x), y))
    torch.testing.assert_close(terms["equivariance"], 2 * terms["task"])
    assert float(model.auxiliary_loss(x)["equivariance"].detach()) < 1e-10  # unlabelled: always against the prediction


def test_auxiliary_loss_is_beta_times_the_prediction_term():
    x = torch.randn(6, 2)
    student = nn.Linear(2, 2)
    label = clone_vectors(copy.deepcopy(student), None, group="SO2", target="label", beta=3.0, seed=4)
    prediction = clone_vectors(copy.deepcopy(student), None, group="SO2", beta=3.0, seed=4)
    aux = label.auxiliary_loss(x)["equivariance"]
    torch.testing.assert_close(aux, prediction.loss(prediction(x), torch.randn(6, 2), x)["equivariance"])
    unweighted = clone_vectors(copy.deepcopy(student), None, group="SO2", beta=1.0, seed=4).auxiliary_loss(x)
    torch.testing.assert_close(aux, 3.0 * unweighted["equivariance"])


def test_equivariance_term_samples_from_the_models_generator_num_samples_elements():
    x, y = torch.randn(6, 2), torch.randn(6, 2)
    values = []
    for global_seed in (1, 2):
        torch.manual_seed(0)
        student = Counting(nn.Linear(2, 2))
        torch.manual_seed(global_seed)  # the global generator must not matter
        model = clone_vectors(student, None, group="SO2", num_samples_train=4, seed=5)
        values.append(model.loss(model(x), y, x)["equivariance"])
        assert student.rows == [6, 24]  # f(x), then the 4 transformed copies of each input in one call
    torch.testing.assert_close(values[0], values[1], rtol=0, atol=0)


def test_keep_mode_with_zero_beta_has_no_equivariance_term():
    model = clone_vectors(nn.Linear(2, 2), None, beta=0.0)
    x = torch.randn(3, 2)
    assert set(model.loss(model(x), x)) == {"task", "total"} and model.auxiliary_loss(x) == {}


# --- Gaussian inputs: N(mean, (scale·std)²) per channel, drawn from the given generator ---------------------
def drawn_like(x, reduce, scale, generator):
    """The documented draw: the channel's mean and (population) std over ``reduce``, times standard normals."""
    mean, std = x.mean(dim=reduce, keepdim=True), x.std(dim=reduce, keepdim=True, unbiased=False)
    return mean + scale * std * torch.randn(x.shape, generator=generator, dtype=x.dtype)


@pytest.mark.parametrize(("action", "shape", "reduce"), [
    ("vector", (6, 3), (0,)),
    ("points", (4, 5, 3), (0, 1)),
    ("image", (4, 3, 5, 5), (0, 2, 3)),
    ("vector", (2,), (0,)),
])
def test_gaussian_inputs_are_drawn_per_channel_with_the_default_scale_of_one(action, shape, reduce):
    x = torch.randn(shape, dtype=torch.float64) * 3 + 1
    drawn = gaussian_like(symwrap.get_action(action), x, generator=torch.Generator().manual_seed(0))
    assert drawn.dtype == torch.float64
    torch.testing.assert_close(drawn, drawn_like(x, reduce, 1.0, torch.Generator().manual_seed(0)), rtol=0, atol=0)


def test_a_single_number_is_drawn_with_unit_spread():
    x = torch.tensor([2.0])
    drawn = gaussian_like(symwrap.get_action("vector"), x, 0.5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(drawn, 2.0 + 0.5 * torch.randn(1, generator=torch.Generator().manual_seed(1)))


def test_gaussian_dict_fields_use_their_channels_and_the_generator_in_field_order():
    action = symwrap.get_action({"img": "image", "pos": "points", "charge": "scalars"})
    x = {"img": torch.randn(3, 2, 4, 4) + 2, "pos": torch.randn(3, 4, 3) * 2, "charge": torch.randn(3, 4, 1)}
    drawn = gaussian_like(action, x, 0.5, generator=torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(2)
    torch.testing.assert_close(drawn["img"], drawn_like(x["img"], (0, 2, 3), 0.5, generator))
    torch.testing.assert_close(drawn["pos"], drawn_like(x["pos"], (0, 1), 0.5, generator))
    assert drawn["charge"] is x["charge"]


def test_gaussian_inputs_refuse_integer_and_non_tensor_data():
    with pytest.raises(ConfigError, match=exactly("random inputs replace floating-point data; input has dtype "
                                                    "torch.int64")):
        gaussian_like(symwrap.get_action("vector"), torch.ones(3, 2, dtype=torch.long))
    particles = {"pos": torch.randn(2, 3, 3), "vel": torch.randn(2, 3, 3), "charge": torch.ones(2, 3, 1).long()}
    with pytest.raises(ConfigError, match=exactly("random inputs replace floating-point data; charge has dtype "
                                                    "torch.int64")):
        gaussian_like(symwrap.get_action(PARTICLES), particles, fields=["charge"])
    with pytest.raises(ConfigError, match=exactly(
            "random (gaussian) inputs are drawn for tensors and dicts of tensors; got dict. Use inputs='data'.")):
        gaussian_like(symwrap.get_action("vector"), {"pos": torch.randn(2, 3)})


def test_cloning_draws_gaussian_inputs_with_the_configured_scale_and_fields():
    seen = []

    class Student(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(6, 3)

        def forward(self, x):
            seen.append(x)
            return x["pos"] + self.linear(torch.cat([x["pos"], x["vel"]], dim=-1))

    teacher = default_teacher("SO3", PARTICLES, "points", hidden=8, layers=1)
    model = symwrap.wrap(Student(), group="SO3", strategy="cloning", teacher=teacher, input=PARTICLES,
                         output="points", inputs="gaussian", gaussian_fields=["vel"], gaussian_scale=1e-6)
    x = {"pos": torch.randn(3, 4, 3), "vel": torch.randn(3, 4, 3) + 5, "charge": torch.ones(3, 4, 1)}
    model.cloning_loss(x)
    (drawn,) = seen
    assert torch.equal(drawn["pos"], x["pos"])  # not a Gaussian field: the data's
    torch.testing.assert_close(drawn["vel"], x["vel"].mean(dim=(0, 1), keepdim=True).expand(3, 4, 3), atol=1e-4,
                               rtol=0)


# --- feature matching --------------------------------------------------------------------------------------
class DictLayer(nn.Module):
    def forward(self, x):
        return {"h": x}


class DictFeatureNet(nn.Module):
    """A network whose submodule ``feat`` returns a dict."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.feat = DictLayer()

    def forward(self, x):
        return self.feat(self.linear(x))["h"]


def test_feature_layers_are_named_in_errors():
    features = {"match": "outputs+features", "student_feature_dim": 2, "teacher_feature_dim": 2}
    many = nn.Sequential(*[nn.Identity() for _ in range(25)])
    names = [str(i) for i in range(20)]
    with pytest.raises(ConfigError, match=exactly(
            f"student_feature_layer 'nope' is not a submodule of the student Sequential; its submodules include "
            f"{names}")):
        clone_vectors(many, nn.Linear(2, 2), student_feature_layer="nope", teacher_feature_layer="", **features)
    student = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    model = clone_vectors(student, nn.Linear(2, 2), student_feature_layer="1", teacher_feature_layer="", **features)
    del student[1]
    with pytest.raises(ConfigError, match=exactly(
            "student_feature_layer '1' is not a submodule of the student Sequential; its submodules include ['0']")):
        model.cloning_loss(torch.randn(3, 2))
    for role, student_layer, teacher_layer in (("student", "feat", "linear"), ("teacher", "linear", "feat")):
        model = clone_vectors(DictFeatureNet(), DictFeatureNet(), student_feature_layer=student_layer,
                              teacher_feature_layer=teacher_layer, **features)
        with pytest.raises(symwrap.SymwrapError, match=exactly(
                f"{role}_feature_layer 'feat' returned dict; expected a tensor")):
            model.cloning_loss(torch.randn(3, 2))


def test_the_whole_backbone_output_can_be_the_matched_feature():
    torch.manual_seed(0)
    model = clone_vectors(mlp(), mlp(), match="outputs+features", student_feature_layer="",
                          teacher_feature_layer="", student_feature_dim=2, teacher_feature_dim=2)
    assert "features" in model.cloning_loss(torch.randn(3, 2))


# --- teachers --------------------------------------------------------------------------------------------
def test_egnn_readout_defaults_and_keyword_arguments():
    from symwrap.nn import EGNN

    points = torch.randn(2, 4, 3)
    readout = EGNNReadout()
    assert readout(points).shape == (2, 1)
    assert readout.head.in_features == 32 and len(readout.egnn.layers) == 3
    assert all(layer.vel_mlp is None for layer in readout.egnn.layers)  # positions only
    small = EGNNReadout(out_features=2, hidden=4, layers=1, attention=True)
    assert small.egnn.layers[0].attention_mlp is not None and small.head.out_features == 2
    assert default_teacher("SO3", "points").head.out_features == 1  # the output defaults to "invariant"
    egnn = default_teacher("O3", "points", "points", hidden=8, layers=2)
    assert egnn(points).shape == points.shape and all(layer.vel_mlp is None for layer in egnn.layers)
    reference = EGNN(0, 8, 2, velocity=False)
    assert sum(p.numel() for p in egnn.parameters()) == sum(p.numel() for p in reference.parameters())


def test_default_teacher_for_product_groups_with_permutations():
    points = torch.randn(2, 5, 3)
    teacher = default_teacher("E3xS", "points", "invariant", hidden=4, layers=1)
    assert invariance_error(teacher, points, "E3xS", input="points") < 1e-5


def test_no_default_teacher_for_an_invariant_of_particles():
    with pytest.raises(ConfigError, match=exactly(
            f"no default teacher for input {PARTICLES!r} and output 'invariant' under SO3; defaults exist for "
            "images to invariant outputs under C_n, D_n or SO2 (escnn); "
            f"particles {PARTICLES} to points, under isometries and permutations; "
            "points (B, N, d) to points, under isometries and permutations; "
            "points (B, N, d) to invariant outputs, under isometries and permutations. Pass teacher= (any "
            "equivariant module, e.g. a symwrap.wrap(..., strategy='averaging') model), or register a default "
            "with symwrap.nn.register_default_network('teacher', ...).")):
        default_teacher("SO3", PARTICLES, "invariant")


def test_resampling_needs_something_to_reset():
    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(2))

    with pytest.raises(ConfigError, match=exactly(
            "cannot resample the teacher Bare: none of its submodules has reset_parameters(); set "
            "resample_teacher_every=None")):
        resample_parameters(Bare())
    assert resample_parameters(nn.Sequential(nn.Tanh())) == 0
    assert resample_parameters(nn.Linear(2, 3)) == 9


def test_students_with_dict_outputs_are_cloned():
    class PointsAndVectors(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 3, bias=False)

        def forward(self, x):
            return {"pos": x + self.linear(x), "vel": self.linear(x)}

    torch.manual_seed(0)
    model = symwrap.wrap(PointsAndVectors(), group="SO3", strategy="cloning", teacher=PointsAndVectors(),
                         input="points", output={"pos": "points", "vel": "vectors"}, inputs="data",
                         transformed_copies=0)
    x = torch.randn(2, 4, 3)
    student, teacher = model.backbone(x), model.teacher(x)
    expected = torch.cat([(student[k] - teacher[k]).reshape(2, -1) for k in ("pos", "vel")], 1).square().mean()
    torch.testing.assert_close(model.cloning_loss(x)["outputs_data"], expected)


def test_transformed_copies_are_sampled_even_for_a_group_of_one_element():
    """transformed_copies copies per step, whatever the group's order (C1 has only the identity)."""
    student = Counting(nn.Linear(2, 2))
    model = clone_vectors(student, equivariant_linear(), group="C1", transformed_copies=3, seed=0)
    model.cloning_loss(torch.randn(5, 2))
    assert student.rows == [5 * (1 + 3 + 1)]


def test_egnn_teachers_refuse_groups_that_are_not_isometries():
    """A user-defined group whose elements scale as they rotate: an EGNN is not equivariant to it."""
    from symwrap.groups.rotations import SO3

    class ScaledRotations(SO3):
        name = "1.2·SO3"

        def linear_part(self, g, dtype=None):
            return 1.2 * super().linear_part(g, dtype=dtype)

    with pytest.raises(IncompatibleGroupError, match=exactly(
            "EGNN teachers are equivariant to orthogonal maps, translations and permutations; the elements of "
            "1.2·SO3 are not orthogonal")):
        default_teacher(ScaledRotations(), "points", "invariant", hidden=4, layers=1)
