"""``symwrap bench mixed --quick``: every row and column, the weights recomputed from the run's own running losses,
the truth measured on the data, goal lines that agree with the table, determinism."""

import json
import math

import pytest

from symwrap_bench import run_benchmark

pytestmark = pytest.mark.slow  # one quick run (six models of 300 steps) and one row re-trained: about 20 s on 2 cores


def answer(line: str) -> str:
    """The yes/no of a goal line ("...: yes (numbers)")."""
    return line.rsplit(": ", 1)[1].split(" ")[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench")
    return run_benchmark("mixed", quick=True, output_dir=output), output


def test_the_tables_have_every_row_and_column(run):
    from symwrap_bench.mixed import AUTO, COLUMNS, FIXED, GROUP_COLUMNS, GROUP_NAMES, PLAIN, MixedSettings

    result, output = run
    settings = MixedSettings.quick()
    rows, groups = result["rows"], result["groups"]
    assert [(r["alpha"], r["method"]) for r in rows] == [(a, m) for a in settings.alphas for m in (PLAIN, FIXED, AUTO)]
    assert all(list(r) == COLUMNS for r in rows) and all(list(g) == GROUP_COLUMNS for g in groups)
    assert [(g["alpha"], g["group"]) for g in groups] == [(a, n) for a in settings.alphas for n in GROUP_NAMES]
    for row in rows:
        assert math.isfinite(row["mse"]) and row["mse"] > 0 and row["train_s"] > 0
    text = result["text"]
    for stated in (f"{settings.steps} Adam steps", f"{settings.n_train} training / {settings.n_test} test",
                   "PER regularises weights", "beta_g = 1 * (R_g / min R)^-1"):
        assert stated in text
    assert json.loads((output / "mixed.json").read_text())["rows"][0]["method"] == PLAIN
    assert (output / "mixed.csv").read_text().startswith(",".join(COLUMNS))


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


def test_the_truth_is_measured_on_the_data(run):
    groups = run[0]["groups"]
    holds = {(g["alpha"], g["group"]): g["holds"] for g in groups}
    assert all(v == "yes" for (alpha, _), v in holds.items() if alpha == 0)
    assert {name for (alpha, name), v in holds.items() if alpha > 0 and v == "yes"} == {"O2z"}
    assert all(g["data_error"] < 1e-9 if g["holds"] == "yes" else g["data_error"] > 0.05 for g in groups)


def test_the_goal_lines_agree_with_the_tables(run):
    from symwrap_bench.mixed import AUTO, FIXED, PLAIN, MixedSettings

    result = run[0]
    settings = MixedSettings.quick()
    lines = [line for line in result["text"].splitlines() if line.startswith("alpha=")]
    assert len(lines) == 5  # α = 0: comparable weights, MSE; α > 0: largest weight, separation, MSE
    for alpha in settings.alphas:
        weights = {g["group"]: g["weight_auto"] for g in result["groups"] if g["alpha"] == alpha}
        mse = {r["method"]: r["mse"] for r in result["rows"] if r["alpha"] == alpha}
        mine = [line for line in lines if line.startswith(f"alpha={alpha:g}")]
        best = mse[AUTO] < mse[PLAIN] and mse[AUTO] <= mse[FIXED]
        assert answer(mine[-1]) == ("yes" if best else "no")
        if alpha == 0:
            comparable = min(weights.values()) / max(weights.values()) >= settings.separation
            assert answer(mine[0]) == ("yes" if comparable else "no")
        else:
            assert answer(mine[0]) == ("yes" if max(weights, key=weights.get) == "O2z" else "no")
            separated = max(w for n, w in weights.items() if n != "O2z") / weights["O2z"] <= settings.separation
            assert answer(mine[1]) == ("yes" if separated else "no")


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
