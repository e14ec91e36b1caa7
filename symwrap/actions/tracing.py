"""What the forward path does differently while :func:`torch.export.export` traces it.

A traced graph cannot branch on the values of a tensor, so checks that only validate the input are skipped while
tracing, and choices that depend only on the group (not on the data) are made on real tensors outside the trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def is_tracing() -> bool:
    """Whether :func:`torch.export.export` is tracing the code (``torch.compile`` keeps the eager path, whose
    data-dependent checks it runs outside its graphs)."""
    return torch.compiler.is_exporting()


def outside_trace(compute: Callable[[], T]) -> T:
    """``compute()`` on real tensors even while tracing: for values fixed by the model and its group (which
    elements of a finite group move pixels exactly), never by the data, so the graph may take them as constants."""
    if not is_tracing():
        return compute()
    from torch._subclasses.fake_tensor import unset_fake_temporarily
    from torch.fx.experimental.proxy_tensor import disable_proxy_modes_tracing

    with disable_proxy_modes_tracing(), unset_fake_temporarily():
        return compute()
