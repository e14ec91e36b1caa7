"""symwrap_bench: the applications built on symwrap's public API, kept out of the library.

The benchmarks run by ``symwrap bench NAME`` (each prints ratios measured in one run and writes its table as
CSV and JSON) and the MNIST demo of ``symwrap demo`` (:mod:`symwrap_bench.demo`)."""

from __future__ import annotations

import csv
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from symwrap import Registry
from symwrap.errors import ConfigError, UnknownNameError


class UnknownBenchmarkError(UnknownNameError):
    kind = "benchmark"


#: ``symwrap bench NAME`` -> the function that runs it (symwrap's one Registry class, as for groups and strategies)
BENCHMARKS: Registry[Callable[..., dict[str, Any]]] = Registry("benchmark", error=UnknownBenchmarkError)


def register_benchmark(name: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Register ``fn(quick: bool) -> {"rows": [...], "text": str, ...}`` as ``symwrap bench name``;
    a function that also takes ``output_dir`` gets the folder the tables go to (for plots)."""

    def decorator(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        return BENCHMARKS.register(name, fn, override=True)

    return decorator


def run_benchmark(name: str, *, quick: bool = False, output_dir: str | Path | None = None,
                  strategy: str | None = None, seeds: int | None = None) -> dict[str, Any]:
    """Run a registered benchmark, print its table, write ``<name>.csv`` and ``<name>.json``.

    ``strategy`` picks the variant of benchmarks that compare strategies (``nbody``, ``cloning``). ``seeds``: how
    many seeds, for benchmarks that repeat their runs (``None``: their default).
    """
    from . import (  # noqa: F401  - they register themselves
        canonicalization,
        cloning,
        fixed_inputs,
        graphs,
        mixed,
        nbody,
        relaxation,
        scaling,
    )

    function = BENCHMARKS.get(name)
    parameters = inspect.signature(function).parameters
    options: dict[str, Any] = {"output_dir": output_dir} if "output_dir" in parameters else {}
    if strategy is not None:
        if "strategy" not in parameters:
            raise ConfigError(f"benchmark {name!r} has no --strategy variants; got {strategy!r}")
        options["strategy"] = strategy
    if seeds is not None:
        if "seeds" not in parameters:
            raise ConfigError(f"benchmark {name!r} runs one seed and has no --seeds setting; got --seeds {seeds}")
        options["seeds"] = seeds
    result = function(quick=quick, **options)
    print(result["text"])
    if output_dir is not None:
        output = Path(output_dir)
        output.mkdir(parents=True, exist_ok=True)
        rows = result["rows"]
        stem = name if strategy is None else f"{name}_{strategy}"
        with open(output / f"{stem}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (output / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result
