"""The training loop of the benchmarks and of the demo: one function, so that every table trains its
models the same way (one optimizer budget for every row), stepping through :func:`symwrap.steps.optimizer_step`
like every trainer of the library."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from symwrap.progress import progress_bar
from symwrap.steps import optimizer_step


@dataclasses.dataclass(frozen=True)
class Trained:
    """What :func:`train_steps` did: ``seconds`` taken, optimizer ``steps`` taken, the last step's ``loss``
    (NaN when no step was taken)."""

    seconds: float
    steps: int
    loss: float


def cosine_decay(step: int, steps: int) -> float:
    """The learning-rate factor of cosine decay from 1 at step 0 to 0 at step ``steps``."""
    return 0.5 * (1 + math.cos(math.pi * step / steps))


def train_steps(
    model: nn.Module,
    next_batch: Callable[[], tuple[Any, Any]],
    steps: int,
    lr: float,
    fallback_loss: Callable[[torch.Tensor, Any], torch.Tensor] | None = None,
    *,
    loss: Callable[[nn.Module, Any, Any], torch.Tensor] | None = None,
    parameters: Iterable[torch.Tensor] | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
    schedule: Callable[[int, int], float] | None = cosine_decay,
    until: Callable[[int], bool] | None = None,
    progress: bool = False,
) -> Trained:
    """Train ``model`` for at most ``steps`` optimizer steps on the batches ``next_batch()`` returns.

    Args:
        next_batch: returns the next ``(x, y)``; called once per step.
        lr: the learning rate, scaled at step ``s`` by ``schedule(s, steps)`` (cosine decay by default;
            ``None``: constant).
        fallback_loss: the loss ``fallback_loss(model(x), y)`` of a model without a ``loss`` method; a
            wrapped model trains on ``model.loss(model(x), y, x)["total"]``.
        loss: ``loss(model, x, y)``, the loss of a step, instead of either of those.
        parameters: what the optimizer updates (default: all of ``model``'s parameters).
        optimizer: called as ``optimizer(parameters, lr=lr)`` (default: Adam).
        until: asked before every step and after the last one with the number of steps taken; ``True``
            ends the training early.
        progress: show a progress bar with the loss.

    The model is in train mode during every step and left in eval mode.
    """
    optimizer_ = optimizer(model.parameters() if parameters is None else parameters, lr=lr)
    scheduler = (None if schedule is None
                 else torch.optim.lr_scheduler.LambdaLR(optimizer_, lambda s: schedule(s, steps)))
    start = time.perf_counter()
    done, last = 0, None
    with progress_bar(total=steps, desc="training", unit="step", disable=not progress) as bar:
        while not (until is not None and until(done)) and done < steps:
            model.train()
            x, y = next_batch()
            if loss is not None:
                value = loss(model, x, y)
            elif hasattr(model, "loss"):
                value = model.loss(model(x), y, x)["total"]
            else:
                value = fallback_loss(model(x), y)
            optimizer_step(optimizer_, value, scheduler=scheduler)
            done += 1
            last = value.detach()
            if progress:
                bar.set_postfix(loss=f"{last.item():.3f}")
                bar.update()
    model.eval()
    return Trained(time.perf_counter() - start, done, float("nan") if last is None else last.item())
