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
                   strategies=["averaging", "remul", "frames", "canonicalization"], steps=5, max_inference_ratio=2.5)


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
    assert symwrap.compare is compare
