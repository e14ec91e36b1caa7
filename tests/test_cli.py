"""``symwrap train`` / ``symwrap eval`` on YAML configurations, their errors, and ``symwrap groups``."""

import json
import re
from pathlib import Path

import pytest

from symwrap.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "configs" / "mnist_c4_averaging.yaml"
RUN_FILES = ("symwrap_config.json", "model.safetensors", "train_config.yaml", "history.json")


def _rows(out: str, prefix: str) -> dict[str, list[str]]:
    """The table rows whose first cell starts with ``prefix``, split into cells."""
    return {cells[0]: cells[1:] for line in out.splitlines() if (cells := line.split()) and
            cells[0].startswith(prefix)}


def test_train_the_example_config_then_eval_it_with_a_plot(tmp_path, capsys):
    for package in ("timm", "mlxtend", "matplotlib", "yaml"):
        pytest.importorskip(package)
    run = tmp_path / "run"

    assert main(["train", str(EXAMPLE), "--output-dir", str(run), "--no-progress"]) == 0
    assert "trained averaging on C4" in capsys.readouterr().out
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert (run / "train_config.yaml").read_text() == EXAMPLE.read_text()
    history = json.loads((run / "history.json").read_text())
    assert [record["epoch"] for record in history["epochs"]] == [1]
    assert history["epochs"][0]["equivariance_error"] < 1e-5

    plot = tmp_path / "plots" / "error_vs_angle.png"
    assert main(["eval", str(run), "--plot", str(plot), "--angles", "8", "--json", str(tmp_path / "eval.json")]) == 0
    out = capsys.readouterr().out
    assert plot.is_file() and plot.read_bytes().startswith(b"\x89PNG")

    elements = _rows(out, "C4[")
    assert sorted(elements) == [f"C4[{i}]" for i in range(4)]
    angle, reflection, error, accuracy, agreement = zip(*(elements[f"C4[{i}]"] for i in range(4)))
    assert [float(a) for a in angle] == [0.0, 90.0, 180.0, 270.0]
    assert set(reflection) == {"no"}
    assert max(float(e) for e in error) < 1e-5  # averaging over C4 is exact
    assert len({float(a) for a in accuracy}) == 1 and 0.0 <= float(accuracy[0]) <= 1.0
    assert {float(a) for a in agreement} == {1.0}
    untransformed = float(re.search(r"untransformed accuracy: ([0-9.]+)", out).group(1))
    assert float(accuracy[0]) == pytest.approx(untransformed, abs=1e-4)

    grid = _rows(out, "")  # the 8 angles around C4: 45° is not an element, so no symmetry there
    assert float(grid["45deg"][2]) > 1e-4 and float(grid["90deg"][2]) < 1e-5
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["metric"] == "accuracy" and len(report["sets"]["elements of C4"]) == 4


def test_train_and_eval_a_regression_model_built_from_a_class_path(tmp_path, capsys):
    config = tmp_path / "nbody.yaml"
    config.write_text(
        "backbone: {name: 'symwrap.nn:ParticleTransformer', kwargs: {hidden: 8, layers: 1, heads: 2}}\n"
        "data: {name: nbody, n_train: 8, n_val: 4, n_test: 4, batch_size: 4, simulation: {steps: 10}}\n"
        "group: SO3\nstrategy: remul\nstrategy_config: {beta: 0.1}\n"
        "training: {epochs: 1, progress: false, checkpoint: false}\n"
    )
    assert main(["train", str(config), "--output-dir", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run"), "--angles", "4", "--axis", "y"]) == 0
    out = capsys.readouterr().out
    assert "rotations about y (SO3)" in out and "MSE" in out
    rows = _rows(out, "")
    assert [float(rows[f"{a}deg"][0]) for a in (0, 90, 180, 270)] == [0.0, 90.0, 180.0, 270.0]
    assert float(rows["0deg"][2]) == 0.0  # the identity
    assert all(float(rows[f"{a}deg"][3]) >= 0 for a in (0, 90, 180, 270))


GOOD = {
    "backbone": "symwrap.nn:ParticleTransformer",
    "data": "nbody",
    "group": "SO3",
    "strategy": "remul",
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"traning": {"epochs": 1}}, ["unknown key(s) 'traning' (did you mean 'training'?)", "expected keys:"]),
        ({"strategy": None}, ["strategy must be a non-empty string"]),
        ({"group": None}, ["group must be a group name"]),
        ({"training": {"optimiser": "sgd"}}, ["'optimiser' (did you mean 'optimizer'?)"]),
        ({"training": {"optimizer": "lbfgs"}}, ["training.optimizer must be one of", "adam"]),
        ({"training": {"epochs": 0}}, ["training.epochs must be an integer >= 1; got 0"]),
        ({"data": {"name": "mnist"}}, ["unknown data set 'mnist'", "mnist_digits"]),
        ({"data": {"name": "nbody", "n_trian": 3}}, ["has no option(s) ['n_trian']", "n_train (default 3000)"]),
        ({"backbone": "resnet18"}, ["backbone.name must be", "timm:<model>"]),
        ({"backbone": "symwrap.nn:NoSuchNet"}, ["'symwrap.nn' has no attribute 'NoSuchNet'"]),
        ({"backbone": {"name": "symwrap.nn:EGNN", "kwarg": {}}}, ["'kwarg' (did you mean 'kwargs'?)"]),
    ],
)
def test_a_bad_config_fails_with_a_message_that_says_what_was_expected(tmp_path, capsys, change, expected):
    yaml = pytest.importorskip("yaml")
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**GOOD, **change}))

    assert main(["train", str(config), "--output-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("symwrap train: ")
    for text in expected:
        assert text in err
    assert not (tmp_path / "run").exists()


def test_missing_or_unparsable_files_are_clear_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("backbone: [unclosed\n")
    assert main(["train", str(tmp_path / "broken.yaml")]) == 1
    assert "is not valid YAML" in capsys.readouterr().err
    assert main(["eval", str(tmp_path)]) == 1
    assert "has no train_config.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path), "--angles", "-1"])


def test_groups_lists_the_cloning_strategy(capsys):
    assert main(["groups"]) == 0
    assert any(line.split()[:2] == ["strategy", "cloning"] for line in capsys.readouterr().out.splitlines())


@pytest.mark.parametrize(("group", "axis"), [("O2", "z"), ("O3", "x"), ("E3", "z")])
def test_groups_with_reflections_are_also_evaluated_on_mirrored_rotations(group, axis):
    """O(2), O(3), E(3): a second grid composes each rotation with a mirror, so a model that is only
    rotation-equivariant shows its error on the orientation-reversing half of the group."""
    import torch
    from torch import nn

    from symwrap.evaluation import element_sets, evaluate_model
    from symwrap.groups import get_group

    dim = 2 if group == "O2" else 3
    sets = element_sets(group, "points", "vector", angles=4, axis=axis)
    assert [s.reflections for s in sets] == [[False] * 4, [True] * 4]
    assert "mirror" in sets[1].title and sets[1].labels[1] == "mirror+90deg"
    bound = get_group(group)
    linear = bound.linear_part(sets[1].make(bound, torch.device("cpu"), torch.float64), dtype=torch.float64)
    assert torch.allclose(torch.linalg.det(linear), -torch.ones(4, dtype=torch.float64))

    class Centred(nn.Module):  # O(n)-equivariant: the mean point
        def forward(self, x):
            return x.mean(1)

    class Handed(nn.Module):  # rotation-equivariant only: the mean point plus a cross/perpendicular term
        def forward(self, x):
            m = x.mean(1)
            if dim == 2:
                return m + torch.stack([-m[:, 1], m[:, 0]], dim=1)
            return m + torch.cross(x[:, 0] - m, x[:, 1] - m, dim=1)

    x = torch.randn(8, 5, dim)
    batches = [(x, x.mean(1))]
    exact = evaluate_model(Centred(), batches, "points", "vector", sets)
    handed = evaluate_model(Handed(), batches, "points", "vector", sets)
    for report in (exact, handed):
        assert max(row["equivariance_error"] for row in report.sets[sets[0].title]) < 1e-5
    assert max(row["equivariance_error"] for row in exact.sets[sets[1].title]) < 1e-5
    assert min(row["equivariance_error"] for row in handed.sets[sets[1].title]) > 1e-2


def test_groups_without_reflections_get_one_grid():
    from symwrap.evaluation import element_sets

    assert [s.kind for s in element_sets("SO3", "points", "vector", angles=4)] == ["grid"]
    assert [s.kind for s in element_sets("SO2", "points", "vector", angles=4)] == ["grid"]
