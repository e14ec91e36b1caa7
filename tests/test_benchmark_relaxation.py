"""``symwrap bench relaxation --quick``: the table, exact equivariance after projection, goals from the rows."""

import json

import pytest
import torch

from symwrap_bench import run_benchmark

pytestmark = pytest.mark.slow  # two quick runs: about a minute on 2 cores

NUMBERS = ("test", "spread", "equivariance_error", "test_per_seed", "equivariance_error_per_seed")


def answer(line: str) -> str:
    """The yes/no of a goal line ("...: yes (numbers)")."""
    return line.rsplit(": ", 1)[1].split(" ")[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    pytest.importorskip("escnn")
    pytest.importorskip("mlxtend")
    from symwrap_bench.relaxation import relaxation_benchmark

    output = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two xdist workers share 2 cores: one thread each is faster than oversubscribing
    try:
        return run_benchmark("relaxation", quick=True, output_dir=output), relaxation_benchmark(quick=True), output
    finally:
        torch.set_num_threads(threads)


def test_the_table_has_every_row_and_column(runs):
    from symwrap_bench.relaxation import (
        COLUMNS,
        IMAGE_METHODS,
        IMAGE_TASK,
        NBODY_METHODS,
        NBODY_TASK,
        RelaxationSettings,
    )

    result, _, output = runs
    settings = RelaxationSettings.quick()
    rows = result["rows"]
    assert [(r["task"], r["n_train"], r["method"]) for r in rows] == [
        *((NBODY_TASK, n, m) for n in settings.sizes for m in NBODY_METHODS),
        *((IMAGE_TASK, settings.image_train, m) for m in IMAGE_METHODS),
    ]
    assert all(column in row for row in rows for column in COLUMNS)
    assert all(len(r["test_per_seed"]) == r["seeds"] == len(settings.seeds) for r in rows)
    assert all(r["test"] > 0 for r in rows if r["metric"] == "MSE")
    assert all(0 <= r["test"] <= 1 for r in rows if r["metric"] == "accuracy")
    header = result["text"].splitlines()[3]
    assert all(column in header for column in COLUMNS)
    assert json.loads((output / "relaxation.json").read_text())["rows"][0]["method"] == NBODY_METHODS[0]
    assert (output / "relaxation.csv").read_text().startswith("task,n_train,method,metric,test")


def test_every_projected_network_is_exactly_equivariant(runs):
    result, _, _ = runs
    errors = [e for r in result["rows"] for e in r["equivariance_error_per_seed"]]
    assert max(errors) <= 1e-5, errors
    assert "E′ after projection <= 1e-05 for every row: yes" in result["text"]


def test_the_goal_lines_are_computed_from_the_rows(runs):
    from symwrap_bench.relaxation import PLAIN_CNN, PLAIN_EGNN, RELAXED, goal_lines

    result, _, _ = runs
    rows = result["rows"]
    assert result["goals"] == goal_lines(rows) and all(line in result["text"] for line in result["goals"])
    smallest = min(r["n_train"] for r in rows if r["metric"] == "MSE")
    mse = {r["method"]: r["test"] for r in rows if r["n_train"] == smallest and r["metric"] == "MSE"}
    accuracy = {r["method"]: r["test"] for r in rows if r["metric"] == "accuracy"}
    expected = ["yes" if mse[RELAXED] < mse[PLAIN_EGNN] else "no",
                "yes" if accuracy[RELAXED] > accuracy[PLAIN_CNN] else "no"]
    assert [answer(line) for line in result["goals"][:2]] == expected
    assert f"{mse[RELAXED]:.4g} vs {mse[PLAIN_EGNN]:.4g}" in result["goals"][0]
    # the lines follow the numbers: swap the two MSEs and the answer flips
    swapped = [dict(r, test=mse[PLAIN_EGNN] if r["method"] == RELAXED else mse[RELAXED])
               if r["n_train"] == smallest and r["metric"] == "MSE" and r["method"] in (RELAXED, PLAIN_EGNN) else r
               for r in rows]
    if mse[RELAXED] != mse[PLAIN_EGNN]:
        assert answer(goal_lines(swapped)[0]) != expected[0]
    worse = [dict(r, equivariance_error=1.0) if i == 0 else r for i, r in enumerate(rows)]
    assert "for every row: no (max 1)" in goal_lines(worse)[-1]


def test_two_runs_give_the_same_numbers(runs):
    first, second, _ = runs
    assert [{k: r[k] for k in NUMBERS} for r in first["rows"]] == [{k: r[k] for k in NUMBERS} for r in second["rows"]]
    assert first["goals"] == second["goals"]
