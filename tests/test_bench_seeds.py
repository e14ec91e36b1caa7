"""The seeds of the benchmarks that repeat their runs (``symwrap bench ... --seeds N``): which seeds, how a row
spreads over them, and the command line that asks for them."""

import statistics

import pytest

from symwrap.errors import ConfigError
from symwrap_bench import run_benchmark
from symwrap_bench.seeds import FULL_SEEDS, QUICK_SEEDS, SEED_STRIDE, describe, group_by, seed_values, spread


def test_seed_values_default_to_three_full_one_quick_and_start_at_the_base():
    assert seed_values(None, 0) == [SEED_STRIDE * k for k in range(FULL_SEEDS)] == [0, 100, 200]
    assert seed_values(None, 5, quick=True) == [5] and QUICK_SEEDS == 1
    assert seed_values(2, 7, quick=True) == [7, 107]


@pytest.mark.parametrize("count", [0, -1, 1.5, True, "3"])
def test_seed_values_refuse_a_count_that_is_not_a_positive_integer(count):
    with pytest.raises(ConfigError, match="positive number of seeds"):
        seed_values(count, 0)


def test_spread_and_describe():
    assert spread([0.95, 1.01, 0.98]) == {"mean": pytest.approx(0.98), "std": pytest.approx(0.03), "min": 0.95,
                                          "max": 1.01}
    assert spread([2.0]) == {"mean": 2.0, "std": 0.0, "min": 2.0, "max": 2.0}
    assert spread([1, 2, 4])["std"] == pytest.approx(statistics.stdev([1, 2, 4]))
    assert describe([0.95, 1.01, 0.98]) == "mean 0.98 (min 0.95, max 1.01)"
    assert describe([0.95, 1.01, 0.98], ".3f") == "mean 0.980 (min 0.950, max 1.010)"
    assert describe([0.5]) == "0.5"


def test_group_by_keeps_first_appearance_order_and_every_row():
    rows = [{"a": 1, "b": "x", "v": 1}, {"a": 0, "b": "y", "v": 2}, {"a": 1, "b": "x", "v": 3}]
    groups = group_by(rows, "a", "b")
    assert list(groups) == [(1, "x"), (0, "y")]
    assert [r["v"] for r in groups[(1, "x")]] == [1, 3] and [r["v"] for r in groups[(0, "y")]] == [2]


def test_seeds_reach_only_the_benchmarks_that_repeat_their_runs():
    with pytest.raises(ConfigError, match="has no --seeds setting; got --seeds 2"):
        run_benchmark("graphs", seeds=2)
    with pytest.raises(ConfigError, match="nbody --strategy remul runs one seed and has no --seeds setting"):
        run_benchmark("nbody", seeds=2)
    # refused before any work: the seed count is checked first
    with pytest.raises(ConfigError, match="positive number of seeds; got 0"):
        run_benchmark("nbody", strategy="augmentation", seeds=0)
    with pytest.raises(ConfigError, match="positive number of seeds; got 0"):
        run_benchmark("mixed", seeds=0)


def test_the_command_line_passes_seeds(monkeypatch, tmp_path):
    import symwrap_bench
    from symwrap.cli import main

    asked = {}
    monkeypatch.setattr(symwrap_bench, "run_benchmark", lambda name, **options: asked.update(name=name, **options))
    main(["bench", "mixed", "--seeds", "5", "--output-dir", str(tmp_path)])
    assert asked["name"] == "mixed" and asked["seeds"] == 5
    main(["bench", "nbody", "--strategy", "augmentation", "--output-dir", str(tmp_path)])
    assert asked["strategy"] == "augmentation" and asked["seeds"] is None
