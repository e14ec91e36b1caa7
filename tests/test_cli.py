"""``symwrap train`` / ``symwrap eval`` on YAML configurations, their errors, and ``symwrap groups``."""

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import symwrap
from symwrap.cli import main
from symwrap.experiment import load_trained

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


# --- every strategy through train and eval ----------------------------------------------------------------
PARTICLES_RUN = (
    "backbone: {name: 'symwrap.nn:ParticleTransformer', kwargs: {hidden: 8, layers: 1, heads: 2}}\n"
    "data: {name: nbody, n_train: 8, n_val: 4, n_test: 4, batch_size: 4, simulation: {steps: 10}}\n"
    "group: SO3\nstrategy: STRATEGY\n"
    "training: {epochs: 1, progress: false, checkpoint: false}\n"
)


def train_and_eval(tmp_path: Path, text: str, capsys) -> tuple[Path, str]:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    run = tmp_path / "run"
    assert main(["train", str(config), "--output-dir", str(run), "--no-progress"]) == 0, capsys.readouterr().err
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert main(["eval", str(run), "--angles", "2"]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return run, captured.out


@pytest.mark.parametrize("strategy", symwrap.list_strategies())
def test_every_strategy_trains_saves_and_evaluates_from_the_command_line(tmp_path, capsys, strategy):
    pytest.importorskip("yaml")
    text = PARTICLES_RUN.replace("STRATEGY", strategy)
    if symwrap.get_strategy(strategy).takes_equivariant_backbone:  # relaxation, fixed inputs: an equivariant EGNN
        text = text.replace("{name: 'symwrap.nn:ParticleTransformer', kwargs: {hidden: 8, layers: 1, heads: 2}}",
                            "{name: 'symwrap.nn:EGNNDynamics', kwargs: {hidden: 8, layers: 1}}")
    if strategy == "fixed_inputs":  # the particles are a dict: the fixed inputs join the EGNN's node features
        text += "strategy_config: {inject: egnn.layers.0, channels: 8}\n"
    run, out = train_and_eval(tmp_path, text, capsys)
    assert f"{strategy} on SO3" in out and "rotations about z (SO3)" in out
    rows = _rows(out, "")
    assert [float(rows[f"{a}deg"][0]) for a in (0, 180)] == [0.0, 180.0]
    assert all(float(rows[f"{a}deg"][3]) >= 0 for a in (0, 180))  # the MSE column
    model, config = load_trained(run)  # what eval loaded is the trained model, bit for bit
    trained = json.loads((run / "symwrap_config.json").read_text())
    assert trained["strategy"] == strategy and config.strategy == strategy
    assert isinstance(model, symwrap.SymmetricModel) and not model.training
    weights = load_file(run / "model.safetensors")
    with symwrap.saving.training_mode(model):
        state = model.state_dict()
    assert state.keys() == weights.keys()
    assert all(torch.equal(state[key], weights[key]) for key in weights)


@pytest.fixture
def tiny_images(monkeypatch):
    """A registered data set of 24 random one-channel 8x8 images (2 classes), for fast image runs."""
    from torch.utils.data import TensorDataset

    from symwrap.data import DatasetSplits, registry

    def tiny(batch_size: int = 8, seed: int = 0) -> DatasetSplits:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(24, 1, 8, 8, generator=generator)
        y = (x[:, 0, 2:6, 2:6].sum((1, 2)) > 0).long()
        return DatasetSplits(TensorDataset(x[:16], y[:16]), TensorDataset(x[16:20], y[16:20]),
                             TensorDataset(x[20:], y[20:]), batch_size, "image", "invariant", seed)

    monkeypatch.setitem(registry._DATASETS, "tiny_images", tiny)


IMAGES_RUN = (
    "backbone:\n  name: timm:vit_tiny_patch16_224\n"
    "  kwargs: {img_size: 8, patch_size: 4, in_chans: 1, num_classes: 2, embed_dim: 16, depth: 1, num_heads: 2}\n"
    "data: tiny_images\ngroup: C4\nstrategy: STRATEGY\nstrategy_config: {}\n"
    "training: {epochs: 1, progress: false, checkpoint: true}\n"
)


@pytest.mark.parametrize("strategy", ["canonicalization", pytest.param("symmetrization", marks=pytest.mark.slow)])
def test_image_runs_that_wrote_no_model_or_could_not_be_evaluated_now_do(tmp_path, capsys, tiny_images, strategy):
    """The two runs of issue 14: symmetrization trained and wrote no model (escnn's non-contiguous buffers
    broke the save), canonicalization trained and 'symwrap eval' crashed (lazy layers could not be loaded)."""
    pytest.importorskip("timm")
    if strategy == "symmetrization":
        pytest.importorskip("escnn")
    _, out = train_and_eval(tmp_path, IMAGES_RUN.replace("STRATEGY", strategy), capsys)
    elements = _rows(out, "C4[")
    assert sorted(elements) == [f"C4[{i}]" for i in range(4)]
    assert all(0.0 <= float(row[3]) <= 1.0 for row in elements.values())  # accuracy


def test_train_refuses_a_run_folder_that_holds_a_model_unless_overwrite(tmp_path, capsys):
    pytest.importorskip("yaml")
    config = tmp_path / "config.yaml"
    config.write_text(PARTICLES_RUN.replace("STRATEGY", "remul"))
    run = tmp_path / "run"
    assert main(["train", str(config), "--output-dir", str(run)]) == 0
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    capsys.readouterr()

    assert main(["train", str(config), "--output-dir", str(run)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"symwrap train: the run folder {str(run)!r} already holds a trained model; pass "
                            "--overwrite (overwrite=True) to replace it, or choose another --output-dir\n")
    assert captured.out == ""  # refused before training
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before

    config.write_text(PARTICLES_RUN.replace("STRATEGY", "remul").replace("group: SO3", "group: O3"))
    assert main(["train", str(config), "--output-dir", str(run), "--overwrite"]) == 0
    assert json.loads((run / "symwrap_config.json").read_text())["group"] == "O3"
    assert "group: O3" in (run / "train_config.yaml").read_text()


# --- failures: one line, non-zero exit --------------------------------------------------------------------
def _run_folder(tmp_path: Path) -> Path:
    """A finished run (remul on particles) to break in various ways."""
    config = tmp_path / "good.yaml"
    config.write_text(PARTICLES_RUN.replace("STRATEGY", "remul"))
    assert main(["train", str(config), "--output-dir", str(tmp_path / "run")]) == 0
    return tmp_path / "run"


def _setup(tmp_path: Path, kind: str) -> Path:
    """Files the failing invocations below need."""
    if kind == "directory":
        (tmp_path / "folder.yaml").mkdir()
    elif kind == "binary":
        (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00bad")
    elif kind == "empty":
        (tmp_path / "empty.yaml").write_text("# nothing\n")
    elif kind == "broken":
        (tmp_path / "broken.yaml").write_text("backbone: {name: x\ndata: nbody\n")
    elif kind == "unknown data":
        (tmp_path / "data.yaml").write_text(PARTICLES_RUN.replace("STRATEGY", "remul").replace("name: nbody",
                                                                                             "name: nbodyy"))
    elif kind == "device":
        (tmp_path / "device.yaml").write_text(PARTICLES_RUN.replace("STRATEGY", "remul").replace(
            "checkpoint: false", "checkpoint: false, device: 'cuda:7'"))
    elif kind == "file":
        (tmp_path / "a_file").write_text("x")
        (tmp_path / "good.yaml").write_text(PARTICLES_RUN.replace("STRATEGY", "remul"))
    elif kind == "no model":
        run = _run_folder(tmp_path)
        for name in ("symwrap_config.json", "model.safetensors"):
            (run / name).unlink()
    elif kind == "corrupt model":
        run = _run_folder(tmp_path)
        (run / "model.safetensors").write_bytes(b"\x00" * 64)
    elif kind == "corrupt config":
        run = _run_folder(tmp_path)
        (run / "train_config.yaml").write_text("data: [\n")
    elif kind == "run":
        _run_folder(tmp_path)
    return tmp_path


FAILING = [
    (["train", "{tmp}/nope.yaml"], None, "configuration file '{tmp}/nope.yaml' does not exist; expected a YAML file"),
    (["train", "{tmp}/folder.yaml"], "directory", "is a folder, not a file"),
    (["train", "{tmp}/binary.yaml"], "binary", "cannot read the configuration file"),
    (["train", "{tmp}/empty.yaml"], "empty", "is empty; expected the keys backbone, data"),
    (["train", "{tmp}/broken.yaml"], "broken", "is not valid YAML: .* at line 2, column"),
    (["train", "{tmp}/data.yaml"], "unknown data", "unknown data set 'nbodyy'; expected one of: .*nbody"),
    (["train", "{tmp}/device.yaml"], "device", "training.device is 'cuda:7' but this machine has"),
    (["train", "{tmp}/good.yaml", "--output-dir", "{tmp}/a_file"], "file", "is a file; choose a folder"),
    (["eval", "{tmp}/missing"], None, "the run folder '{tmp}/missing' does not exist"),
    (["eval", "{tmp}"], None, "has no train_config.yaml"),
    (["eval", "{tmp}/run"], "no model", "has no symwrap_config.json: the training run did not finish"),
    (["eval", "{tmp}/run"], "corrupt model", "model.safetensors' is 64 bytes but symwrap_config.json records"),
    (["eval", "{tmp}/run"], "corrupt config", "train_config.yaml' is not valid YAML"),
    (["eval", "{tmp}/run", "--data", "mnist"], "run", "unknown data set 'mnist'"),
    (["eval", "{tmp}/run", "--device", "gpu!"], None, "--device must be a torch device such as 'cpu'"),
    (["eval", "{tmp}/run", "--json", "{tmp}/a_file/out.json"], "file", "--json '{tmp}/a_file' cannot be created"),
    (["bench", "nope"], None, "unknown benchmark 'nope'"),
    (["bench", "nbody", "--quick", "--output-dir", "{tmp}/a_file"], "file", "--output-dir '{tmp}/a_file' cannot"),
    (["demo", "--device", "cuda:9"], None, "--device is 'cuda:9' but this machine has"),
]


@pytest.mark.parametrize(("argv", "setup", "message"), FAILING,
                         ids=[f"{argv[0]}-{setup or message[:24]}" for argv, setup, message in FAILING])
def test_every_failure_is_one_line_and_a_non_zero_exit(tmp_path, capsys, argv, setup, message):
    pytest.importorskip("yaml")
    _setup(tmp_path, setup)
    capsys.readouterr()
    assert main([part.replace("{tmp}", str(tmp_path)) for part in argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert re.match(f"symwrap {argv[0]}: .*{message.replace('{tmp}', str(tmp_path))}", err), err


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import symwrap.cli

    def broken() -> str:
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(symwrap.cli, "format_registry", broken)
    assert main(["groups"]) == 1
    assert capsys.readouterr().err == ("symwrap groups: unexpected RuntimeError: something unforeseen (run with "
                                       "--debug for the traceback)\n")
    for argv in (["--debug", "groups"], ["groups", "--debug"]):
        with pytest.raises(RuntimeError, match="unforeseen"):
            main(argv)


def test_usage_errors_keep_argparse_status_2(capsys):
    for argv in (["nope"], ["train"], ["eval", "x", "--angles", "-1"], ["demo", "--train-steps", "0"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    assert "usage: symwrap" in capsys.readouterr().err


def test_diagnose_ranks_the_layers_of_a_trained_vit(tmp_path, capsys, tiny_images):
    """symwrap diagnose: the ViT's patch embedding (a convolution on the image grid) first moves the error."""
    pytest.importorskip("timm")
    pytest.importorskip("yaml")
    config = tmp_path / "config.yaml"
    config.write_text(IMAGES_RUN.replace("STRATEGY", "remul"))
    run = tmp_path / "run"
    assert main(["train", str(config), "--output-dir", str(run), "--no-progress"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    plot = tmp_path / "layers.png"
    assert main(["diagnose", str(run), "--plot", str(plot)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "remul backbone under C4, one test batch:" and lines[1].startswith("layer")
    patch = next(line for line in lines if line.startswith("patch_embed.proj"))
    assert "feature map" in patch and float(patch.split()[-1]) > 1e-3  # the patch convolution breaks C4
    assert plot.stat().st_size > 1000
    assert main(["diagnose", str(run), "--top", "3"]) == 0
    top = capsys.readouterr().out.splitlines()
    assert len(top) == 3 + 3  # the title, the header, three layers, the model's error
    assert main(["diagnose", str(run), "--samples", "0"]) == 1
    assert "--samples and --top must be integers >= 1; got 0 and None" in capsys.readouterr().err


def test_compare_prints_one_row_per_strategy_and_writes_the_tables(tmp_path, capsys, tiny_images):
    pytest.importorskip("timm")
    pytest.importorskip("yaml")
    config = tmp_path / "config.yaml"
    config.write_text(IMAGES_RUN.replace("STRATEGY", "remul"))
    assert main(["compare", str(config), "--steps", "2", "--strategies", "averaging,remul,frames",
                 "--output-dir", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    methods = [line.split()[0] for line in out.splitlines()[1:] if line.split() and line.split()[0] in
               ("bare", "augmentation", "averaging", "remul")]
    assert methods == ["bare", "augmentation", "averaging", "remul"]
    assert "not applicable: frames" in out and "recommendation: " in out
    assert (tmp_path / "out" / "compare.csv").is_file() and (tmp_path / "out" / "rows" / "remul.json").is_file()
    arguments = ["compare", str(config), "--steps", "2", "--strategies", "remul", "--output-dir",
                 str(tmp_path / "out"), "--no-progress"]
    assert main(arguments) == 0  # the rows stored by the first run are read back
    resumed = capsys.readouterr()
    assert "not retrained: bare backbone, augmentation, remul" in resumed.out
    assert "remul: read from" in resumed.err and "2/2" not in resumed.err
    assert main([*arguments[:-1], "--force"]) == 0
    forced = capsys.readouterr()
    assert "not retrained" not in forced.out and "remul: retraining (force)" in forced.err
    assert any(line.startswith("remul: 100%") and "2/2" in line for line in forced.err.splitlines())
