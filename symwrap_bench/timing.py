"""Timing helpers for benchmarks: ratios measured in one run, interleaved, median of repeats."""

from __future__ import annotations

from collections.abc import Callable

from symwrap.timing import median_seconds as interleaved_median_seconds


def median_seconds(functions: dict[str, Callable[[], object]], repeats: int = 10, warmup: int = 2) -> dict[str, float]:
    """Median wall time of each function, calls interleaved so that load on the machine affects every function
    alike (:func:`symwrap.timing.median_seconds` with one call per sample)."""
    return interleaved_median_seconds(functions, rounds=repeats, warmup=warmup)


def format_table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """Rows of dicts as an aligned plain-text table."""
    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    widths = {c: max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.rjust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(cell(r.get(c, "")).rjust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
