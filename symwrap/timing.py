"""Wall-time ratios measured in one run: calls interleaved, medians of repeated samples.

Load on the machine (other processes, a shared core) slows every function alike only when their calls take turns,
so each round takes one sample of every function, starting one function later every round (no function always
runs first after the slowest). Benchmarks and :func:`symwrap.compare` report ratios of these medians, never
absolute times.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch

from .errors import ConfigError

__all__ = ["median_seconds"]


@torch.no_grad()
def median_seconds(functions: dict[str, Callable[[], object]], *, rounds: int = 10, warmup: int = 2,
                   min_sample_seconds: float = 0.0) -> dict[str, float]:
    """Median wall time of one call of each function, calls interleaved.

    Args:
        functions: name -> a call to time (no arguments; its result is dropped). Gradients are off.
        rounds: samples per function; each round takes one sample of every function.
        warmup: untimed calls of each function first (lazy initialisation, allocator caches).
        min_sample_seconds: a sample is the mean time of as many calls as make it last about this long (counted
            from one call after the warm-up); a call of a millisecond, timed alone, is often stretched several
            times over when the scheduler hands the core to another process. ``0``: one call per sample.

    Returns:
        name -> median seconds of one call.
    """
    if not functions:
        raise ConfigError("median_seconds needs at least one function to time")
    if rounds < 1 or warmup < 0 or min_sample_seconds < 0:
        raise ConfigError(f"median_seconds needs rounds >= 1, warmup >= 0 and min_sample_seconds >= 0; got "
                          f"rounds={rounds}, warmup={warmup}, min_sample_seconds={min_sample_seconds}")
    names = list(functions)
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    calls = dict.fromkeys(names, 1)
    if min_sample_seconds > 0:
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            calls[name] = max(1, math.ceil(min_sample_seconds / max(time.perf_counter() - start, 1e-6)))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            fn = functions[name]
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / calls[name])
    return {name: statistics.median(values) for name, values in samples.items()}
