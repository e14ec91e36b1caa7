import json
import re
from pathlib import Path

import pytest

from symwrap.cli import main

C4_ANGLES = (0, 90, 180, 270)
ROOT = Path(__file__).resolve().parents[1]


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


MODELS = ("bare", "wrapped", "finetuned")


def _results(seconds: float) -> dict:
    angles = [0, 45, 90]
    return {
        "n_test": 10, "n_train": 40, "angles": angles, "total_seconds": 3 * seconds, "torch_threads": 2,
        "accuracy": {name: [0.9, 0.5, 0.25] for name in MODELS},
        "c4": {name: {"invariance_error": 0.5, "prediction_agreement": 0.25} for name in MODELS},
        "training": {"seconds": seconds, "epochs": 2.5, "steps": 5},
        "finetuning": {"seconds": 2 * seconds, "epochs": 1.0, "steps": 2},
    }


def test_the_demo_table_holds_no_timing_so_an_idle_and_a_loaded_run_print_it_alike():
    from symwrap_bench.demo import format_table, format_timing

    idle, loaded = _results(1.0), _results(7.0)
    assert format_table(idle) == format_table(loaded)
    table = format_table(idle)
    assert "bare ViT: 5 steps (2.5 epochs) on 40 upright digits" in table
    assert "fine-tuning through the wrapper: 2 steps (1.0 epochs)" in table
    assert "     45 deg     no" in table and "90.0%" in table
    # the seconds are printed apart, on the one line that may differ between machines
    assert format_timing(idle) == "took 3 s on 2 torch thread(s) (training 1 s, fine-tuning 2 s)"
    assert format_timing(loaded) != format_timing(idle)


def _quoted_table(page: Path) -> str:
    """The demo's table as a page quotes it: the ``text`` block that starts with the table's title."""
    blocks = re.findall(r"```text\n(accuracy on the .*?)\n```", page.read_text(), flags=re.S)
    assert len(blocks) == 1, f"{page}: expected one quoted demo table, found {len(blocks)}"
    return blocks[0]


def _parse_table(table: str) -> dict:
    """The results a quoted table shows, read back (so that ``format_table`` of them can be compared with it)."""
    lines = table.splitlines()
    results = {"n_test": int(re.search(r"the (\d+) test digits", lines[0]).group(1)), "angles": [],
               "accuracy": {name: [] for name in MODELS}, "c4": {}}
    for line in lines[3:]:
        if match := re.match(r"\s*(\d+) deg\s+(?:yes|no)\s+(.*)", line):
            results["angles"].append(int(match.group(1)))
            for name, cell in zip(MODELS, match.group(2).split()):
                results["accuracy"][name].append(float(cell.rstrip("%")) / 100)
        elif match := re.match(r"(\w+):\s+C4 invariance error (\S+), C4 prediction agreement (\S+)%", line):
            results["c4"][match.group(1)] = {"invariance_error": float(match.group(2)),
                                             "prediction_agreement": float(match.group(3)) / 100}
        elif match := re.match(r"(bare ViT|fine-tuning through the wrapper): (\d+) steps \((\S+) epochs\) on (\d+)",
                               line):
            key = "training" if match.group(1) == "bare ViT" else "finetuning"
            results[key] = {"steps": int(match.group(2)), "epochs": float(match.group(3))}
            results["n_train"] = int(match.group(4))
    return results


@pytest.mark.parametrize("page", ["README.md", "docs/getting-started.md"])
def test_the_docs_quote_the_demo_table_as_the_code_prints_it(page):
    """Catches a table quoted in an older format; the numbers come from ``symwrap demo`` (the default steps)."""
    from symwrap_bench.demo import DEFAULT_ANGLES, FINETUNE_STEPS, TRAIN_STEPS, format_table

    table = _quoted_table(ROOT / page)
    results = _parse_table(table)
    assert format_table(results) == table
    assert tuple(results["angles"]) == DEFAULT_ANGLES
    assert (results["training"]["steps"], results["finetuning"]["steps"]) == (TRAIN_STEPS, FINETUNE_STEPS)
    assert _quoted_table(ROOT / "README.md") == _quoted_table(ROOT / "docs/getting-started.md")
