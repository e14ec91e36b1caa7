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
)


def test_equal_wall_time_gives_each_method_augmentation_s_seconds():
    per_step = {AUGMENTATION: 0.01, REMUL_LABEL: 0.025, REMUL_PREDICTION: 0.02, AUGMENTATION_2: 0.016}
    assert equal_time_steps(1000, per_step) == {AUGMENTATION: 1000, REMUL_LABEL: 400, REMUL_PREDICTION: 500,
                                                AUGMENTATION_2: 625}
    assert equal_time_steps(1, per_step)[REMUL_LABEL] == 1  # never zero steps


def _row(comparison, budget, method, mse, error=0.1, steps=None):
    return {"comparison": comparison, "n_train": 100, "budget": budget, "method": method,
            "steps": budget if steps is None else steps, "mse": mse, "equivariance_error": error}


def test_goal_lines_say_where_the_ordering_first_holds():
    rows = [_row("equal steps", 10, AUGMENTATION, 0.5, 0.2), _row("equal steps", 10, REMUL_LABEL, 0.6, 0.1),
            _row("equal steps", 10, REMUL_PREDICTION, 0.7), _row("equal steps", 10, AUGMENTATION_2, 0.3),
            _row("equal steps", 30, AUGMENTATION, 0.5), _row("equal steps", 30, REMUL_LABEL, 0.4),
            _row("equal steps", 30, REMUL_PREDICTION, 0.7), _row("equal steps", 30, AUGMENTATION_2, 0.3),
            _row("equal wall time", 10, AUGMENTATION, 0.5), _row("equal wall time", 10, REMUL_LABEL, 0.6, steps=5),
            _row("equal wall time", 10, REMUL_PREDICTION, 0.7, steps=5),
            _row("equal wall time", 10, AUGMENTATION_2, 0.3, steps=6)]
    lines = goal_lines(rows)
    assert ("equal steps, 100 trajectories, budget 10 augmentation steps, transformer + REMUL (label) (10 steps): "
            "MSE 0.6 vs augmentation 0.5, ratio 1.200 (goal < 1: does not hold); E′ REMUL / augmentation = 0.500"
            ) in lines
    assert any("budget 30" in line and "(label)" in line and "goal < 1: holds" in line for line in lines)
    assert ("paper's ordering (REMUL < augmentation), equal steps, transformer + REMUL (label): "
            "holds at 100 trajectories × 30 steps; not at 100 trajectories × 10 steps") in lines
    assert ("paper's ordering (REMUL < augmentation), equal wall time, transformer + REMUL (label): "
            "holds at no budget of this run") in lines
    assert any("equal wall time" in line and "(label) (5 steps)" in line for line in lines)
    assert ("control, equal wall time, 100 trajectories, budget 10: REMUL (label) MSE / augmentation (2 copies, "
            "6 steps) MSE = 2.000") in lines


@pytest.mark.slow  # one quick run: 12 short trainings, about 15 s on 2 loaded cores
def test_quick_augmentation_comparison_prints_both_budgets_and_its_goal_lines(capsys):
    result = run_benchmark("nbody", quick=True, strategy="augmentation")
    out = capsys.readouterr().out
    settings = ComparisonSettings.quick()
    rows = result["rows"]
    assert len(rows) == 2 * len(settings.steps) * len(COMPARISON_METHODS)
    per_step = result["seconds_per_step"]
    for row in rows:
        expected = (row["budget"] if row["comparison"] == "equal steps"
                    else equal_time_steps(row["budget"], per_step)[row["method"]])
        assert row["steps"] == expected
        assert row["mse"] > 0 and row["equivariance_error"] > 0
    assert all(seconds > 0 for seconds in per_step.values())
    assert "seconds per training step" in out and out.count("paper's ordering (REMUL < augmentation)") == 4
    for line in goal_lines(rows):
        assert line in out
