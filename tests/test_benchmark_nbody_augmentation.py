import statistics

import pytest

from symwrap_bench import run_benchmark
from symwrap_bench.nbody_augmentation import (
    AUGMENTATION,
    AUGMENTATION_2,
    COMPARISON_METHODS,
    REMUL_LABEL,
    REMUL_PREDICTION,
    ComparisonSettings,
    equal_time_steps,
    goal_lines,
    summary_rows,
)


def test_equal_wall_time_gives_each_method_augmentation_s_seconds():
    per_step = {AUGMENTATION: 0.01, REMUL_LABEL: 0.025, REMUL_PREDICTION: 0.02, AUGMENTATION_2: 0.016}
    assert equal_time_steps(1000, per_step) == {AUGMENTATION: 1000, REMUL_LABEL: 400, REMUL_PREDICTION: 500,
                                                AUGMENTATION_2: 625}
    assert equal_time_steps(1, per_step)[REMUL_LABEL] == 1  # never zero steps


def _row(comparison, budget, method, mse, error=0.1, steps=None, seed=0):
    return {"seed": seed, "comparison": comparison, "n_train": 100, "budget": budget, "method": method,
            "steps": budget if steps is None else steps, "mse": mse, "equivariance_error": error}


def _seed(seed, label_mse_10, label_mse_30, wall=(5, 5, 6)):
    """One seed's fabricated rows: augmentation at MSE 0.5 everywhere, REMUL (label) as given."""
    return [_row("equal steps", 10, AUGMENTATION, 0.5, 0.2, seed=seed),
            _row("equal steps", 10, REMUL_LABEL, label_mse_10, 0.1, seed=seed),
            _row("equal steps", 10, REMUL_PREDICTION, 0.7, seed=seed),
            _row("equal steps", 10, AUGMENTATION_2, 0.3, seed=seed),
            _row("equal steps", 30, AUGMENTATION, 0.5, seed=seed),
            _row("equal steps", 30, REMUL_LABEL, label_mse_30, seed=seed),
            _row("equal steps", 30, REMUL_PREDICTION, 0.7, seed=seed),
            _row("equal steps", 30, AUGMENTATION_2, 0.3, seed=seed),
            _row("equal wall time", 10, AUGMENTATION, 0.5, seed=seed),
            _row("equal wall time", 10, REMUL_LABEL, 0.6, steps=wall[0], seed=seed),
            _row("equal wall time", 10, REMUL_PREDICTION, 0.7, steps=wall[1], seed=seed),
            _row("equal wall time", 10, AUGMENTATION_2, 0.3, steps=wall[2], seed=seed)]


def test_goal_lines_count_the_seeds_where_the_ordering_holds():
    # REMUL (label) at 10 steps: ratios 1.2, 0.8, 0.9 (holds in 2 of 3); at 30 steps: 0.8 in every seed
    rows = _seed(0, 0.6, 0.4) + _seed(100, 0.4, 0.4) + _seed(200, 0.45, 0.4)
    lines = goal_lines(rows)
    assert ("REMUL (label) < augmentation at equal steps, 100 traj x 10 steps (10 steps): holds in 2 of 3 seeds, "
            "MSE ratio mean 0.967 (min 0.800, max 1.200); E′ REMUL / augmentation mean 0.500 (min 0.500, max 0.500)"
            ) in lines
    assert any(line.startswith("REMUL (label) < augmentation at equal steps, 100 traj x 30 steps") and
               "holds in 3 of 3 seeds" in line for line in lines)
    assert ("paper's ordering (REMUL < augmentation), equal steps, transformer + REMUL (label): holds in every "
            "seed at 100 traj x 30 steps; in some seeds at 100 traj x 10 steps (2 of 3)") in lines
    assert ("paper's ordering (REMUL < augmentation), equal steps, transformer + REMUL (prediction): holds in no "
            "seed at 100 traj x 10 steps, 100 traj x 30 steps") in lines
    assert ("paper's ordering (REMUL < augmentation), equal wall time, transformer + REMUL (label): holds in no "
            "seed at 100 traj x 10 steps") in lines
    assert any("equal wall time, 100 traj x 10 steps (5 steps)" in line for line in lines)
    assert ("control, equal wall time, 100 traj x 10 steps: REMUL (label) MSE / augmentation (2 copies, 6 steps) "
            "MSE mean 2.000 (min 2.000, max 2.000), < 1 in 0 of 3 seeds") in lines
    # the verdict follows the rows: one seed's REMUL made worse moves 30 steps out of "every seed"
    worse = [dict(r, mse=0.9) if (r["seed"], r["budget"], r["method"]) == (200, 30, REMUL_LABEL) else r
             for r in rows]
    assert ("paper's ordering (REMUL < augmentation), equal steps, transformer + REMUL (label): holds in some "
            "seeds at 100 traj x 10 steps (2 of 3), 100 traj x 30 steps (2 of 3)") in goal_lines(worse)


def test_goal_lines_count_only_the_seeds_that_ran_a_budget():
    # a rung dropped for the extra seeds: 30 steps ran for seed 0 only
    rows = _seed(0, 0.6, 0.4) + [r for r in _seed(100, 0.4, 0.4) if r["budget"] != 30]
    lines = goal_lines(rows)
    assert any("100 traj x 30 steps (30 steps): holds in 1 of 1 seeds, MSE ratio 0.800" in line for line in lines)
    assert any("100 traj x 10 steps (10 steps): holds in 1 of 2 seeds" in line for line in lines)


def test_summary_rows_spread_each_row_over_its_seeds():
    rows = _seed(0, 0.6, 0.4) + _seed(100, 0.4, 0.4) + _seed(200, 0.45, 0.4)
    summary = summary_rows(rows)
    assert len(summary) == 12
    label = next(r for r in summary if (r["comparison"], r["budget"], r["method"]) == ("equal steps", 10, REMUL_LABEL))
    assert label["seeds"] == 3 and label["steps"] == 10
    assert label["mse_mean"] == pytest.approx(1.45 / 3) and label["mse_min"] == 0.4 and label["mse_max"] == 0.6
    assert label["mse_std"] == pytest.approx(statistics.stdev([0.6, 0.4, 0.45]))
    assert label["equivariance_error_mean"] == pytest.approx(0.1)


@pytest.mark.slow  # one quick run with two seeds: 24 short trainings, about 15 s on 2 loaded cores
def test_quick_augmentation_comparison_prints_both_budgets_and_its_goal_lines(capsys):
    result = run_benchmark("nbody", quick=True, strategy="augmentation", seeds=2)
    out = capsys.readouterr().out
    settings = ComparisonSettings.quick()
    rows = result["rows"]
    assert result["seeds"] == [0, 100]
    assert len(rows) == 2 * 2 * len(settings.steps) * len(COMPARISON_METHODS)
    per_step = result["seconds_per_step"]
    for row in rows:
        expected = (row["budget"] if row["comparison"] == "equal steps"
                    else equal_time_steps(row["budget"], per_step)[row["method"]])
        assert row["steps"] == expected
        assert row["mse"] > 0 and row["equivariance_error"] > 0
    first, second = ([r["mse"] for r in rows if r["seed"] == seed] for seed in (0, 100))
    assert first != second  # the seeds draw different data and weights
    assert result["summary"] == summary_rows(rows) and all(r["seeds"] == 2 for r in result["summary"])
    assert all(seconds > 0 for seconds in per_step.values())
    assert "seconds per training step" in out and out.count("paper's ordering (REMUL < augmentation)") == 4
    assert "seeds 0, 100" in out
    for line in goal_lines(rows):
        assert line in out
