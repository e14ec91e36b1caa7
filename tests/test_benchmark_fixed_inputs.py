"""``symwrap bench fixed_inputs --quick``: every row and column, Δ of the strict model, the GP ceiling, goals
recomputed from the rows, determinism."""

import json
import math

import pytest

from symwrap_bench import run_benchmark

pytestmark = pytest.mark.slow  # one quick run and one row re-trained: about 40 s on 2 cores


def answer(line: str) -> str:
    """The yes/no of a goal line ("...: yes (numbers)")."""
    return line.rsplit(": ", 1)[1].split(" ")[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench")
    return run_benchmark("fixed_inputs", quick=True, output_dir=output), output


def test_the_table_has_every_row_and_column(run):
    from symwrap_bench.fixed_inputs import CEILING, COLUMNS, FixedInputsSettings, methods

    result, output = run
    rows = result["rows"]
    expected = [(m, b, p) for m, b, p in methods(FixedInputsSettings.quick())] + [(CEILING, 0, 0.0)]
    assert [(r["method"], r["num_fixed"], r["p_drop"]) for r in rows] == expected
    assert [(b, p) for m, b, p in expected if m.startswith("approximate")] == [(4, 0.5)]
    assert all(list(row) == COLUMNS for row in rows)
    for row in rows:
        numbers = [row["loglik"], row["loglik_shifted"], row["train_s"]]
        numbers += [] if row["method"] == CEILING else [row["delta"]]
        assert all(isinstance(v, float) and math.isfinite(v) for v in numbers), row
    header = result["text"].splitlines()[1]
    assert all(column in header for column in COLUMNS)
    assert json.loads((output / "fixed_inputs.json").read_text())["rows"][0]["method"] == rows[0]["method"]
    assert (output / "fixed_inputs.csv").read_text().startswith(",".join(COLUMNS))


def test_strict_is_exactly_equivariant_and_the_others_are_not(run):
    from symwrap_bench.fixed_inputs import NON_EQUIVARIANT, STRICT

    by_method = {r["method"]: r for r in run[0]["rows"]}
    strict = by_method[STRICT]
    assert strict["delta"] == 0
    # the shift is a whole number of grid steps: the strict ConvCNP predicts the shifted tasks exactly the same
    assert strict["loglik_shifted"] == pytest.approx(strict["loglik"], abs=1e-4)
    assert by_method[NON_EQUIVARIANT]["delta"] > 0
    assert all(r["delta"] > 0 for r in run[0]["rows"] if r["method"].startswith("approximate"))


def test_the_exact_gp_is_the_ceiling(run):
    from symwrap_bench.fixed_inputs import CEILING

    rows = run[0]["rows"]
    ceiling = next(r for r in rows if r["method"] == CEILING)
    assert ceiling["loglik"] >= max(r["loglik"] for r in rows) - 0.05
    assert ceiling["loglik_shifted"] == pytest.approx(ceiling["loglik"], abs=1e-3)  # the GP moves with the data


def test_the_goal_lines_follow_from_the_rows(run):
    from symwrap_bench.fixed_inputs import NON_EQUIVARIANT, STRICT, FixedInputsSettings, best_approximate, goals

    result, _ = run
    rows = result["rows"]
    lines = [line for line in result["text"].splitlines() if "approximate (best" in line or "beyond the domain" in line]
    assert lines == goals(rows, FixedInputsSettings.quick().tolerance)
    by_method = {r["method"]: r for r in rows}
    best = best_approximate(rows)
    beats = best["loglik"] > by_method[STRICT]["loglik"] and best["loglik"] > by_method[NON_EQUIVARIANT]["loglik"]
    assert answer(lines[0]) == ("yes" if beats else "no")
    assert answer(lines[1]) in ("yes", "no")


def test_a_row_trained_again_gives_the_same_numbers(run):
    import torch

    from symwrap_bench.fixed_inputs import FixedInputsSettings, evaluation_tasks, train_row, training_batches

    settings = FixedInputsSettings.quick()
    row = next(r for r in run[0]["rows"] if r["method"].startswith("approximate"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = train_row(row["method"], row["num_fixed"], row["p_drop"], settings, training_batches(settings),
                          evaluation_tasks(settings), evaluation_tasks(settings, settings.shift))
    finally:
        torch.set_num_threads(threads)
    assert {k: again[k] for k in ("loglik", "loglik_shifted", "delta")} == {
        k: row[k] for k in ("loglik", "loglik_shifted", "delta")}
