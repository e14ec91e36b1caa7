"""examples/diagnose_vit.py: the ``--quick`` run end to end (tables, JSON, the two charts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_script

BLOCKS = ["patch_embed", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "norm", "head"]


@pytest.mark.slow
def test_quick_run_diagnoses_the_three_vits_and_draws_the_charts(tmp_path, capsys):
    pytest.importorskip("timm")
    pytest.importorskip("escnn")
    pytest.importorskip("mlxtend")
    pytest.importorskip("matplotlib")
    example = load_script("diagnose_vit.py")
    output = tmp_path / "diagnose.json"

    report = example.main(["--quick", "--output", str(output), "--images-dir", str(tmp_path / "images"),
                           "--no-progress"])
    out = capsys.readouterr().out

    assert json.loads(output.read_text())["markdown"] == report["markdown"]
    assert sorted(Path(chart).name for chart in report["charts"]) == ["diagnosis_vit_c4.png", "diagnosis_vit_lie.png"]
    assert all(Path(chart).stat().st_size > 5000 for chart in report["charts"])
    assert report["markdown"] in out
    for key, label in example.MODELS.items():
        model = report["models"][key]
        assert f"{label} ViT under C4" in out and f"{label} ViT under SO2 (layer-wise Lie derivative)" in out
        assert [layer["name"] for layer in model["c4"]["layers"]] == BLOCKS
        assert [layer["name"] for layer in model["lie"]["layers"]] == BLOCKS
        c4 = {layer["name"]: layer for layer in model["c4"]["layers"]}
        # the image turns exactly, so the patch embedding's input has no error; its kernels break C4
        assert c4["patch_embed"]["compared_as"] == "tokens" and c4["patch_embed"]["input_error"] <= 1e-6
        assert c4["patch_embed"]["added"] > 0.05
        lie = model["lie"]
        assert lie["total"] > 0 and 0 <= lie["unattributed"] < lie["total"]
        assert 0.0 <= model["upright_accuracy"] <= 1.0 and 0.0 <= model["turned_accuracy"] <= 1.0
    assert report["settings"]["steps"] == example.Settings.quick().steps
