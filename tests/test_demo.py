import json

import pytest

from symwrap.cli import main

C4_ANGLES = (0, 90, 180, 270)


@pytest.mark.slow
def test_short_demo_wraps_the_vit_into_an_exactly_c4_invariant_classifier(tmp_path, capsys):
    for package in ("timm", "mlxtend", "matplotlib"):
        pytest.importorskip(package)
    from symwrap_bench.demo import run_demo

    results = run_demo(output_dir=tmp_path, train_steps=40, finetune_steps=10, seed=0, progress=False)

    out = capsys.readouterr().out
    assert "wrapped (C4 avg)" in out and "C4 invariance error" in out
    plot = tmp_path / "demo_accuracy_vs_angle.png"
    assert plot.is_file() and plot.read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "demo_results.json").read_text())["angles"] == results["angles"]
    assert results["plot"] == str(plot)
    assert results["training"]["steps"] == 40 and results["finetuning"]["steps"] == 10

    errors = {name: results["c4"][name]["invariance_error"] for name in ("bare", "wrapped", "finetuned")}
    assert max(errors["wrapped"], errors["finetuned"]) < 1e-5 < errors["bare"]
    assert results["c4"]["wrapped"]["prediction_agreement"] > 0.99
    # averaging over C4 scores every quarter turn alike; the bare ViT, trained upright, does not
    bare = {angle: acc for angle, acc in zip(results["angles"], results["accuracy"]["bare"])}
    assert bare[0] > max(bare[90], bare[180], bare[270])

    angles = results["angles"]
    assert set(C4_ANGLES) < set(angles)
    for name in ("wrapped", "finetuned"):
        by_angle = {angle: acc for angle, acc in zip(angles, results["accuracy"][name])}
        assert len({by_angle[angle] for angle in C4_ANGLES}) == 1, (name, by_angle)
    for accuracies in results["accuracy"].values():
        assert len(accuracies) == len(angles) and all(0.0 <= a <= 1.0 for a in accuracies)


def test_groups_command_lists_groups_actions_and_strategies(capsys):
    assert main(["groups"]) == 0
    out = capsys.readouterr().out
    for name in ("SO3", "C{n}", "image", "invariant", "averaging", "frames"):
        assert name in out
    assert {line.split()[0] for line in out.splitlines()[2:] if line.strip()} == {"group", "action", "strategy"}


def test_unknown_command_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bogus"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
