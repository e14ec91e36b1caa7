"""Peak memory of one call, for benchmark tables.

``tracemalloc`` does not see torch's CPU allocations, and a process's maximum RSS mixes in the interpreter,
the libraries and what the allocator keeps. Instead the call runs under ``torch.profiler`` with
``profile_memory=True``: every allocation and free of a tensor's storage is recorded with the running total of
bytes the CPU allocator has handed out, and the peak is the largest total during the call minus the total
before it: the bytes of the call's own intermediate tensors and output (not the weights or the input, which
exist before it). It counts what torch allocates, on CPU or on the input's device.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

#: libkineto, the profiler's engine, prints start/stop lines (and, on a CUDA build without a GPU, an error about
#: the device count) for every profiled call unless told otherwise; it reads this before its first use
QUIET_KINETO = {"KINETO_LOG_LEVEL": "6"}


def peak_bytes(fn: Callable[[], object]) -> int | None:
    """Peak bytes of tensor memory allocated by ``fn()`` above what was live before it (no gradients), or
    ``None`` when this torch's profiler does not report allocations."""
    from torch.profiler import ProfilerActivity, profile

    for name, value in QUIET_KINETO.items():  # the user's own setting wins
        os.environ.setdefault(name, value)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch.no_grad(), profile(activities=activities, profile_memory=True) as prof:
        fn()
    try:  # the event tree is the one place the profiler keeps the allocator's running total
        from torch._C._profiler import _EventType

        roots = prof.profiler.kineto_results.experimental_event_tree()
    except (AttributeError, ImportError):
        return None
    allocations, stack = [], list(roots)
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            allocations.append(node)
        stack.extend(node.children)
    if not allocations:
        return 0
    allocations.sort(key=lambda node: node.start_time_ns)
    first = allocations[0].extra_fields
    before = first.total_allocated - first.alloc_size
    return max(0, max(node.extra_fields.total_allocated for node in allocations) - before)
