"""``symwrap bench cloning --strategy images-ladder``: the cloning-budget ladder of the trained digits teacher."""

import pytest

from symwrap.errors import ConfigError


@pytest.fixture(autouse=True)
def _needs_the_image_stack():
    for package in ("timm", "escnn", "mlxtend"):
        pytest.importorskip(package)


def test_quick_ladder_prints_one_row_per_recipe_and_rung_and_goal_lines_from_them(tmp_path, capsys):
    from symwrap_bench import run_benchmark
    from symwrap_bench.cloning_ladder import COLUMNS, LadderSettings, goal_lines

    result = run_benchmark("cloning", quick=True, output_dir=tmp_path, strategy="images-ladder")
    out = capsys.readouterr().out
    settings = LadderSettings.quick()
    rows = result["rows"]
    assert [(r["student"], r["recipe"], r["steps"]) for r in rows] == [
        (recipe.student, recipe.label, n) for recipe in settings.recipes for n in settings.rungs]
    assert all(list(r) == COLUMNS for r in rows)
    assert {r["student"] for r in rows} == {"vit-avg", "cnn"}
    assert any(r["recipe"].startswith("features") for r in rows)
    for r in rows:
        assert r["fold"] == pytest.approx(r["E_before"] / r["E_after"])
        assert r["C_fold"] == pytest.approx(r["C_before"] / r["C_after"])
        assert r["distance"] > 0 and r["clone_s"] > 0
        assert all(0.0 <= r[k] <= 1.0 for k in ("agreement", "upright", "rotated"))
    # every student of a recipe starts from the same weights at every rung
    for recipe in settings.recipes:
        assert len({r["E_before"] for r in rows if r["recipe"] == recipe.label and r["student"] == recipe.student}) == 1
    for key in ("fold", "C_fold"):
        lines = goal_lines(rows, key=key)
        assert len(lines) == len(settings.recipes) + 1 and lines[-1].startswith(f"tenfold overall ({key}):")
        assert all(line in out for line in lines)
    assert (tmp_path / "cloning_images-ladder.csv").exists()


def test_goal_lines_name_the_first_rung_that_reaches_tenfold_or_the_best_and_the_trend():
    from symwrap_bench.cloning_ladder import goal_lines

    def row(student, steps, after, agreement=0.9):
        return {"student": student, "recipe": "r", "steps": steps, "E_before": 1.0, "E_after": after,
                "fold": 1.0 / after, "C_fold": 1.0 / after, "distance": 0.1, "agreement": agreement}

    rows = [row("a", 100, 0.5), row("a", 400, 0.08), row("a", 1600, 0.05),
            row("b", 100, 0.5), row("b", 400, 0.25), row("c", 100, 0.5), row("c", 400, 0.6),
            row("d", 100, 0.01, agreement=0.1), row("d", 400, 0.2)]
    lines = goal_lines(rows)
    assert lines[0].startswith("tenfold: reached at 400 steps by a (r): fold 12.5")
    assert lines[1].startswith("tenfold: not reached by b (r); best fold 4.00 at 400 steps")
    # fold 2 -> 4 over 4x the steps: fold ∝ steps^0.5, so 10 at 400 * 2.5^2 = 2500 steps
    assert "extrapolation, not a measurement" in lines[1] and "about 2.5e+03 steps" in lines[1]
    assert "does not grow" in lines[2]
    # a near-constant student (agreement 0.1) is invariant without cloning: its 100-fold does not count
    assert lines[3].startswith("tenfold: not reached by d (r); best fold 5.00 at 400 steps")
    assert "100: 100.00*" in lines[3]
    assert lines[4] == "tenfold overall (fold): reached at 400 steps by a (r)"
    assert goal_lines(rows[3:])[-1].startswith("tenfold overall (fold): not reached; best fold 5.00 at 400 steps by d")
    assert "no rung agrees" in goal_lines(rows[7:8])[0]


def test_a_rung_forked_from_the_trunk_is_the_from_scratch_run_of_its_budget():
    from symwrap_bench.cloning_ladder import LadderSettings, Recipe, ladder_rows, prepare

    settings = LadderSettings.quick()
    settings.recipes = (Recipe("cnn"),)
    shared = prepare(settings)

    def rows(rungs):
        settings.rungs = rungs
        return ladder_rows(settings.recipes[0], shared["teacher"], shared["unlabelled"], shared["test"],
                           shared["teacher_logits"], settings)

    laddered, alone = rows((4, 10))[-1], rows((10,))[0]
    assert laddered["steps"] == alone["steps"] == 10
    for key in ("E_after", "C_after", "distance"):
        assert laddered[key] == pytest.approx(alone[key], rel=1e-5), key


def test_unknown_cloning_variant_is_refused():
    from symwrap_bench.cloning import cloning_benchmark
    from symwrap_bench.cloning_ladder import LadderSettings

    with pytest.raises(ConfigError, match="images-ladder"):
        cloning_benchmark(quick=True, strategy="ladder")
    with pytest.raises(ConfigError, match="rungs"):
        LadderSettings(rungs=())
