"""The optimizer-step loop every trainer in symwrap shares: cloning's ``clone()``/``fine_tune()``, the benchmarks
and the demo step through :func:`optimizer_step`, and :func:`symwrap.fit` (epochs, validation, checkpoints, DDP,
gradient accumulation, mixed precision) through the :func:`apply_gradients` it ends with; all read batches with
:func:`split_batch`, and the step-budgeted ones run :func:`run_steps`.

It sits below the strategies (it imports nothing of symwrap but the errors), so a strategy that trains a
stage of its own uses it without importing :mod:`symwrap.training`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import ReduceLROnPlateau

from .errors import ConfigError, ShapeError
from .progress import progress_bar

Batch = tuple[Any, Any]
StepLoss = Callable[[int, Any, Any], Mapping[str, torch.Tensor]]

__all__ = ["apply_gradients", "cycle_batches", "default_task_loss", "optimizer_step", "run_steps", "split_batch"]


def split_batch(batch: Any, *, require_target: bool = True) -> Batch:
    """``(x, y)`` from a batch: a pair, or an object with a ``y`` attribute (a torch_geometric ``Batch``, which is
    then both the input and the holder of the target).

    With ``require_target=False`` a batch may also be the input alone (``x`` or ``(x,)``, giving ``y = None``)
    or carry more than two items (``(x, y, ...)``, the rest ignored).
    """
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1]
        if not require_target and batch:
            return batch[0], (batch[1] if len(batch) > 1 else None)
        if not batch:
            raise ConfigError("the loader yielded an empty batch")
    elif not isinstance(batch, (Mapping, torch.Tensor)) and getattr(batch, "y", None) is not None:
        return batch, batch.y
    elif not require_target:
        return batch, None
    kind = f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (tuple, list)) else \
        f"a {type(batch).__name__}"
    raise ShapeError(f"a batch must be a pair (x, y) or a torch_geometric Batch with .y; got {kind}")


def cycle_batches(loader: Iterable[Any] | torch.Tensor | Mapping) -> Iterator[Batch]:
    """``(x, y)`` pairs from a loader (:func:`split_batch` without a required target), restarted whenever it runs
    out. A single batch (a tensor or a dict of tensors) is repeated."""
    if isinstance(loader, (torch.Tensor, Mapping)):
        while True:
            yield loader, None
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield split_batch(batch, require_target=False)
        if empty:
            raise ConfigError(f"the loader {type(loader).__name__} yielded no batches")


def default_task_loss(pred: Any, target: Any, kind: str = "auto") -> torch.Tensor:
    """The task term: cross-entropy (``kind="cross_entropy"``) or mean squared error (``"mse"``); ``"auto"``
    picks mean squared error for floating-point targets and cross-entropy for integer ones. Dict outputs sum
    the term over their fields."""
    if isinstance(pred, Mapping):
        return sum(default_task_loss(pred[key], target[key], kind) for key in pred)
    if kind == "auto":
        kind = "mse" if torch.is_floating_point(target) else "cross_entropy"
    if kind == "cross_entropy":
        return F.cross_entropy(pred, target)
    return F.mse_loss(pred, target)


def optimizer_step(optimizer: torch.optim.Optimizer, total: torch.Tensor, *, grad_clip: float | None = None,
                   parameters: Iterable[torch.nn.Parameter] | None = None, scheduler: Any = None) -> None:
    """One step on ``total``: clear the gradients, back-propagate, then :func:`apply_gradients`."""
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    apply_gradients(optimizer, grad_clip=grad_clip, parameters=parameters, scheduler=scheduler)


def apply_gradients(optimizer: torch.optim.Optimizer, *, grad_clip: float | None = None,
                    parameters: Iterable[torch.nn.Parameter] | None = None, scheduler: Any = None,
                    scaler: Any = None) -> None:
    """Step on the gradients already accumulated: unscale them (with a ``torch.amp.GradScaler``), clip their
    global norm to ``grad_clip`` (over ``parameters``, by default the optimizer's), step the optimizer (through
    the scaler), then the scheduler (a ``ReduceLROnPlateau`` is stepped by the caller, on its metric)."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if grad_clip is not None:
        if parameters is None:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if scheduler is not None and not isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step()


def run_steps(step_loss: StepLoss, batches: Iterator[Batch], steps: int, optimizer: torch.optim.Optimizer, *,
              first_step: int = 0, scheduler: Any = None, grad_clip: float | None = None,
              on_step: Callable[[int, Mapping[str, torch.Tensor]], Mapping[str, Any] | None] | None = None,
              progress: bool = False, desc: str = "training") -> None:
    """``steps`` optimizer steps on ``step_loss(step, x, y)["total"]``, one batch of ``batches`` each, numbered
    ``first_step + 1`` to ``first_step + steps``. ``on_step(step, terms)`` runs after each step; what it returns
    (if anything) is shown in the progress bar."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be an integer >= 0; got {steps!r}")
    with progress_bar(total=steps, desc=desc, unit="step", disable=not progress) as bar:
        for i in range(1, steps + 1):
            x, y = next(batches)
            terms = step_loss(first_step + i, x, y)
            optimizer_step(optimizer, terms["total"], grad_clip=grad_clip, scheduler=scheduler)
            shown = on_step(first_step + i, terms) if on_step is not None else None
            if shown:
                bar.set_postfix(shown)
            bar.update()
