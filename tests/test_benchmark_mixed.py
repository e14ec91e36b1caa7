"""``symwrap bench mixed --quick``: every row and column, the weights recomputed from the run's own running losses,
the truth measured on the data, goal lines that agree with the table, determinism."""

import json
import math
import statistics

import pytest

from symwrap_bench import run_benchmark

#: the tests of the quick run (six models of 300 steps, one seed) and one row re-trained: about 20 s on 2 cores
slow = pytest.mark.slow


def answer(line: str) -> str:
    """The yes/no of a goal line ("... in every seed: yes (numbers)")."""
    return line.split(" in every seed: ", 1)[1].split(" ")[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench")
    return run_benchmark("mixed", quick=True, output_dir=output), output


@slow
def test_the_tables_have_every_row_and_column(run):
    from symwrap_bench.mixed import (
        AUTO,
        COLUMNS,
        FIXED,
        GROUP_COLUMNS,
        GROUP_NAMES,
        PLAIN,
        MixedSettings,
        summary_rows,
    )

    result, output = run
    settings = MixedSettings.quick()
    rows, groups = result["rows"], result["groups"]
    assert result["seeds"] == [settings.seed] and all(r["seed"] == settings.seed for r in rows + groups)
    assert [(r["alpha"], r["method"]) for r in rows] == [(a, m) for a in settings.alphas for m in (PLAIN, FIXED, AUTO)]
    assert all(list(r) == COLUMNS for r in rows) and all(list(g) == GROUP_COLUMNS for g in groups)
    assert [(g["alpha"], g["group"]) for g in groups] == [(a, n) for a in settings.alphas for n in GROUP_NAMES]
    for row in rows:
        assert math.isfinite(row["mse"]) and row["mse"] > 0 and row["train_s"] > 0
    text = result["text"]
    for stated in (f"{settings.steps} Adam steps", f"{settings.n_train} training / {settings.n_test} test",
                   "PER regularises weights", "beta_g = 1 * (R_g / min R)^-1"):
        assert stated in text
    assert (result["summary"], result["summary_groups"]) == summary_rows(rows, groups)
    assert all(r["seeds"] == 1 and r["mse_std"] == 0 for r in result["summary"])
    assert json.loads((output / "mixed.json").read_text())["rows"][0]["method"] == PLAIN
    assert (output / "mixed.csv").read_text().startswith(",".join(COLUMNS))


@slow
def test_the_weights_are_the_ones_the_run_tuned(run):
    from symwrap_bench.mixed import AUTO, FIXED, GROUP_NAMES, PLAIN, MixedSettings

    settings = MixedSettings.quick()
    result = run[0]
    for alpha in settings.alphas:
        by_method = {r["method"]: r for r in result["rows"] if r["alpha"] == alpha}
        groups = [g for g in result["groups"] if g["alpha"] == alpha]
        assert all(by_method[PLAIN][f"weight_{n}"] == "-" for n in GROUP_NAMES)
        assert all(by_method[FIXED][f"weight_{n}"] == settings.fixed_beta for n in GROUP_NAMES)
        least = min(g["loss_R"] for g in groups)
        for group in groups:
            expected = settings.auto_beta * (group["loss_R"] / least) ** -settings.auto_power
            assert group["weight_auto"] == pytest.approx(expected, rel=1e-6)  # the buffers follow the model: float32
            assert by_method[AUTO][f"weight_{group['group']}"] == group["weight_auto"]
        assert max(g["weight_auto"] for g in groups) == settings.auto_beta
        assert len({g["weight_auto"] for g in groups}) == len(groups)  # tuned, not left at the warm-up's equal weights


@slow
def test_the_truth_is_measured_on_the_data(run):
    groups = run[0]["groups"]
    holds = {(g["alpha"], g["group"]): g["holds"] for g in groups}
    assert all(v == "yes" for (alpha, _), v in holds.items() if alpha == 0)
    assert {name for (alpha, name), v in holds.items() if alpha > 0 and v == "yes"} == {"O2z"}
    assert all(g["data_error"] < 1e-9 if g["holds"] == "yes" else g["data_error"] > 0.05 for g in groups)


@slow
def test_the_goal_lines_agree_with_the_tables(run):
    from symwrap_bench.mixed import AUTO, FIXED, PLAIN, MixedSettings

    result = run[0]
    settings = MixedSettings.quick()
    lines = [line for line in result["text"].splitlines() if line.startswith("alpha=")]
    assert len(lines) == 7  # per α: weights and MSE; α = 0: comparable weights; α > 0: largest weight, separation
    for alpha in settings.alphas:
        weights = {g["group"]: g["weight_auto"] for g in result["groups"] if g["alpha"] == alpha}
        mse = {r["method"]: r["mse"] for r in result["rows"] if r["alpha"] == alpha}
        mine = [line for line in lines if line.startswith(f"alpha={alpha:g}")]
        best = mse[AUTO] < mse[PLAIN] and mse[AUTO] <= mse[FIXED]
        assert answer(mine[-1]) == ("yes" if best else "no")
        if alpha == 0:
            comparable = min(weights.values()) / max(weights.values()) >= settings.separation
            assert answer(mine[1]) == ("yes" if comparable else "no")
        else:
            assert answer(mine[1]) == ("yes" if max(weights, key=weights.get) == "O2z" else "no")
            separated = max(w for n, w in weights.items() if n != "O2z") / weights["O2z"] <= settings.separation
            assert answer(mine[2]) == ("yes" if separated else "no")


def _fabricated(seed, weights_03, mse_03, weights_0=(1.0, 0.9, 0.95, 0.8), mse_0=(4.0, 0.4, 0.39)):
    """One seed's rows and group rows: α = 0 (every group holds) and α = 0.3 (only O2z holds)."""
    from symwrap_bench.mixed import AUTO, FIXED, GROUP_NAMES, PLAIN

    rows, groups = [], []
    for alpha, weights, mse in ((0.0, weights_0, mse_0), (0.3, weights_03, mse_03)):
        rows += [{"seed": seed, "alpha": alpha, "method": m, "mse": v} for m, v in zip((PLAIN, FIXED, AUTO), mse)]
        groups += [{"seed": seed, "alpha": alpha, "group": name, "data_error": 0.0 if holds else 0.25,
                    "holds": "yes" if holds else "no", "weight_auto": w}
                   for name, w, holds in zip(GROUP_NAMES, weights, (alpha == 0, True, alpha == 0, alpha == 0))]
    return rows, groups


def _three_seeds():
    # α = 0.3 weights (O3, O2z, O2y, O2x): O2z largest in seeds 0 and 100, O2y in seed 200
    parts = [_fabricated(0, (0.3, 1.0, 0.4, 0.45), (5.0, 0.8, 0.7)),
             _fabricated(100, (0.2, 1.0, 0.6, 0.3), (5.5, 0.7, 0.75)),
             _fabricated(200, (0.5, 0.9, 1.0, 0.35), (5.2, 0.9, 0.85))]
    return [r for rows, _ in parts for r in rows], [g for _, groups in parts for g in groups]


def test_goal_lines_count_the_seeds():
    from symwrap_bench.mixed import goals

    rows, groups = _three_seeds()
    lines = goals(rows, groups, separation=0.5)
    assert lines[0] == ("alpha=0: weights beta=auto ends with over 3 seeds: O3 mean 1 (min 1, max 1), O2z mean 0.9 "
                        "(min 0.9, max 0.9), O2y mean 0.95 (min 0.95, max 0.95), O2x mean 0.8 (min 0.8, max 0.8)")
    assert lines[1] == ("alpha=0 (data obeys O2x, O2y, O2z, O3): all weights comparable (smallest >= 0.5x largest) "
                        "in every seed: yes (3 of 3 seeds; smallest/largest per seed: 0.8, 0.8, 0.8)")
    assert answer(lines[2]) == "yes" and "seed 0: fixed 0.4 < auto 0.39" not in lines[2]
    assert "seed 0: auto 0.39 < fixed 0.4 < MLP 4" in lines[2]
    assert lines[3].startswith("alpha=0.3: weights beta=auto ends with over 3 seeds: O3 mean 0.333 (min 0.2, max 0.5), "
                               "O2z mean 0.967 (min 0.9, max 1)")
    assert lines[4] == ("alpha=0.3 (data obeys O2z; breaks O2x, O2y, O3): the largest weight is a group the data "
                        "obeys in every seed: no (2 of 3 seeds; largest per seed: O2z, O2z, O2y)")
    assert lines[5] == ("alpha=0.3: every broken group's weight is <= 0.5x the smallest kept one in every seed: no "
                        "(1 of 3 seeds; largest broken / smallest kept per seed: 0.45, 0.6, 1.11)")
    assert lines[6] == ("alpha=0.3: beta=auto has the lowest test MSE of the three in every seed: no (2 of 3 seeds); "
                        "test MSE per seed: seed 0: auto 0.7 < fixed 0.8 < MLP 5; seed 100: fixed 0.7 < auto 0.75 < "
                        "MLP 5.5; seed 200: auto 0.85 < fixed 0.9 < MLP 5.2")
    assert len(lines) == 7


def test_summary_rows_spread_over_seeds():
    from symwrap_bench.mixed import AUTO, summary_rows

    rows, groups = _three_seeds()
    methods, weights = summary_rows(rows, groups)
    assert len(methods) == 6 and len(weights) == 8
    auto = next(r for r in methods if (r["alpha"], r["method"]) == (0.3, AUTO))
    assert auto["seeds"] == 3 and auto["mse_mean"] == pytest.approx(2.3 / 3) and auto["mse_min"] == 0.7
    assert auto["mse_max"] == 0.85 and auto["mse_std"] == pytest.approx(statistics.stdev([0.7, 0.75, 0.85]))
    o2y = next(g for g in weights if (g["alpha"], g["group"]) == (0.3, "O2y"))
    assert (o2y["holds"], o2y["data_error_max"], o2y["weight_min"], o2y["weight_max"]) == ("no", 0.25, 0.4, 1.0)
    mixed_truth = [dict(g, holds="yes") if (g["seed"], g["alpha"], g["group"]) == (0, 0.3, "O2y") else g
                   for g in groups]
    assert next(g for g in summary_rows(rows, mixed_truth)[1] if (g["alpha"], g["group"]) == (0.3, "O2y")
                )["holds"] == "mixed"


@slow
def test_a_row_is_deterministic(run):
    from symwrap.data import modified_inertia
    from symwrap_bench.mixed import AUTO, MixedSettings, train_row

    settings = MixedSettings.quick()
    alpha = settings.alphas[-1]
    train = modified_inertia(settings.n_train, alpha=alpha, seed=settings.seed)
    test = modified_inertia(settings.n_test, alpha=alpha, seed=settings.seed + 1)
    again, _ = train_row(AUTO, alpha, settings, train, test)
    first = next(r for r in run[0]["rows"] if r["alpha"] == alpha and r["method"] == AUTO)
    assert {k: v for k, v in again.items() if k != "train_s"} == {k: v for k, v in first.items() if k != "train_s"}
