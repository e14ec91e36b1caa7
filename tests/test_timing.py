"""symwrap.timing: interleaved medians, the time ratios of compare and the benchmarks."""

from __future__ import annotations

import time

import pytest

from symwrap.errors import ConfigError
from symwrap.timing import median_seconds


def test_rounds_interleave_the_functions_starting_one_later_each_round():
    order: list[str] = []
    functions = {name: (lambda name=name: order.append(name)) for name in "abc"}
    median_seconds(functions, rounds=3, warmup=1)
    assert order[:3] == ["a", "b", "c"]  # the warm-up
    assert order[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_a_sample_spans_min_sample_seconds_and_times_one_call():
    calls = {"slow": 0, "fast": 0}

    def slow() -> None:
        calls["slow"] += 1
        time.sleep(0.004)

    def fast() -> None:
        calls["fast"] += 1

    seconds = median_seconds({"slow": slow, "fast": fast}, rounds=3, warmup=0, min_sample_seconds=0.02)
    # one calibration call each, then about 0.02 / 0.004 = 5 calls of the slow one per sample (fewer if a sleep
    # overran), and many more of the fast one
    assert 1 + 3 <= calls["slow"] <= 1 + 3 * 5
    assert calls["fast"] > 10 * calls["slow"]
    assert 0.004 <= seconds["slow"] < 0.05 and seconds["fast"] < seconds["slow"]


def test_one_call_per_sample_by_default():
    calls = []
    median_seconds({"f": lambda: calls.append(1)}, rounds=4, warmup=2)
    assert len(calls) == 2 + 4


@pytest.mark.parametrize("kwargs", [{"rounds": 0}, {"warmup": -1}, {"min_sample_seconds": -0.1}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ConfigError, match="median_seconds needs"):
        median_seconds({"f": lambda: None}, **kwargs)
    with pytest.raises(ConfigError, match="at least one function"):
        median_seconds({})
