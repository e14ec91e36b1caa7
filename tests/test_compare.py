"""symwrap.compare: every applicable strategy from the same weights, one table, a recommendation from it."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import symwrap
from symwrap.compare import compare
from symwrap.errors import ConfigError


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 2))


@pytest.fixture(scope="module")
def report():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(48, 1, 8, 8, generator=generator)
    y = (x[:, 0, :4].sum((1, 2)) > 0).long()
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=16)
    test = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=16)
    return compare(small_cnn, train, test, group="C4", input="image", output="invariant",
                   strategies=["averaging", "remul", "frames", "canonicalization"], steps=5, max_inference_ratio=2.5,
                   timing_rounds=3)


def test_one_row_per_applicable_strategy_and_the_controls(report):
    assert [row["method"] for row in report.rows] == ["bare backbone", "augmentation", "averaging", "remul",
                                                      "canonicalization"]
    assert set(report.skipped) == {"frames"} and "PCA frames" in report.skipped["frames"]
    for row in report.rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["accuracy (moved)"] <= 1.0
        assert row["parameters"] > 0 and row["train_s"] > 0 and row["inference_ratio"] > 0
    assert report.rows[0]["inference_ratio"] == 1.0


def test_the_numbers_come_from_the_run(report):
    rows = {row["method"]: row for row in report.rows}
    assert rows["averaging"]["equivariance_error"] <= 1e-5  # exact for C4
    assert rows["bare backbone"]["equivariance_error"] > 1e-2
    assert rows["averaging"]["parameters"] == rows["bare backbone"]["parameters"]
    assert rows["canonicalization"]["parameters"] > rows["bare backbone"]["parameters"]


def test_the_recommendation_is_computed_from_the_table(report):
    eligible = [row for row in report.rows if row["inference_ratio"] <= 2.5]
    best = max(eligible, key=lambda row: row["accuracy (moved)"])
    assert report.recommendation.startswith(f"recommendation: {best['method']} — the best accuracy (moved)")
    text = report.table()
    assert "not applicable: frames" in text and text.endswith(report.recommendation)


def test_saved_tables_and_misuse(report, tmp_path):
    folder = report.save(tmp_path)
    assert (folder / "compare.csv").read_text().startswith("method,accuracy")
    assert "recommendation" in (folder / "compare.json").read_text()
    with pytest.raises(ConfigError, match="steps must be an integer >= 1"):
        compare(small_cnn, [], [], group="C4", input="image", steps=0)
    with pytest.raises(ConfigError, match="timing_rounds must be an integer >= 1; got 0"):
        compare(small_cnn, [], [], group="C4", input="image", timing_rounds=0)
    assert symwrap.compare is compare


# --- plots and E′ under each element ------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"


def test_per_element_errors_come_from_the_run(report):
    assert report.elements == ["C4[0]", "C4[1]", "C4[2]", "C4[3]"]
    rows = {row["method"]: row for row in report.rows}
    for row in report.rows:
        assert len(row["per_element_error"]) == 4
        # E′ over all elements is the mean of the errors under each (same batch, every element)
        assert row["equivariance_error"] == pytest.approx(sum(row["per_element_error"]) / 4, rel=1e-5, abs=1e-9)
    assert max(rows["averaging"]["per_element_error"]) <= 1e-5
    bare = rows["bare backbone"]["per_element_error"]
    assert bare[0] <= 1e-6 < 1e-2 < min(bare[1:])  # the identity moves nothing; quarter turns do


def test_save_writes_valid_pngs_and_the_per_element_errors(report, tmp_path):
    import json

    from matplotlib.image import imread

    folder = report.save(tmp_path)
    for name in ("compare_tradeoff.png", "compare_equivariance.png", "compare_elements.png"):
        assert (folder / name).read_bytes()[:8] == PNG
        assert imread(folder / name).shape[0] > 100
    stored = json.loads((folder / "compare.json").read_text())
    assert stored["elements"] == report.elements
    assert stored["rows"][0]["per_element_error"] == report.rows[0]["per_element_error"]
    assert "per_element_error" in (folder / "compare.csv").read_text().splitlines()[0]


def test_without_matplotlib_the_tables_are_written_with_a_warning(report, tmp_path, monkeypatch):
    import sys

    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.warns(UserWarning, match=r"needs the optional package 'matplotlib'.*pip install 'symwrap\[data\]'"):
        folder = report.save(tmp_path)
    assert (folder / "compare.csv").is_file() and not list(folder.glob("*.png"))


# --- progress bars and resuming --------------------------------------------------------------------------

TRAINING_CALLS: list[int] = []


class CountingCNN(nn.Module):
    """small_cnn that counts its forward calls in training mode (evaluation and timing run in eval mode)."""

    def __init__(self):
        super().__init__()
        self.net = small_cnn()

    def forward(self, x):
        if self.training:
            TRAINING_CALLS.append(x.shape[0])
        return self.net(x)


def tiny_loaders(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(24, 1, 8, 8, generator=generator)
    y = (x[:, 0, :4].sum((1, 2)) > 0).long()
    train = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    return train, DataLoader(TensorDataset(x[16:], y[16:]))


def run_tiny(output_dir=None, data_seed=0, **kwargs):
    TRAINING_CALLS.clear()
    train, test = tiny_loaders(data_seed)
    options = {"strategies": ["averaging"], "steps": 2, "plots": False, "timing_rounds": 1, **kwargs}
    return compare(CountingCNN, train, test, group="C4", input="image", output_dir=output_dir, **options)


def test_a_progress_bar_per_row_only_when_asked(capsys):
    run_tiny()
    assert capsys.readouterr().err == ""
    run_tiny(progress=True)
    bars = [line for line in capsys.readouterr().err.splitlines() if "2/2" in line]
    assert [line.split(":")[0] for line in bars] == ["bare backbone", "augmentation", "averaging"]


def test_a_resumed_run_reads_stored_rows_back_and_force_retrains_them(tmp_path, capsys):
    first = run_tiny(tmp_path, plots=True)
    assert len(TRAINING_CALLS) == 3 * 2 and first.resumed == []
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == ["augmentation.json", "averaging.json",
                                                                    "bare_backbone.json"]
    assert (tmp_path / "compare.csv").is_file() and (tmp_path / "compare_tradeoff.png").is_file()
    capsys.readouterr()
    again = run_tiny(tmp_path)
    assert TRAINING_CALLS == [] and again.resumed == ["bare backbone", "augmentation", "averaging"]
    assert "averaging: read from" in capsys.readouterr().err
    for old, new in zip(first.rows, again.rows):
        assert {k: v for k, v in old.items() if k != "inference_ratio"} == \
            {k: v for k, v in new.items() if k != "inference_ratio"}
    assert "read from the output folder, not retrained: bare backbone, augmentation, averaging" in again.table()
    forced = run_tiny(tmp_path, force=True)
    assert len(TRAINING_CALLS) == 3 * 2 and forced.resumed == []


def test_a_stored_row_with_other_settings_is_retrained(tmp_path, capsys):
    run_tiny(tmp_path)
    capsys.readouterr()
    longer = run_tiny(tmp_path, steps=3)
    assert len(TRAINING_CALLS) == 3 * 3 and longer.resumed == []
    assert "the stored row was trained with other settings (steps: stored 2, now 3); retraining" in \
        capsys.readouterr().err
    assert all(row["steps"] == 3 for row in longer.rows)
    assert run_tiny(tmp_path, steps=3).resumed == ["bare backbone", "augmentation", "averaging"]
    run_tiny(tmp_path, steps=3, lr=1e-2)  # the learning rate is a setting too
    assert "(lr: stored 0.001, now 0.01)" in capsys.readouterr().err and len(TRAINING_CALLS) == 3 * 3
    run_tiny(tmp_path, steps=3, lr=1e-2, data_seed=1)  # other data: the train set's first batch and the test set
    assert "settings (test: stored" in capsys.readouterr().err and len(TRAINING_CALLS) == 3 * 3


# --- the cloning row's teacher -----------------------------------------------------------------------------

def test_the_cloning_row_trains_and_clones_the_registrys_default_teacher(capsys):
    from symwrap.nn import defaults

    built, teachers, calls = [], [], {"train": 0, "eval": 0}

    class PooledTeacher(nn.Module):
        """Pointwise convolution and a global mean: exactly invariant to quarter turns."""

        def __init__(self, in_channels, out_features, hidden):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                     nn.Flatten(), nn.Linear(hidden, out_features))

        def forward(self, x):
            calls["train" if self.training else "eval"] += 1
            return self.net(x)

    @symwrap.nn.register_default_network("teacher", "test-pooled-teacher",
                                         applies=lambda group, input, output: input.grid_axes == 2,
                                         needs="grids (test)")
    def pooled_teacher(group, input, output, *, in_channels, out_features, hidden=4, **options):
        built.append({"in_channels": in_channels, "out_features": out_features, "hidden": hidden})
        teachers.append(PooledTeacher(in_channels, out_features, hidden))
        return teachers[-1]

    try:
        train, test = tiny_loaders()
        report = compare(small_cnn, train, test, group="C4", input="image", strategies=["cloning"], steps=4,
                         teacher_options={"hidden": 3}, progress=True, timing_rounds=1)
    finally:
        defaults._ENTRIES[:] = [e for e in defaults._ENTRIES if e.name != "test-pooled-teacher"]
    assert built == [{"in_channels": 1, "out_features": 2, "hidden": 3}]  # read from the data and the backbone
    row = report.rows[-1]
    assert row["method"] == "cloning" and row["teacher"] == "test-pooled-teacher"
    assert row["teacher_steps"] == 4 and calls["train"] == 4  # the teacher trained for the row's budget
    assert row["cloning_steps"] == 2 and calls["eval"] >= 1 + 2  # the probe call, then one per cloning step
    assert row["train_s"] >= row["teacher_train_s"] > 0
    with torch.no_grad():  # the trained teacher's own accuracy on the test set, as the row reports it
        right = sum(int((teachers[0](x).argmax(1) == y).sum()) for x, y in test)
    assert row["teacher_accuracy"] == pytest.approx(right / len(test.dataset))
    assert "cloning: teacher test-pooled-teacher trained 4 steps" in report.table()
    bars = [line.split(":")[0] for line in capsys.readouterr().err.splitlines() if "4/4" in line]
    assert bars == ["bare backbone", "augmentation", "cloning (teacher)", "cloning"]


def test_without_a_default_teacher_the_cloning_row_says_so():
    x = torch.randn(24, 2, generator=torch.Generator().manual_seed(0))
    y = (x.norm(dim=1) > 1).long()
    train, test = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8), DataLoader(TensorDataset(x[16:], y[16:]))
    report = compare(lambda: nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)), train, test, group="SO2",
                     input="vector", strategies=["cloning"], steps=2, timing_rounds=1)
    row = report.rows[-1]
    assert row["teacher"] == "no teacher" and row["teacher_steps"] == 0 and "cloning_steps" not in row
    assert "no default teacher for SO2" in row["teacher_note"]
    assert "cloning: no teacher (the registry has no default teacher" in report.table()
    assert report.elements is None and "per_element_error" not in row  # a continuous group


@pytest.mark.slow
def test_the_built_in_image_teacher_is_found_for_rotated_images():
    pytest.importorskip("escnn")
    train, test = tiny_loaders()
    report = compare(small_cnn, train, test, group="C4", input="image", strategies=["cloning"], steps=2,
                     teacher_options={"hidden": 4, "layers": 1}, timing_rounds=1)
    row = report.rows[-1]
    assert row["teacher"] == "steerable-cnn" and row["teacher_steps"] == 2 and row["cloning_steps"] == 1


def test_every_row_sees_the_same_batches_whatever_ran_before_it():
    alone = run_tiny(steps=3).rows[-1]
    after_others = run_tiny(steps=3, strategies=["remul", "averaging"]).rows[-1]
    assert alone["method"] == after_others["method"] == "averaging"
    for key in ("accuracy", "accuracy (moved)", "per_element_error"):
        assert alone[key] == after_others[key]


@pytest.mark.parametrize("kind", ["raises", "wrong size"])
def test_a_default_teacher_that_does_not_fit_leaves_the_row_without_one(kind):
    from symwrap.errors import IncompatibleGroupError
    from symwrap.nn import defaults

    @symwrap.nn.register_default_network("teacher", "test-vector-teacher",
                                         applies=lambda group, input, output: input.spec() == "vector",
                                         needs="vectors (test)")
    def vector_teacher(group, input, output, *, out_features, **options):
        if kind == "raises":
            raise IncompatibleGroupError(f"the test teacher refuses {group.name}. More text")
        return nn.Linear(2, out_features + 1)

    x = torch.randn(24, 2, generator=torch.Generator().manual_seed(0))
    y = (x.norm(dim=1) > 1).long()
    train, test = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8), DataLoader(TensorDataset(x[16:], y[16:]))
    try:
        report = compare(lambda: nn.Linear(2, 2), train, test, group="C4", input="vector", strategies=["cloning"],
                         steps=2, timing_rounds=1)
    finally:
        defaults._ENTRIES[:] = [e for e in defaults._ENTRIES if e.name != "test-vector-teacher"]
    row = report.rows[-1]
    assert row["teacher"] == "no teacher" and row["teacher_steps"] == 0
    expected = ("its default teacher test-vector-teacher cannot be built here: the test teacher refuses C4"
                if kind == "raises" else "its default teacher test-vector-teacher predicts 3 numbers per sample, "
                "the backbone 2")
    assert row["teacher_note"] == expected
