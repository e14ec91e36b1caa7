"""``symwrap bench scaling --quick``: every sweep point, limits computed from the measured bare time, memory from
the run, goal lines computed from the rows."""

import json

import pytest
import torch

from symwrap_bench import run_benchmark
from symwrap_bench.scaling import (
    COLUMNS,
    GOAL_FACTOR,
    KEY_SAMPLES,
    EvalModeSettings,
    ScalingSettings,
    goal_lines,
    peak_bytes,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("timm")
    pytest.importorskip("escnn")
    pytest.importorskip("mlxtend")
    output = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_benchmark("scaling", quick=True, output_dir=output), output
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow  # one quick run: the sweeps and 5 training steps, under a minute on 2 cores
def test_every_sweep_point_is_measured_beside_its_limit(run):
    result, output = run
    settings = ScalingSettings.quick()
    rows = result["rows"]
    other_batches = [b for b in settings.batches if b != settings.batch]
    expected = [
        *(("averaging", "|G|", n, settings.batch) for n in settings.orders),
        *(("averaging", "B", settings.batch_sweep_order, b) for b in other_batches),
        *(("symmetrization", "k", k, settings.batch) for k in settings.samples),
        ("symmetrization", "mode", 1, settings.batch),
        *(("symmetrization", "B", settings.batch_sweep_samples, b) for b in other_batches),
        *(("frames", "N", n, settings.batch) for n in settings.points),
        *(("frames", "B", settings.batch_sweep_points, b) for b in other_batches),
    ]
    assert [(r["strategy"], r["axis"], r["size"], r["batch"]) for r in rows] == expected
    assert all(column in row for row in rows for column in COLUMNS)
    for row in rows:
        # the limit is the number of copies times the bare time measured in the same run
        copies = {"averaging": row["size"], "symmetrization": 1 if row["axis"] == "mode" else row["size"],
                  "frames": 4}[row["strategy"]]  # SO3's PCA frame: the 4 sign choices with det +1
        assert row["limit_multiple"] == copies
        assert row["limit_ms"] == pytest.approx(copies * row["bare_ms"])
        assert row["to_limit"] == pytest.approx(row["wrapped_ms"] / row["limit_ms"])
        assert row["x_bare"] == pytest.approx(row["wrapped_ms"] / row["bare_ms"])
        assert row["to_batched"] == pytest.approx(row["wrapped_ms"] / row["batched_ms"])
        assert row["bare_ms"] > 0 and row["wrapped_ms"] > 0 and row["peak_MB"] > 0
    # memory comes from the run: more copies of the same batch hold more activations
    averaging = {r["size"]: r for r in rows if r["strategy"] == "averaging" and r["axis"] == "|G|"}
    assert averaging[4]["peak_MB"] > averaging[2]["peak_MB"] > averaging[2]["bare_MB"]
    frames = {r["size"]: r for r in rows if r["strategy"] == "frames" and r["axis"] == "N"}
    assert frames[64]["bare_MB"] > frames[32]["bare_MB"]
    assert result["goals"] == goal_lines(rows, result["vit_ms"])
    assert "\n".join(result["goals"]) in result["text"]
    evaluation = result["evaluation_rows"]
    quick = EvalModeSettings.quick()
    assert [(r["evaluation"], r["backbone_calls"]) for r in evaluation] == [
        ("mode (deterministic)", 1), *((f"random, k={k}", k) for k in quick.eval_samples)]
    assert all(0 <= r["accuracy"] <= 1 and r["x_bare"] > 0 and r["steps"] == quick.steps for r in evaluation)
    assert evaluation[0]["spread"] == 0.0  # the mode is deterministic: every evaluation draw is the same
    assert json.loads((output / "scaling.json").read_text())["rows"][0]["strategy"] == "averaging"
    assert (output / "scaling.csv").read_text().startswith("strategy,axis,group,size,batch,limit")


def row(strategy, to_limit, bare_ms=10.0, axis="k", size=1, x_bare=1.0):
    return {"strategy": strategy, "axis": axis, "size": size, "batch": 16, "limit": f"{size} x bare",
            "to_limit": to_limit, "bare_ms": bare_ms, "x_bare": x_bare}


def test_goal_lines_judge_the_worst_point_and_frames_only_where_the_backbone_costs_a_vit():
    rows = [row("averaging", 1.1), row("averaging", GOAL_FACTOR + 0.01),
            row("symmetrization", 1.0), row("symmetrization", 1.2, size=KEY_SAMPLES, x_bare=9.6),
            row("frames", 5.0, bare_ms=1.0), row("frames", 1.1, bare_ms=20.0)]
    averaging, symmetrization, frames, key = goal_lines(rows, vit_ms=10.0)
    assert averaging.startswith(f"averaging: worst {GOAL_FACTOR + 0.01:.2f}x") and averaging.endswith("NOT met")
    assert symmetrization.startswith("symmetrization: worst 1.20x") and symmetrization.endswith(": met")
    # the cheap point MLP (1 ms < the ViT's 10 ms) is left out of the goal: only the 20 ms point counts
    assert frames.startswith("frames: worst 1.10x its limit over 1 point(s)") and frames.endswith(": met")
    assert key == f"symmetrization, k={KEY_SAMPLES}: 9.60x bare = 1.20x k bare calls; goal <= 1.1: NOT met"
    with_batched = goal_lines([{**row("frames", 1.4, bare_ms=20.0), "to_batched": 1.05}], vit_ms=10.0)[2]
    assert "batch 16, 1.05x the backbone on the copies' batch); goal <= 1.25: NOT met" in with_batched
    cheap_only = goal_lines([row("frames", 5.0, bare_ms=1.0)], vit_ms=10.0)
    assert cheap_only[2] == "frames: no point has a backbone as costly as the tiny ViT (10 ms); goal not measured"


def test_peak_bytes_counts_what_is_live_at_once_during_the_call():
    size = 4 * 250_000  # bytes of 250k float32

    def sequential():  # one buffer at a time
        for _ in range(3):
            torch.ones(250_000).sum()

    def together():
        buffers = [torch.ones(250_000) for _ in range(3)]
        return sum(b.sum() for b in buffers)

    assert size <= peak_bytes(sequential) < 2 * size
    assert 3 * size <= peak_bytes(together) < 4 * size
