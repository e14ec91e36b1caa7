"""Seeds for the benchmarks that repeat their runs: which seed values a run uses and how a row's numbers spread
over them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from symwrap.errors import ConfigError

#: seeds of a full run and of ``--quick`` when none are asked for
FULL_SEEDS, QUICK_SEEDS = 3, 1
#: seed k is ``base + SEED_STRIDE * k``: the benchmarks derive several generators from one seed (``seed``,
#: ``seed + 1``, ...), and a stride keeps seed k's test draw from being seed k + 1's training draw
SEED_STRIDE = 100


def seed_values(count: int | None, base: int, *, quick: bool = False) -> list[int]:
    """The seeds of a run: ``count`` of them (``None``: 3, or 1 with ``quick``), the first ``base``.

    Raises:
        ConfigError: ``count`` is not a positive integer.
    """
    if count is None:
        count = QUICK_SEEDS if quick else FULL_SEEDS
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"seeds must be a positive number of seeds; got {count!r}")
    return [base + SEED_STRIDE * k for k in range(count)]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max of ``values`` (at least one)."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def describe(values: Sequence[float], form: str = ".3g") -> str:
    """``"mean 0.98 (min 0.95, max 1.01)"``, or ``"0.98"`` for one value; ``form``: the number format."""
    s = spread(values)
    if len(values) == 1:
        return f"{s['mean']:{form}}"
    return f"mean {s['mean']:{form}} (min {s['min']:{form}}, max {s['max']:{form}})"


def group_by(rows: Sequence[dict[str, Any]], *fields: str) -> dict[tuple, list[dict[str, Any]]]:
    """The rows with equal values of ``fields``, in the order each combination first appears (a row per seed each,
    for the summaries over seeds)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[field] for field in fields), []).append(row)
    return groups
