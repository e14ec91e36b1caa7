"""The training stage behind ``clone()`` and ``fine_tune()``: :func:`symwrap.steps.run_steps` (the loop every
trainer shares) on a cycled loader, recording the loss terms and the student's equivariance error as it goes."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ...errors import ConfigError
from ...steps import cycle_batches, run_steps

__all__ = ["cycle_batches", "train"]


def train(
    step_loss: Callable[[int, Any, Any], dict[str, torch.Tensor]],
    measure: Callable[[Any], dict[str, float]],
    loader: Iterable[Any] | torch.Tensor | Mapping,
    steps: int,
    optimizer: torch.optim.Optimizer,
    *,
    first_step: int = 0,
    log_every: int | None = None,
    progress: bool = True,
    eval_inputs: Any = None,
    desc: str = "training",
) -> list[dict[str, float]]:
    """``steps`` optimizer steps on ``step_loss(step, x, y)["total"]``.

    Records ``{"step", <loss terms>, "equivariance_error", "averaged_equivariance_error"}`` before the first
    step (the terms without a gradient step), every ``log_every`` steps and after the last, from
    ``measure`` (``{"relative", "averaged"}`` errors) on ``eval_inputs``, or on the first batch when none
    are given.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be an integer >= 0; got {steps!r}")
    log_every = log_every if log_every is not None else max(1, steps // 10)
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise ConfigError(f"log_every must be a positive integer; got {log_every!r}")
    batches = cycle_batches(loader)
    x, y = next(batches)
    probe_x = eval_inputs if eval_inputs is not None else x
    history = []

    def record(step: int, terms: Mapping[str, torch.Tensor]) -> dict[str, float]:
        errors = measure(probe_x)
        entry = {"step": step, **{name: float(value.detach()) for name, value in terms.items()},
                 "equivariance_error": errors["relative"], "averaged_equivariance_error": errors["averaged"]}
        history.append(entry)
        return entry

    with torch.no_grad():
        last = record(first_step, step_loss(first_step, x, y))

    def after_step(step: int, terms: Mapping[str, torch.Tensor]) -> dict[str, str]:
        nonlocal last
        done = step - first_step
        if done % log_every == 0 or done == steps:
            last = record(step, terms)
        return {"loss": f"{float(terms['total'].detach()):.3g}", "equivariance": f"{last['equivariance_error']:.2e}"}

    # the first step trains on the batch just recorded
    run_steps(step_loss, itertools.chain([(x, y)], batches), steps, optimizer, first_step=first_step,
              on_step=after_step, progress=progress, desc=desc)
    return history
